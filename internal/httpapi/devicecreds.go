package httpapi

import (
	"context"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
)

// The device credential routes (spkey extension): a lock's MQTT
// credentials for its tenant or the admin, shown once.

type deviceCredentialsInput struct {
	LockPath
	Body struct {
		_    struct{} `additionalProperties:"true"`
		Kind string   `json:"kind" enum:"password,certificate" doc:"password: a username and password for the plain MQTT listener; certificate: a client certificate for the TLS listener"`
		CSR  string   `json:"csr,omitempty" maxLength:"16384" doc:"With kind certificate: the device's PEM certificate signing request, signed instead of making a key (no privateKey in the answer)"`
	}
}

// DeviceCredentialsOutput is POST /locks/{id}/device/credentials: the
// secrets are in this answer only.
type DeviceCredentialsOutput struct {
	Status       int
	CacheControl string `header:"Cache-Control"`
	Body         struct {
		ThingName     string `json:"thingName" doc:"The lock's thing name, also its MQTT client id"`
		Username      string `json:"username,omitempty" doc:"kind password: the MQTT username"`
		Password      string `json:"password,omitempty" doc:"kind password: the MQTT password, shown once"`
		Certificate   string `json:"certificate,omitempty" doc:"kind certificate: the PEM client certificate"`
		PrivateKey    string `json:"privateKey,omitempty" doc:"kind certificate without csr: the PEM private key, shown once"`
		CACertificate string `json:"caCertificate,omitempty" doc:"kind certificate: the device CA's PEM certificate, to trust the broker's"`
		MQTTEndpoint  string `json:"mqttEndpoint,omitempty" doc:"kind password: the broker's plain listener (host:port)"`
		MQTTSEndpoint string `json:"mqttsEndpoint,omitempty" doc:"kind certificate: the broker's TLS listener (host:port)"`
	}
}

func (s *Server) issueDeviceCredentials(ctx context.Context, in *deviceCredentialsInput) (*DeviceCredentialsOutput, error) {
	c, err := s.svc.IssueDeviceCredentials(ctx, principal(ctx), in.ID, app.DeviceCredentialsInput{Kind: in.Body.Kind, CSR: in.Body.CSR})
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeviceCredentialsOutput{Status: http.StatusCreated, CacheControl: "no-store"}
	b := &out.Body
	b.ThingName, b.Username, b.Password, b.MQTTEndpoint = c.ThingName, c.Username, c.Password, c.MQTTEndpoint
	b.Certificate, b.PrivateKey, b.CACertificate, b.MQTTSEndpoint = c.CertificatePEM, c.PrivateKeyPEM, c.CACertPEM, c.MQTTSEndpoint
	return out, nil
}

// DeviceRevokeOutput is POST /locks/{id}/device/revoke.
type DeviceRevokeOutput struct {
	Body struct {
		ThingName string `json:"thingName"`
		Revoked   bool   `json:"revoked" doc:"Every credential of the thing is revoked: its new connections are refused (open ones are not cut)"`
	}
}

func (s *Server) revokeDeviceCredentials(ctx context.Context, in *struct{ LockPath }) (*DeviceRevokeOutput, error) {
	thing, err := s.svc.RevokeDeviceCredentials(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeviceRevokeOutput{}
	out.Body.ThingName, out.Body.Revoked = thing, true
	return out, nil
}
