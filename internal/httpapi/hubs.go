package httpapi

import (
	"context"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/hub"
)

// The hub routes: upstream's eight (/hubs/{id}/…) and spkey's device
// credentials of a hub's thing.

// HubPath is the hub id of a hub route.
type HubPath struct {
	ID string `path:"id" maxLength:"64" doc:"Hub ID (UUID)"`
}

// hubCommandInput is the request of a command on a hub.
type hubCommandInput[B any] struct {
	HubPath
	IdemHeader
	Body B
}

// hubCall is call for a command on hub id.
func (s *Server) hubCall(ctx context.Context, command, id, key string, input any) app.Call {
	return s.call(ctx, command+" hub/"+id, key, input)
}

type provisionHubInputBody struct {
	_          struct{} `additionalProperties:"true"`
	HubID      string   `json:"hubId" doc:"Hub ID (UUID, the path's)"`
	Serial     string   `json:"serial" minLength:"1" doc:"Hub serial number"`
	Model      string   `json:"model" minLength:"1" doc:"Hub model identifier"`
	ThingName  string   `json:"thingName,omitempty" doc:"The hub's thing name, also its MQTT client id (defaults to hubId)"`
	VendorName string   `json:"vendorName,omitempty" doc:"Vendor/manufacturer name"`
}

func (s *Server) provisionHub(ctx context.Context, in *hubCommandInput[provisionHubInputBody]) (*CommandOutput[hub.HubProvisioned], error) {
	b := app.ProvisionHubInput{HubID: in.Body.HubID, Serial: in.Body.Serial, Model: in.Body.Model, ThingName: in.Body.ThingName, VendorName: in.Body.VendorName}
	r, err := s.svc.ProvisionHub(ctx, s.hubCall(ctx, "ProvisionHub", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, true)
}

type claimHubInputBody struct {
	_      struct{} `additionalProperties:"true"`
	HubID  string   `json:"hubId" doc:"Hub ID"`
	OrgID  string   `json:"orgId,omitempty" doc:"Organization ID: a normal key's own (another answers 403; omit it); a super key's choice"`
	SiteID string   `json:"siteId" doc:"Site ID"`
	UserID string   `json:"userId" doc:"User ID claiming the hub"`
}

func (s *Server) claimHub(ctx context.Context, in *hubCommandInput[claimHubInputBody]) (*CommandOutput[hub.HubClaimed], error) {
	b := app.ClaimHubInput{HubID: in.Body.HubID, OrgID: in.Body.OrgID, SiteID: in.Body.SiteID, UserID: in.Body.UserID}
	r, err := s.svc.ClaimHub(ctx, s.hubCall(ctx, "ClaimHub", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, false)
}

type reClaimHubInputBody struct {
	_         struct{} `additionalProperties:"true"`
	HubID     string   `json:"hubId" doc:"Hub ID"`
	NewOrgID  string   `json:"newOrgId" doc:"New Organization ID"`
	NewSiteID string   `json:"newSiteId" doc:"New Site ID"`
	Reason    string   `json:"reason" minLength:"1" doc:"Reason for re-claiming"`
	UserID    string   `json:"userId" doc:"User ID performing re-claim"`
}

func (s *Server) reClaimHub(ctx context.Context, in *hubCommandInput[reClaimHubInputBody]) (*CommandOutput[hub.HubReClaimed], error) {
	b := app.ReClaimHubInput{HubID: in.Body.HubID, NewOrgID: in.Body.NewOrgID, NewSiteID: in.Body.NewSiteID, Reason: in.Body.Reason, UserID: in.Body.UserID}
	r, err := s.svc.ReClaimHub(ctx, s.hubCall(ctx, "ReClaimHub", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, false)
}

type setHubRoleInputBody struct {
	_         struct{} `additionalProperties:"true"`
	HubID     string   `json:"hubId" doc:"Hub ID"`
	IsPrimary *bool    `json:"isPrimary" doc:"Whether the hub is its site's primary (the site's previous primary becomes secondary)"`
	UserID    string   `json:"userId" doc:"User ID (UUID) setting the role"`
}

func (s *Server) setHubRole(ctx context.Context, in *hubCommandInput[setHubRoleInputBody]) (*CommandOutput[hub.HubRoleSet], error) {
	b := app.SetHubRoleInput{HubID: in.Body.HubID, IsPrimary: in.Body.IsPrimary, UserID: in.Body.UserID}
	r, err := s.svc.SetHubRole(ctx, s.hubCall(ctx, "SetHubRole", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, false)
}

type suspendHubInputBody struct {
	_      struct{} `additionalProperties:"true"`
	HubID  string   `json:"hubId" doc:"Hub ID"`
	Reason string   `json:"reason" minLength:"1" doc:"Reason for suspension"`
	UserID string   `json:"userId" doc:"User ID suspending the hub"`
}

func (s *Server) suspendHub(ctx context.Context, in *hubCommandInput[suspendHubInputBody]) (*CommandOutput[hub.HubSuspended], error) {
	b := app.SuspendHubInput{HubID: in.Body.HubID, Reason: in.Body.Reason, UserID: in.Body.UserID}
	r, err := s.svc.SuspendHub(ctx, s.hubCall(ctx, "SuspendHub", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, false)
}

// HubCommandOutput is the answer of SendHubCommand and CommissionDevice:
// upstream's envelope (event always null) plus spkey's requestId and
// offline.
type HubCommandOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Success     bool   `json:"success"`
		AggregateID string `json:"aggregateId"`
		Version     number `json:"version"`
		Event       any    `json:"event" doc:"Always null: the command records no event; the hub answers in its reported shadow"`
		RequestID   string `json:"requestId" doc:"spkey: the command's key in the hub shadow's desired and reported commands"`
		Offline     bool   `json:"offline" doc:"The hub was offline: the command waits for it in the shadow"`
	}
}

func hubCommandResult(ctx context.Context, s *Server, r app.HubCommandAnswer, err error) (*HubCommandOutput, error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &HubCommandOutput{Status: http.StatusOK, Replayed: replayed(r.Answer)}
	b := &out.Body
	b.Success, b.AggregateID, b.Version, b.RequestID, b.Offline = true, r.AggregateID, number(r.Version), r.RequestID, r.Offline
	return out, nil
}

type sendHubCommandInputBody struct {
	_       struct{}       `additionalProperties:"true"`
	HubID   string         `json:"hubId" doc:"Hub ID"`
	Command string         `json:"command" minLength:"1" maxLength:"128" doc:"Hub command name, forwarded verbatim (e.g. get_nodes, server_info, set_wifi_credentials)"`
	Args    map[string]any `json:"args,omitempty" doc:"Command arguments, forwarded verbatim (at most 16 KiB encoded)"`
}

func (s *Server) sendHubCommand(ctx context.Context, in *hubCommandInput[sendHubCommandInputBody]) (*HubCommandOutput, error) {
	b := app.SendHubCommandInput{HubID: in.Body.HubID, Command: in.Body.Command, Args: in.Body.Args}
	r, err := s.svc.SendHubCommand(ctx, s.hubCall(ctx, "SendHubCommand", in.ID, in.IdempotencyKey, b), in.ID, b)
	return hubCommandResult(ctx, s, r, err)
}

type commissionDeviceInputBody struct {
	_                 struct{} `additionalProperties:"true"`
	HubID             string   `json:"hubId" doc:"Hub ID"`
	CommissioningCode string   `json:"commissioningCode" doc:"Matter pairing code: 11 or 21 digits, or an MT: QR payload"`
}

func (s *Server) commissionDevice(ctx context.Context, in *hubCommandInput[commissionDeviceInputBody]) (*HubCommandOutput, error) {
	b := app.CommissionDeviceInput{HubID: in.Body.HubID, CommissioningCode: in.Body.CommissioningCode}
	r, err := s.svc.CommissionDevice(ctx, s.hubCall(ctx, "CommissionDevice", in.ID, in.IdempotencyKey, b), in.ID, b)
	return hubCommandResult(ctx, s, r, err)
}

// HubStatusOutput is GET /hubs/{id}/status.
type HubStatusOutput struct {
	Body struct {
		HubID         string   `json:"hubId"`
		Serial        string   `json:"serial"`
		Model         string   `json:"model"`
		ThingName     string   `json:"thingName"`
		VendorName    string   `json:"vendorName,omitempty"`
		Status        string   `json:"status" enum:"Provisioned,Claimed,Suspended,Decommissioned"`
		OrgID         string   `json:"orgId" doc:"Empty until the hub is claimed"`
		SiteID        string   `json:"siteId" doc:"Empty until the hub is claimed"`
		IsPrimary     bool     `json:"isPrimary"`
		ProvisionedAt number   `json:"provisionedAt" doc:"Epoch ms"`
		ClaimedAt     number   `json:"claimedAt" doc:"Epoch ms; 0 until the hub is claimed"`
		Online        bool     `json:"online" doc:"Whether the hub's thing is connected"`
		LastSeen      *number  `json:"lastSeen,omitempty" doc:"Epoch ms of the hub's last connect or disconnect; absent when never seen"`
		Version       *string  `json:"version,omitempty" doc:"The hub's reported version"`
		UptimeSeconds *float64 `json:"uptimeSeconds,omitempty" doc:"The hub's reported uptime"`
	}
}

func (s *Server) hubStatus(ctx context.Context, in *HubPath) (*HubStatusOutput, error) {
	v, err := s.svc.HubStatus(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &HubStatusOutput{}
	b, st := &out.Body, v.State
	b.HubID, b.Serial, b.Model, b.ThingName, b.VendorName, b.Status = st.HubID, st.Serial, st.Model, st.ThingName, st.VendorName, st.Status
	b.OrgID, b.SiteID, b.IsPrimary, b.ProvisionedAt, b.ClaimedAt = st.OrgID, st.SiteID, st.IsPrimary, number(st.ProvisionedAt), number(st.ClaimedAt)
	b.Online, b.Version, b.UptimeSeconds = v.Online, v.Version, v.UptimeSeconds
	if v.LastSeen != 0 {
		ls := number(v.LastSeen)
		b.LastSeen = &ls
	}
	return out, nil
}

type hubDeviceCredentialsInput struct {
	HubPath
	Body struct {
		_    struct{} `additionalProperties:"true"`
		Kind string   `json:"kind" enum:"password,certificate" doc:"password: a username and password for the plain MQTT listener; certificate: a client certificate for the TLS listener"`
		CSR  string   `json:"csr,omitempty" maxLength:"16384" doc:"With kind certificate: the device's PEM certificate signing request, signed instead of making a key (no privateKey in the answer)"`
	}
}

func (s *Server) issueHubDeviceCredentials(ctx context.Context, in *hubDeviceCredentialsInput) (*DeviceCredentialsOutput, error) {
	c, err := s.svc.IssueHubDeviceCredentials(ctx, principal(ctx), in.ID, app.DeviceCredentialsInput{Kind: in.Body.Kind, CSR: in.Body.CSR})
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeviceCredentialsOutput{Status: http.StatusCreated, CacheControl: "no-store"}
	b := &out.Body
	b.ThingName, b.Username, b.Password, b.MQTTEndpoint = c.ThingName, c.Username, c.Password, c.MQTTEndpoint
	b.Certificate, b.PrivateKey, b.CACertificate, b.MQTTSEndpoint = c.CertificatePEM, c.PrivateKeyPEM, c.CACertPEM, c.MQTTSEndpoint
	return out, nil
}

func (s *Server) revokeHubDeviceCredentials(ctx context.Context, in *HubPath) (*DeviceRevokeOutput, error) {
	thing, err := s.svc.RevokeHubDeviceCredentials(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeviceRevokeOutput{}
	out.Body.ThingName, out.Body.Revoked = thing, true
	return out, nil
}
