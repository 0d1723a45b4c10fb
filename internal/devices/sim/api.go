package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxAnswer bounds an API answer the simulator reads.
const maxAnswer = 1 << 20

// API is the part of spkey's HTTP API the simulator uses, called with a
// tenant's API key: it creates locks and fetches their device
// credentials.
type API struct {
	// Base is the API's base URL (http://127.0.0.1:8080).
	Base string
	// Key is the tenant's X-API-Key (never printed).
	Key string
	// HTTP is the client (nil: one with a 30 s timeout).
	HTTP *http.Client
}

// Credentials are a lock's device credentials as the API issued them.
type Credentials struct {
	ThingName     string `json:"thingName"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	Certificate   string `json:"certificate"`
	PrivateKey    string `json:"privateKey"`
	CACertificate string `json:"caCertificate"`
	MQTTEndpoint  string `json:"mqttEndpoint"`
	MQTTSEndpoint string `json:"mqttsEndpoint"`
}

// TLS returns the client TLS configuration of certificate credentials:
// the client certificate and key, trusting the device CA; serverName is
// the broker's name as its certificate holds it (a host or an IP). It
// returns an error when c holds no certificate or key, or a bad one.
func (c Credentials) TLS(serverName string) (*tls.Config, error) {
	pair, err := tls.X509KeyPair([]byte(c.Certificate), []byte(c.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("sim: certificate of %s: %w", c.ThingName, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(c.CACertificate)) {
		return nil, fmt.Errorf("sim: certificate of %s: no PEM CA certificate", c.ThingName)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

// EnsureLock creates lock id (POST /locks/{id}/CreateLock, index id and a
// random UUID) unless it exists. It returns whether it created it, or the
// API's refusal (a lock of another tenant, a bad key) as an error.
func (a *API) EnsureLock(ctx context.Context, id int64) (created bool, err error) {
	var out struct {
		Event *json.RawMessage `json:"event"`
	}
	status, err := a.post(ctx, fmt.Sprintf("/locks/%d/CreateLock", id), map[string]any{"index": id, "uuid": newUUID()}, &out)
	if err != nil {
		return false, fmt.Errorf("create lock %d: %w", id, err)
	}
	return status == http.StatusCreated && out.Event != nil, nil
}

// Credentials issues credentials of kind ("password" or "certificate")
// for lock id (POST /locks/{id}/device/credentials). It returns the API's
// refusal as an error.
func (a *API) Credentials(ctx context.Context, id int64, kind string) (Credentials, error) {
	var c Credentials
	if _, err := a.post(ctx, fmt.Sprintf("/locks/%d/device/credentials", id), map[string]any{"kind": kind}, &c); err != nil {
		return Credentials{}, fmt.Errorf("device credentials of lock %d: %w", id, err)
	}
	return c, nil
}

// EnsureHub provisions hub id (POST /hubs/{id}/ProvisionHub; a super
// key's) with serial and model unless it exists. It returns whether it
// provisioned it, or the API's refusal as an error.
func (a *API) EnsureHub(ctx context.Context, id, serial, model string) (created bool, err error) {
	var out struct {
		Event *json.RawMessage `json:"event"`
	}
	status, err := a.post(ctx, "/hubs/"+id+"/ProvisionHub", map[string]any{"hubId": id, "serial": serial, "model": model}, &out)
	if err != nil {
		return false, fmt.Errorf("provision hub %s: %w", id, err)
	}
	return status == http.StatusCreated && out.Event != nil, nil
}

// HubCredentials issues credentials of kind for hub id (POST
// /hubs/{id}/device/credentials).
func (a *API) HubCredentials(ctx context.Context, id, kind string) (Credentials, error) {
	var c Credentials
	if _, err := a.post(ctx, "/hubs/"+id+"/device/credentials", map[string]any{"kind": kind}, &c); err != nil {
		return Credentials{}, fmt.Errorf("device credentials of hub %s: %w", id, err)
	}
	return c, nil
}

// HubCommand sends command with args to hub id (POST
// /hubs/{id}/SendHubCommand) and returns the command's requestId.
func (a *API) HubCommand(ctx context.Context, id, command string, args map[string]any) (string, error) {
	var out struct {
		RequestID string `json:"requestId"`
	}
	body := map[string]any{"hubId": id, "command": command}
	if args != nil {
		body["args"] = args
	}
	if _, err := a.post(ctx, "/hubs/"+id+"/SendHubCommand", body, &out); err != nil {
		return "", fmt.Errorf("command %s to hub %s: %w", command, id, err)
	}
	return out.RequestID, nil
}

// Commission asks hub id to commission a Matter device with code (POST
// /hubs/{id}/CommissionDevice) and returns the command's requestId.
func (a *API) Commission(ctx context.Context, id, code string) (string, error) {
	var out struct {
		RequestID string `json:"requestId"`
	}
	if _, err := a.post(ctx, "/hubs/"+id+"/CommissionDevice", map[string]any{"hubId": id, "commissioningCode": code}, &out); err != nil {
		return "", fmt.Errorf("commission on hub %s: %w", id, err)
	}
	return out.RequestID, nil
}

// post sends body to path with the key and decodes a 2xx answer into out.
// Another status is an error with the API's message.
func (a *API) post(ctx context.Context, path string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(a.Base, "/")+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", a.Key)
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return resp.StatusCode, fmt.Errorf("%s: %d %s", path, resp.StatusCode, e.Message)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: answer: %w", path, err)
	}
	return resp.StatusCode, nil
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
