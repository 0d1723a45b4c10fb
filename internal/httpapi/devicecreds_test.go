package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/testenv"
)

const deviceWait = 20 * time.Second

// deviceFixture: a server with the device layer; org-a owns lock 1 (and
// its owner is a user), org-b owns nothing, org-s has a super key.
type deviceFixture struct {
	srv              *testenv.Server
	keyA, keyB, keyS string
	ownerJWT         string
	adminHeader      map[string]string
}

func newDeviceFixture(t *testing.T, b testenv.Backend, devices bool) *deviceFixture {
	t.Helper()
	srv := testenv.NewServer(t, b, testenv.Options{Devices: devices})
	f := &deviceFixture{srv: srv, keyA: srv.Tenant(t, "org-a", false), keyB: srv.Tenant(t, "org-b", false), keyS: srv.Tenant(t, "org-s", true),
		adminHeader: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: f.keyA, Body: map[string]any{"index": 1, "uuid": authzLockUUID}}, http.StatusCreated)
	owner, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=owner@users.test", Key: f.keyA}, http.StatusOK)["uuid"].(string)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: f.keyA, Body: map[string]any{"userId": owner}}, http.StatusOK)
	f.ownerJWT = srv.Token(t, owner, "owner@users.test")
	return f
}

// credentialCount is how many credentials (valid or revoked) lock-1 has.
func credentialCount(t *testing.T, f *deviceFixture) int {
	t.Helper()
	cs, err := f.srv.Store.DeviceCredentials(context.Background(), "lock-1")
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

// mqttLogin connects as thing with a password (tlsCfg nil) or over TLS
// with a client certificate, and returns the CONNECT's error.
func mqttLogin(t *testing.T, f *deviceFixture, thing, password string, tlsCfg *tls.Config) error {
	t.Helper()
	opts := paho.NewClientOptions().SetClientID(thing).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(deviceWait).SetProtocolVersion(4)
	if tlsCfg != nil {
		opts.AddBroker("ssl://" + f.srv.MQTTSAddr).SetTLSConfig(tlsCfg)
	} else {
		opts.AddBroker("tcp://" + f.srv.MQTTAddr).SetUsername(thing).SetPassword(password)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(deviceWait) {
		t.Fatalf("connect %s: no answer within %v", thing, deviceWait)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(0)
	return nil
}

// certTLS is a client TLS config of the route's certificate answer: the
// certificate with keyPEM, trusting caCertificate for the broker's.
func certTLS(t *testing.T, got map[string]any, keyPEM string) *tls.Config {
	t.Helper()
	certPEM, _ := got["certificate"].(string)
	caPEM, _ := got["caCertificate"].(string)
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatalf("the answer's certificate and key: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("caCertificate %q is not a PEM certificate", caPEM)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// TestDeviceCredentialsAuthz: who may issue and revoke a lock's device
// credentials; a refusal issues nothing.
func TestDeviceCredentialsAuthz(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newDeviceFixture(t, b, true)
			body := map[string]any{"kind": "password"}
			for _, path := range []string{"/locks/1/device/credentials", "/locks/1/device/revoke"} {
				refusals := []struct {
					name   string
					req    wireReq
					status int
					msg    string
				}{
					{"no credentials", wireReq{}, 401, msgNoAuth},
					{"another tenant's key", wireReq{Key: f.keyB}, 403, msgNotOwner},
					{"the owner's JWT", wireReq{JWT: f.ownerJWT}, 403, msgDeviceUser},
				}
				for _, r := range refusals {
					t.Run(path+" "+r.name, func(t *testing.T) {
						r.req.Method, r.req.Path, r.req.Body = "POST", path, body
						wireRefused(t, f.srv, r.req, r.status, wireErr(wirePlain, r.status, r.msg))
						if n := credentialCount(t, f); n != 0 {
							t.Errorf("lock-1 has %d credentials after a refusal, want 0", n)
						}
					})
				}
				t.Run(path+" missing lock", func(t *testing.T) {
					q := wireReq{Method: "POST", Path: "/locks/2" + path[len("/locks/1"):], Key: f.keyS, Body: body}
					wireRefused(t, f.srv, q, 404, wireErr(wirePlain, 404, "Lock 2 not found"))
				})
			}
			for _, c := range []struct {
				name string
				req  wireReq
			}{
				{"the lock's tenant", wireReq{Key: f.keyA}},
				{"a super key", wireReq{Key: f.keyS}},
				{"the admin", wireReq{Header: f.adminHeader}},
			} {
				t.Run(c.name, func(t *testing.T) {
					q := c.req
					q.Method, q.Path, q.Body = "POST", "/locks/1/device/credentials", body
					got := wireOK(t, f.srv, q, http.StatusCreated)
					if got["thingName"] != "lock-1" || got["username"] != "lock-1" || got["mqttEndpoint"] != f.srv.MQTTAddr {
						t.Errorf("answer %v: want thing and username lock-1, mqttEndpoint %s", got, f.srv.MQTTAddr)
					}
					if p, _ := got["password"].(string); len(p) < 40 {
						t.Errorf("password %q: want a long random one", p)
					}
					q.Path, q.Body = "/locks/1/device/revoke", nil
					if got := wireOK(t, f.srv, q, http.StatusOK); got["thingName"] != "lock-1" || got["revoked"] != true {
						t.Errorf("revoke answer %v", got)
					}
				})
			}
		})
	}
}

// TestDeviceCredentialsNoDevices: a node without a device layer answers
// 503 saying why, after the authorization.
func TestDeviceCredentialsNoDevices(t *testing.T) {
	f := newDeviceFixture(t, testenv.SQLite, false)
	msg := "this node runs no device broker (spkey serve --mqtt-addr / --mqtts-addr are off): device credentials cannot be issued here"
	for _, path := range []string{"/locks/1/device/credentials", "/locks/1/device/revoke"} {
		wireRefused(t, f.srv, wireReq{Method: "POST", Path: path, Key: f.keyA, Body: map[string]any{"kind": "certificate"}}, 503, wireErr(wirePlain, 503, msg))
		wireRefused(t, f.srv, wireReq{Method: "POST", Path: path, JWT: f.ownerJWT, Body: map[string]any{"kind": "certificate"}}, 403, wireErr(wirePlain, 403, msgDeviceUser))
	}
}

// TestDeviceCredentialsBadInput: an unknown kind, a CSR that is not one,
// a CSR with kind password: 400 in the error envelope, nothing issued.
func TestDeviceCredentialsBadInput(t *testing.T) {
	f := newDeviceFixture(t, testenv.SQLite, true)
	post := func(body any) wireReq {
		return wireReq{Method: "POST", Path: "/locks/1/device/credentials", Key: f.keyA, Body: body}
	}
	cases := []struct {
		name        string
		body        any
		msg         string
		field, fmsg string
	}{
		{"unknown kind", map[string]any{"kind": "token"}, `Invalid request: kind: expected value to be one of "password, certificate"`,
			"kind", `expected value to be one of "password, certificate"`},
		{"no kind", map[string]any{}, "Invalid request: kind is required", "kind", "kind is required"},
		{"not a CSR", map[string]any{"kind": "certificate", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"},
			"csr is not a valid PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----) with a valid signature",
			"csr", "csr is not a valid PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----) with a valid signature"},
		{"CSR with kind password", map[string]any{"kind": "password", "csr": "x"}, `csr goes with kind "certificate" only`, "csr", `csr goes with kind "certificate" only`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wireRefused(t, f.srv, post(c.body), 400, wireErr(wirePlain, 400, c.msg, [2]string{c.field, c.fmsg}))
			if n := credentialCount(t, f); n != 0 {
				t.Errorf("lock-1 has %d credentials after bad input, want 0", n)
			}
		})
	}
}

// TestDeviceCredentialsConnect: a password from the route logs into the
// embedded broker, a certificate (made by spkey, or for the device's own
// CSR) connects over TLS; after the revoke route neither logs in again.
func TestDeviceCredentialsConnect(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newDeviceFixture(t, b, true)
			issue := func(body any) map[string]any {
				return wireOK(t, f.srv, wireReq{Method: "POST", Path: "/locks/1/device/credentials", Key: f.keyA, Body: body}, http.StatusCreated)
			}
			pw := issue(map[string]any{"kind": "password"})
			password, _ := pw["password"].(string)
			if err := mqttLogin(t, f, "lock-1", password, nil); err != nil {
				t.Fatalf("login with the route's password: %v", err)
			}
			if err := mqttLogin(t, f, "lock-1", password+"x", nil); err == nil {
				t.Fatal("login with a wrong password succeeded")
			}

			cert := issue(map[string]any{"kind": "certificate"})
			if cert["mqttsEndpoint"] != f.srv.MQTTSAddr || cert["password"] != nil {
				t.Errorf("certificate answer: mqttsEndpoint %v (want %s), password %v (want none)", cert["mqttsEndpoint"], f.srv.MQTTSAddr, cert["password"])
			}
			keyPEM, _ := cert["privateKey"].(string)
			spkeyKey := certTLS(t, cert, keyPEM)
			if err := mqttLogin(t, f, "lock-1", "", spkeyKey); err != nil {
				t.Fatalf("TLS login with the route's certificate: %v", err)
			}

			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
			if err != nil {
				t.Fatal(err)
			}
			signed := issue(map[string]any{"kind": "certificate", "csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
			if _, ok := signed["privateKey"]; ok {
				t.Errorf("answer to a CSR holds a privateKey: %v", signed)
			}
			keyDER, err := x509.MarshalECPrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			ownKey := certTLS(t, signed, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
			if err := mqttLogin(t, f, "lock-1", "", ownKey); err != nil {
				t.Fatalf("TLS login with the certificate of the device's CSR: %v", err)
			}

			// A session open when the revoke comes is closed by it.
			lost := make(chan struct{})
			live := paho.NewClient(paho.NewClientOptions().SetClientID("lock-1").SetAutoReconnect(false).SetConnectRetry(false).
				SetConnectTimeout(deviceWait).SetProtocolVersion(4).AddBroker("tcp://" + f.srv.MQTTAddr).SetUsername("lock-1").SetPassword(password).
				SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
			if tok := live.Connect(); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
				t.Fatalf("connect before the revoke: %v", tok.Error())
			}
			defer live.Disconnect(0)
			wireOK(t, f.srv, wireReq{Method: "POST", Path: "/locks/1/device/revoke", Key: f.keyA}, http.StatusOK)
			select {
			case <-lost:
			case <-time.After(deviceWait):
				t.Error("the session open at the revoke is still connected")
			}
			if err := mqttLogin(t, f, "lock-1", password, nil); err == nil {
				t.Error("password login after the revoke succeeded")
			}
			for name, cfg := range map[string]*tls.Config{"spkey's key": spkeyKey, "the CSR's key": ownKey} {
				if err := mqttLogin(t, f, "lock-1", "", cfg); err == nil {
					t.Errorf("TLS login with %s after the revoke succeeded", name)
				}
			}
		})
	}
}
