package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
)

var secPartner = []map[string][]string{{"ApiKeyAuth": {}}}

// webhookRoutes registers the admin webhook API under /tenants/{orgId}
// and the partner's own under /webhooks (X-API-Key).
func (s *Server) webhookRoutes(a huma.API) {
	const admin, partner = "Admin", "Partner"
	huma.Register(a, op(http.MethodPost, "/tenants/{orgId}/webhooks", "post_CreateWebhook", "Subscribe a URL to the tenant's events (pending until its verification POST gets a 2xx)", 201, secAdmin, admin, "Webhooks", "Command"), s.createWebhook)
	huma.Register(a, op(http.MethodGet, "/tenants/{orgId}/webhooks", "get_ListWebhooks", "The tenant's webhooks", 200, secAdmin, admin, "Webhooks"), s.listWebhooks)
	huma.Register(a, op(http.MethodGet, "/tenants/{orgId}/webhooks/{webhookId}", "get_GetWebhook", "One webhook", 200, secAdmin, admin, "Webhooks"), asAdmin(s, s.webhook))
	huma.Register(a, op(http.MethodPut, "/tenants/{orgId}/webhooks/{webhookId}", "put_UpdateWebhook", "Change url, events, secret or outbound auth", 200, secAdmin, admin, "Webhooks", "Command"), s.updateWebhook)
	huma.Register(a, op(http.MethodDelete, "/tenants/{orgId}/webhooks/{webhookId}", "delete_DeleteWebhook", "Delete a webhook; its queued deliveries are dropped", 200, secAdmin, admin, "Webhooks", "Command"), s.deleteWebhook)
	huma.Register(a, op(http.MethodPost, "/tenants/{orgId}/webhooks/{webhookId}/verify", "post_VerifyWebhook", "Send the verification POST again", 202, secAdmin, admin, "Webhooks"), asAdmin(s, s.verify))
	huma.Register(a, op(http.MethodGet, "/tenants/{orgId}/webhooks/{webhookId}/secret", "get_WebhookSecret", "The signing secret (and the previous one during a rotation)", 200, secAdmin, admin, "Webhooks"), asAdmin(s, s.secret))
	huma.Register(a, op(http.MethodGet, "/tenants/{orgId}/webhooks/{webhookId}/deliveries", "get_WebhookDeliveries", "Delivery log: every delivery with its attempts, newest first", 200, secAdmin, admin, "Webhooks"), s.webhookDeliveries)
	huma.Register(a, op(http.MethodPost, "/tenants/{orgId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", "post_RedeliverWebhook", "Send one delivery's event again", 202, secAdmin, admin, "Webhooks"), s.redeliver)
	huma.Register(a, op(http.MethodPost, "/tenants/{orgId}/webhooks/{webhookId}/replay", "post_ReplayWebhook", "Queue every matching event since a time again", 202, secAdmin, admin, "Webhooks"), s.replay)

	huma.Register(a, op(http.MethodGet, "/webhooks", "get_MyWebhooks", "The partner's own webhooks", 200, secPartner, partner, "Webhooks"), s.myWebhooks)
	huma.Register(a, op(http.MethodGet, "/webhooks/{webhookId}", "get_MyWebhook", "One of the partner's webhooks", 200, secPartner, partner, "Webhooks"), asPartner(s.webhook))
	huma.Register(a, op(http.MethodPatch, "/webhooks/{webhookId}", "patch_MyWebhookUrl", "Change the webhook's URL (back to pending until verified)", 200, secPartner, partner, "Webhooks", "Command"), s.patchWebhook)
	huma.Register(a, op(http.MethodPost, "/webhooks/{webhookId}/verify", "post_VerifyMyWebhook", "Send the verification POST again", 202, secPartner, partner, "Webhooks"), asPartner(s.verify))
	huma.Register(a, op(http.MethodGet, "/webhooks/{webhookId}/secret", "get_MyWebhookSecret", "The signing secret (and the previous one during a rotation)", 200, secPartner, partner, "Webhooks"), asPartner(s.secret))
	huma.Register(a, op(http.MethodGet, "/webhooks/{webhookId}/deliveries", "get_MyWebhookDeliveries", "Delivery log, newest first", 200, secPartner, partner, "Webhooks"), s.myDeliveries)
	huma.Register(a, op(http.MethodPost, "/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", "post_RedeliverMyWebhook", "Send one delivery's event again", 202, secPartner, partner, "Webhooks"), s.myRedeliver)
	huma.Register(a, op(http.MethodPost, "/webhooks/{webhookId}/replay", "post_ReplayMyWebhook", "Queue every matching event since a time again", 202, secPartner, partner, "Webhooks"), s.myReplay)
	huma.Register(a, op(http.MethodPost, "/api-keys/rotate", "post_RotateMyApiKey", "Rotate the calling key: a new key (shown once) replaces it at once", 201, secPartner, partner), s.rotateMyKey)
}

// Inputs.

// OrgPath is the {orgId} of the admin webhook routes. The inputs embed
// it, and huma reads only exported embedded structs: an unexported one
// would leave the parameter empty.
type OrgPath struct {
	OrgID string `path:"orgId" doc:"The tenant's organization id"`
}

// HookPath is the {webhookId} of the webhook routes.
type HookPath struct {
	WebhookID string `path:"webhookId" doc:"The webhook's id (UUID)"`
}

// DeliveryPath is the {deliveryId} of the redeliver routes.
type DeliveryPath struct {
	DeliveryID int64 `path:"deliveryId" doc:"The delivery's id"`
}

type webhookBody struct {
	_            struct{} `additionalProperties:"true"`
	URL          string   `json:"url,omitempty" doc:"https URL that receives the POSTs"`
	Events       []string `json:"events,omitempty" doc:"[\"*\"] (every event, the default) or PascalCase event types"`
	Secret       string   `json:"secret,omitempty" doc:"Standard Webhooks secret (whsec_ + base64 of 24-64 bytes); generated when omitted"`
	RotateSecret bool     `json:"rotateSecret,omitempty" doc:"PUT only: generate a new secret; the old one keeps signing for 24 h"`
	AuthType     string   `json:"authType,omitempty" enum:"none,apiKeyHeader,bearerToken" doc:"Outbound authentication (none by default)"`
	AuthHeader   string   `json:"authHeader,omitempty" doc:"Header name for apiKeyHeader"`
	AuthValue    string   `json:"authValue,omitempty" doc:"Header value (apiKeyHeader) or token (bearerToken); never shown again"`
}

func (b webhookBody) input() app.WebhookInput {
	return app.WebhookInput{URL: b.URL, Events: b.Events, Secret: b.Secret, RotateSecret: b.RotateSecret, AuthType: b.AuthType, AuthHeader: b.AuthHeader, AuthValue: b.AuthValue}
}

type createWebhookInput struct {
	OrgPath
	IdemHeader
	Body webhookBody
}

type updateWebhookInput struct {
	OrgPath
	HookPath
	Body webhookBody
}

type orgHookInput struct {
	OrgPath
	HookPath
}

type listWebhooksInput struct {
	OrgPath
	Limit  int `query:"limit" minimum:"1" maximum:"100" default:"50"`
	Offset int `query:"offset" minimum:"0" default:"0"`
}

type myWebhooksInput struct {
	Limit  int `query:"limit" minimum:"1" maximum:"100" default:"50"`
	Offset int `query:"offset" minimum:"0" default:"0"`
}

// DeliveriesQuery is the delivery log's paging and status filter.
type DeliveriesQuery struct {
	PageQuery
	Status string `query:"status" enum:"pending,delivered,failed,skipped" doc:"Only deliveries in this state"`
}

type orgDeliveriesInput struct {
	OrgPath
	HookPath
	DeliveriesQuery
}

type myDeliveriesInput struct {
	HookPath
	DeliveriesQuery
}

type orgRedeliverInput struct {
	OrgPath
	HookPath
	DeliveryPath
}

type myRedeliverInput struct {
	HookPath
	DeliveryPath
}

type replayBody struct {
	_     struct{} `additionalProperties:"true"`
	Since string   `json:"since" doc:"ISO-8601 time: every matching event recorded at or after it is queued again, in order"`
}

type orgReplayInput struct {
	OrgPath
	HookPath
	Body replayBody
}

type myReplayInput struct {
	HookPath
	Body replayBody
}

type patchWebhookInput struct {
	HookPath
	Body struct {
		_   struct{} `additionalProperties:"true"`
		URL string   `json:"url" minLength:"1" doc:"The new https URL"`
	}
}

// Outputs.

// WebhookCommandOutput is a webhook command's answer: upstream's envelope
// (aggregateId is the orgId: tenants are aggregates) plus the webhook.
type WebhookCommandOutput[P domain.Event] struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Success       bool      `json:"success"`
		AggregateID   string    `json:"aggregateId" doc:"The orgId"`
		Version       number    `json:"version"`
		Event         *Event[P] `json:"event"`
		WebhookID     string    `json:"webhookId"`
		WebhookStatus string    `json:"status,omitempty" doc:"pending until the URL answers the verification POST with 2xx"`
		Secret        string    `json:"secret,omitempty" doc:"The signing secret: only when created or rotated"`
	}
}

func webhookCommand[P domain.Event](ctx context.Context, s *Server, r app.WebhookAnswer[P], err error, created bool) (*WebhookCommandOutput[P], error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &WebhookCommandOutput[P]{Status: status(r.Answer, created), Replayed: replayed(r.Answer)}
	b := &out.Body
	b.Success, b.AggregateID, b.Version, b.Event = true, r.AggregateID, number(r.Version), (*Event[P])(r.Event)
	b.WebhookID, b.WebhookStatus, b.Secret = r.WebhookID, r.Status, r.Secret
	return out, nil
}

type webhookItem struct {
	ID              string   `json:"id"`
	OrgID           string   `json:"orgId"`
	URL             string   `json:"url"`
	Events          []string `json:"events" nullable:"false"`
	Status          string   `json:"status" enum:"pending,active,disabled"`
	AuthType        string   `json:"authType"`
	AuthHeader      string   `json:"authHeader,omitempty"`
	CreatedAt       string   `json:"createdAt"`
	UpdatedAt       string   `json:"updatedAt"`
	VerifiedAt      *string  `json:"verifiedAt"`
	LastError       *string  `json:"lastError" doc:"Why the last verification or delivery failed; null when none"`
	LastErrorAt     *string  `json:"lastErrorAt"`
	LastStatusCode  *int     `json:"lastStatusCode"`
	SecretRotatedAt *string  `json:"secretRotatedAt"`
	DisabledAt      *string  `json:"disabledAt"`
	QueueFullSince  *string  `json:"queueFullSince" doc:"When the webhook's queue filled up (200 undone deliveries): events after that wait in the event log and are queued, in order, as it drains. null while it is not full"`
}

func optInt(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

func item(w app.WebhookView) webhookItem {
	return webhookItem{ID: w.ID, OrgID: w.OrgID, URL: w.URL, Events: w.Events, Status: w.Status, AuthType: w.AuthType, AuthHeader: w.AuthHeader,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, VerifiedAt: optional(w.VerifiedAt), LastError: optional(w.LastError),
		LastErrorAt: optional(w.LastErrorAt), LastStatusCode: optInt(w.LastStatusCode), SecretRotatedAt: optional(w.SecretRotatedAt), DisabledAt: optional(w.DisabledAt),
		QueueFullSince: optional(w.QueueFullSince)}
}

// WebhookOutput is one webhook.
type WebhookOutput struct {
	Status int
	Body   webhookItem
}

// WebhooksOutput is a list of webhooks, upstream's shape.
type WebhooksOutput struct {
	Body struct {
		Webhooks []webhookItem `json:"webhooks" nullable:"false"`
		Total    int           `json:"total"`
		Limit    int           `json:"limit"`
		Offset   int           `json:"offset"`
	}
}

// SecretOutput is a webhook's signing secret.
type SecretOutput struct {
	Body struct {
		Secret                  string  `json:"secret"`
		PreviousSecret          *string `json:"previousSecret" doc:"The rotated-out secret while it still signs; null otherwise"`
		PreviousSecretExpiresAt *string `json:"previousSecretExpiresAt"`
	}
}

type attemptItem struct {
	At         string  `json:"at"`
	Outcome    string  `json:"outcome" enum:"delivered,retry,failed,skipped"`
	StatusCode *int    `json:"statusCode" doc:"The receiver's HTTP status; null when it did not answer"`
	LatencyMS  int64   `json:"latencyMs"`
	Error      *string `json:"error"`
}

type deliveryItem struct {
	ID             int64         `json:"id"`
	EventID        string        `json:"eventId" doc:"The envelope id (the receiver's deduplication key)"`
	EventType      string        `json:"eventType"`
	AggregateType  string        `json:"aggregateType"`
	AggregateID    string        `json:"aggregateId"`
	Version        int64         `json:"version"`
	Status         string        `json:"status" enum:"pending,delivered,failed,skipped"`
	EventTime      string        `json:"eventTime"`
	QueuedAt       string        `json:"queuedAt"`
	LastAttemptAt  *string       `json:"lastAttemptAt"`
	NextAttemptAt  *string       `json:"nextAttemptAt"`
	LastStatusCode *int          `json:"lastStatusCode"`
	LastError      *string       `json:"lastError"`
	Attempts       []attemptItem `json:"attempts" nullable:"false"`
}

func deliveryOut(d app.DeliveryView) deliveryItem {
	it := deliveryItem{ID: d.ID, EventID: d.EventID, EventType: d.EventType, AggregateType: d.AggregateType, AggregateID: d.AggregateID,
		Version: d.Version, Status: d.Status, EventTime: d.EventTime, QueuedAt: d.CreatedAt, LastAttemptAt: optional(d.LastAttemptAt),
		NextAttemptAt: optional(d.NextAttemptAt), LastStatusCode: optInt(d.LastStatusCode), LastError: optional(d.LastError), Attempts: make([]attemptItem, 0, len(d.Attempts))}
	for _, a := range d.Attempts {
		it.Attempts = append(it.Attempts, attemptItem{At: a.At, Outcome: a.Outcome, StatusCode: optInt(a.StatusCode), LatencyMS: a.LatencyMS, Error: optional(a.Error)})
	}
	return it
}

// DeliveriesOutput is a page of the delivery log.
type DeliveriesOutput struct {
	Body struct {
		Deliveries []deliveryItem `json:"deliveries" nullable:"false"`
		NextCursor *string        `json:"nextCursor" doc:"null on the last page"`
	}
}

// DeliveryOutput is one (new) delivery.
type DeliveryOutput struct {
	Status int
	Body   deliveryItem
}

// ReplayOutput says how many deliveries a replay queued.
type ReplayOutput struct {
	Status int
	Body   struct {
		Queued int64  `json:"queued"`
		Since  string `json:"since"`
	}
}

// Handlers. An admin names the org; a partner's org is its key's.

func (s *Server) createWebhook(ctx context.Context, in *createWebhookInput) (*WebhookCommandOutput[tenant.WebhookCreated], error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	r, err := s.svc.CreateWebhook(ctx, app.Call{P: p, Route: "webhooks " + in.OrgID, IdempotencyKey: in.IdempotencyKey, Input: in.Body}, in.OrgID, in.Body.input())
	return webhookCommand(ctx, s, r, err, true)
}

func (s *Server) updateWebhook(ctx context.Context, in *updateWebhookInput) (*WebhookCommandOutput[tenant.WebhookUpdated], error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	r, err := s.svc.UpdateWebhook(ctx, app.Call{P: p}, in.OrgID, in.WebhookID, in.Body.input())
	return webhookCommand(ctx, s, r, err, false)
}

func (s *Server) deleteWebhook(ctx context.Context, in *orgHookInput) (*WebhookCommandOutput[tenant.WebhookDeleted], error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	r, err := s.svc.DeleteWebhook(ctx, app.Call{P: p}, in.OrgID, in.WebhookID)
	return webhookCommand(ctx, s, r, err, false)
}

func (s *Server) patchWebhook(ctx context.Context, in *patchWebhookInput) (*WebhookCommandOutput[tenant.WebhookUpdated], error) {
	r, err := s.svc.PatchWebhookURL(ctx, app.Call{P: principal(ctx)}, in.WebhookID, in.Body.URL)
	return webhookCommand(ctx, s, r, err, false)
}

func (s *Server) listWebhooks(ctx context.Context, in *listWebhooksInput) (*WebhooksOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	return s.webhooks(ctx, p, in.OrgID, in.Limit, in.Offset)
}

func (s *Server) myWebhooks(ctx context.Context, in *myWebhooksInput) (*WebhooksOutput, error) {
	return s.webhooks(ctx, principal(ctx), "", in.Limit, in.Offset)
}

func (s *Server) webhooks(ctx context.Context, p app.Principal, org string, limit, offset int) (*WebhooksOutput, error) {
	ws, total, err := s.svc.Webhooks(ctx, p, org, limit, offset)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &WebhooksOutput{}
	out.Body.Webhooks = make([]webhookItem, 0, len(ws))
	for _, w := range ws {
		out.Body.Webhooks = append(out.Body.Webhooks, item(w))
	}
	out.Body.Total, out.Body.Limit, out.Body.Offset = total, limit, offset
	return out, nil
}

// hookHandler serves one webhook for principal p: org names it for an
// admin, "" for the partner's own.
type hookHandler[O any] func(ctx context.Context, p app.Principal, org, id string) (*O, error)

// asAdmin serves h on an admin route: /tenants/{orgId}/webhooks/{webhookId}...
func asAdmin[O any](s *Server, h hookHandler[O]) func(context.Context, *orgHookInput) (*O, error) {
	return func(ctx context.Context, in *orgHookInput) (*O, error) {
		p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
		return h(ctx, p, in.OrgID, in.WebhookID)
	}
}

// asPartner serves h on a partner route: /webhooks/{webhookId}...
func asPartner[O any](h hookHandler[O]) func(context.Context, *HookPath) (*O, error) {
	return func(ctx context.Context, in *HookPath) (*O, error) {
		return h(ctx, principal(ctx), "", in.WebhookID)
	}
}

func (s *Server) webhook(ctx context.Context, p app.Principal, org, id string) (*WebhookOutput, error) {
	w, err := s.svc.Webhook(ctx, p, org, id)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &WebhookOutput{Status: http.StatusOK, Body: item(w)}, nil
}

func (s *Server) verify(ctx context.Context, p app.Principal, org, id string) (*WebhookOutput, error) {
	w, err := s.svc.VerifyWebhook(ctx, p, org, id)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &WebhookOutput{Status: http.StatusAccepted, Body: item(w)}, nil
}

func (s *Server) secret(ctx context.Context, p app.Principal, org, id string) (*SecretOutput, error) {
	sec, prev, until, err := s.svc.WebhookSecret(ctx, p, org, id)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &SecretOutput{}
	out.Body.Secret, out.Body.PreviousSecret, out.Body.PreviousSecretExpiresAt = sec, optional(prev), optional(until)
	return out, nil
}

func (s *Server) webhookDeliveries(ctx context.Context, in *orgDeliveriesInput) (*DeliveriesOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	return s.deliveries(ctx, p, in.OrgID, in.WebhookID, in.DeliveriesQuery)
}

func (s *Server) myDeliveries(ctx context.Context, in *myDeliveriesInput) (*DeliveriesOutput, error) {
	return s.deliveries(ctx, principal(ctx), "", in.WebhookID, in.DeliveriesQuery)
}

func (s *Server) deliveries(ctx context.Context, p app.Principal, org, id string, q DeliveriesQuery) (*DeliveriesOutput, error) {
	var before int64
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, toAPIError(ctx, s.log, domain.InvalidField("cursor", "cursor must be the nextCursor of a previous page"))
		}
		before = n
	}
	ds, next, err := s.svc.DeliveriesWith(ctx, p, org, id, before, q.Limit, q.Status)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeliveriesOutput{}
	out.Body.Deliveries = make([]deliveryItem, 0, len(ds))
	for _, d := range ds {
		out.Body.Deliveries = append(out.Body.Deliveries, deliveryOut(d))
	}
	if next > 0 {
		c := strconv.FormatInt(next, 10)
		out.Body.NextCursor = &c
	}
	return out, nil
}

func (s *Server) redeliver(ctx context.Context, in *orgRedeliverInput) (*DeliveryOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	return s.redeliverAs(ctx, p, in.OrgID, in.WebhookID, in.DeliveryID)
}

func (s *Server) myRedeliver(ctx context.Context, in *myRedeliverInput) (*DeliveryOutput, error) {
	return s.redeliverAs(ctx, principal(ctx), "", in.WebhookID, in.DeliveryID)
}

func (s *Server) redeliverAs(ctx context.Context, p app.Principal, org, id string, delivery int64) (*DeliveryOutput, error) {
	d, err := s.svc.Redeliver(ctx, p, org, id, delivery)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &DeliveryOutput{Status: http.StatusAccepted, Body: deliveryOut(d)}, nil
}

func (s *Server) replay(ctx context.Context, in *orgReplayInput) (*ReplayOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	return s.replayAs(ctx, p, in.OrgID, in.WebhookID, in.Body)
}

func (s *Server) myReplay(ctx context.Context, in *myReplayInput) (*ReplayOutput, error) {
	return s.replayAs(ctx, principal(ctx), "", in.WebhookID, in.Body)
}

func (s *Server) replayAs(ctx context.Context, p app.Principal, org, id string, b replayBody) (*ReplayOutput, error) {
	since, err := time.Parse(time.RFC3339Nano, b.Since)
	if err != nil {
		return nil, toAPIError(ctx, s.log, domain.InvalidField("since", "since must be an ISO-8601 date-time, e.g. 2026-11-01T00:00:00Z"))
	}
	n, err := s.svc.Replay(ctx, p, org, id, since)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ReplayOutput{Status: http.StatusAccepted}
	out.Body.Queued, out.Body.Since = n, since.UTC().Format(time.RFC3339Nano)
	return out, nil
}

func (s *Server) rotateMyKey(ctx context.Context, _ *struct{}) (*IssuedKeyOutput, error) {
	// admit (gatePartner) let only a tenant's API key through.
	p := principal(ctx)
	k, err := s.svc.RotateOwnKey(ctx, p, p.KeyID)
	return s.issued(ctx, k, err)
}
