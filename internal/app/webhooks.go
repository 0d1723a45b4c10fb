package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// SecretOverlap is how long a rotated-out webhook secret keeps signing
// beside the new one.
const SecretOverlap = 24 * time.Hour

// WebhookInput is a webhook's settings as an admin gives them. Empty
// fields (nil Events) keep their value on update.
type WebhookInput struct {
	URL        string
	Events     []string
	Secret     string // whsec_...; generated when empty on create
	AuthType   string // none | apiKeyHeader | bearerToken
	AuthHeader string // the header name for apiKeyHeader
	AuthValue  string // the header value or bearer token
	// RotateSecret generates a new secret on update (when Secret is empty).
	RotateSecret bool
}

// WebhookView is one webhook as lists show it; never its secrets.
type WebhookView struct {
	ID, OrgID, URL                   string
	Events                           []string
	Status                           string // pending | active | disabled
	AuthType, AuthHeader             string
	CreatedAt, UpdatedAt, VerifiedAt string
	LastError, LastErrorAt           string
	LastStatusCode                   int
	SecretRotatedAt, DisabledAt      string
	// QueueFullSince is when its queue of undone deliveries filled up
	// (store.FanOutWebhooks parked it), "" when it is not full.
	QueueFullSince string
}

// withQueues sets QueueFullSince on views.
func (s *Service) withQueues(ctx context.Context, views []WebhookView) error {
	ids := make([]string, len(views))
	for i, v := range views {
		ids[i] = v.ID
	}
	since, err := s.st.ParkedSince(ctx, ids)
	if err != nil {
		return err
	}
	for i := range views {
		views[i].QueueFullSince = since[views[i].ID]
	}
	return nil
}

func viewOf(org string, w tenant.Webhook) WebhookView {
	return WebhookView{ID: w.ID, OrgID: org, URL: w.URL, Events: w.Events, Status: w.Status, AuthType: w.AuthType, AuthHeader: w.AuthHeader,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, VerifiedAt: w.VerifiedAt, LastError: w.LastError, LastErrorAt: w.LastErrorAt,
		LastStatusCode: w.LastStatusCode, SecretRotatedAt: w.SecretRotatedAt, DisabledAt: w.DisabledAt}
}

// webhookOrg returns the org whose webhooks p may manage: an admin names
// it, a partner's is its own (naming another one finds nothing). Without
// an org named (the partner routes) an admin's JWT is refused like any
// user's: the admin routes name the org.
func webhookOrg(p Principal, orgID string) (string, error) {
	switch {
	case p.Admin && orgID != "":
		return orgID, nil
	case p.Kind == TenantCaller && p.OrgID != "":
		if orgID != "" && orgID != p.OrgID {
			return "", domain.Errorf(domain.NotFound, "Tenant not found")
		}
		return p.OrgID, nil
	case p.Kind == Anonymous:
		return "", domain.Errorf(domain.Unauthorized, "Authentication required: send your X-API-Key")
	case p.Admin:
		return "", domain.Errorf(domain.Forbidden, "Admins manage a tenant's webhooks under /tenants/{orgId}/webhooks")
	}
	return "", domain.Errorf(domain.Forbidden, "Only the partner's API key or an admin can manage webhooks")
}

// NewWebhookSecret returns a fresh Standard Webhooks secret: "whsec_" and
// the base64 of 32 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func checkSecret(secret string) error {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) >= 24 && len(k) <= 64 {
			return nil
		}
	}
	return domain.InvalidField("secret", `secret must be "whsec_" followed by the standard base64 of 24 to 64 random bytes; leave it out to have one generated`)
}

func checkAuthValue(typ, value string) error {
	if typ == tenant.AuthNone {
		if value != "" {
			return domain.InvalidField("authValue", "authValue is only for authType apiKeyHeader or bearerToken")
		}
		return nil
	}
	if value == "" || len(value) > 1024 || strings.ContainsFunc(value, unicode.IsControl) {
		return domain.InvalidField("authValue", "authType "+typ+" needs authValue: the token, at most 1024 characters on one line")
	}
	return nil
}

// checkURL applies the operator's outbound safety rules to a webhook URL.
func (s *Service) checkURL(ctx context.Context, raw string) (string, error) {
	if len(raw) > 2048 {
		return "", domain.InvalidField("url", "url must be at most 2048 characters")
	}
	u, err := s.safety.CheckURL(ctx, strings.TrimSpace(raw))
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return u.String(), nil
	case errors.Is(err, netsafe.ErrRefused):
		return "", domain.InvalidField("url", err.Error())
	case errors.As(err, &dnsErr):
		// The resolver's own text names our DNS server's address: the
		// client learns only that the name did not resolve.
		msg := "url host " + dnsErr.Name + " could not be resolved"
		if dnsErr.IsNotFound {
			msg += ": no such host"
		}
		return "", domain.InvalidField("url", msg)
	}
	return "", fmt.Errorf("check webhook url: %w", err)
}

// tenantCommand runs decide on tenant orgID in one transaction and saves
// its events (none: nothing changes); then, in the same transaction, after
// (if set) gets the new state and the stored records for the work that
// goes with them, and may add to the answer, whose event carries payload
// P.
func tenantCommand[P domain.Event](ctx context.Context, s *Service, c Call, orgID string,
	decide func(ctx context.Context, tx *store.Tx, st tenant.State, now string) ([]domain.Event, error),
	after func(ctx context.Context, tx *store.Tx, st tenant.State, recs []es.Record, res *WebhookAnswer[P]) error) (WebhookAnswer[P], error) {
	type answer = WebhookAnswer[P]
	c.Aggregate = "tenant/" + orgID
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		st, snap, err := load(ctx, tx, tenantAgg, orgID)
		if err != nil {
			return answer{}, err
		}
		now := s.stamp()
		evs, err := decide(ctx, tx, st, now)
		if err != nil {
			return answer{}, err
		}
		st, v, ev, recs, err := saveRecs(ctx, tx, tenantAgg, snap, st, evs, now)
		if err != nil {
			return answer{}, err
		}
		res := answer{Answer: Answer[P]{AggregateID: orgID, Version: v, Event: eventOf[P](ev)}}
		if after != nil {
			err = after(ctx, tx, st, recs, &res)
		}
		return res, err
	})
}

// queueVerification queues the verification POST of webhook id, about
// record rec (the event that set its URL).
func (s *Service) queueVerification(ctx context.Context, tx *store.Tx, rec es.Record, id string) error {
	return tx.Enqueue(ctx, es.ConsumerWebhookVerify, rec, id)
}

// CreateWebhook subscribes orgID's URL to its events (admin). The webhook
// starts pending; a verification POST follows. The answer carries the new
// webhook's id and its signing secret.
func (s *Service) CreateWebhook(ctx context.Context, c Call, orgID string, in WebhookInput) (WebhookAnswer[tenant.WebhookCreated], error) {
	if err := requireAdmin(c.P); err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	return s.createWebhook(ctx, c, orgID, in)
}

func (s *Service) createWebhook(ctx context.Context, c Call, orgID string, in WebhookInput) (WebhookAnswer[tenant.WebhookCreated], error) {
	u, err := s.checkURL(ctx, in.URL)
	if err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	evs, err := tenant.NormalizeEvents(in.Events)
	if err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	if in.AuthType == "" {
		in.AuthType = tenant.AuthNone
	}
	if err := tenant.ValidAuth(in.AuthType, in.AuthHeader); err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	if err := checkAuthValue(in.AuthType, in.AuthValue); err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	secret := in.Secret
	if secret == "" {
		secret = NewWebhookSecret()
	} else if err := checkSecret(secret); err != nil {
		return WebhookAnswer[tenant.WebhookCreated]{}, err
	}
	id := s.newUUID()
	return tenantCommand[tenant.WebhookCreated](ctx, s, c, orgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		return tenant.DecideCreateWebhook(st, tenant.CreateWebhook{WebhookID: id, URL: u, Events: evs, AuthType: in.AuthType, AuthHeader: in.AuthHeader, Now: now})
	}, func(ctx context.Context, tx *store.Tx, _ tenant.State, recs []es.Record, res *WebhookAnswer[tenant.WebhookCreated]) error {
		if err := tx.PutWebhookSecrets(ctx, id, store.WebhookSecrets{Secret: secret, AuthValue: in.AuthValue}); err != nil {
			return err
		}
		res.Created, res.WebhookID, res.Secret, res.Status = true, id, secret, tenant.StatusPending
		return s.queueVerification(ctx, tx, recs[0], id)
	})
}

// UpdateWebhook changes a webhook of orgID (admin): URL (back to pending,
// re-verified), events, outbound auth, secret. A new secret (given, or
// generated with RotateSecret) signs beside the old one for SecretOverlap.
func (s *Service) UpdateWebhook(ctx context.Context, c Call, orgID, id string, in WebhookInput) (WebhookAnswer[tenant.WebhookUpdated], error) {
	if err := requireAdmin(c.P); err != nil {
		return WebhookAnswer[tenant.WebhookUpdated]{}, err
	}
	return s.updateWebhook(ctx, c, orgID, id, in)
}

func (s *Service) updateWebhook(ctx context.Context, c Call, orgID, id string, in WebhookInput) (WebhookAnswer[tenant.WebhookUpdated], error) {
	var err error
	u := ""
	if in.URL != "" {
		if u, err = s.checkURL(ctx, in.URL); err != nil {
			return WebhookAnswer[tenant.WebhookUpdated]{}, err
		}
	}
	var evs []string
	if in.Events != nil {
		if len(in.Events) == 0 {
			return WebhookAnswer[tenant.WebhookUpdated]{}, domain.InvalidField("events", `events cannot be empty; use ["*"] for every event`)
		}
		if evs, err = tenant.NormalizeEvents(in.Events); err != nil {
			return WebhookAnswer[tenant.WebhookUpdated]{}, err
		}
	}
	if in.AuthType != "" {
		if err := tenant.ValidAuth(in.AuthType, in.AuthHeader); err != nil {
			return WebhookAnswer[tenant.WebhookUpdated]{}, err
		}
		if err := checkAuthValue(in.AuthType, in.AuthValue); err != nil {
			return WebhookAnswer[tenant.WebhookUpdated]{}, err
		}
	} else if in.AuthHeader != "" || in.AuthValue != "" {
		return WebhookAnswer[tenant.WebhookUpdated]{}, domain.InvalidField("authType", "authHeader and authValue change together with authType")
	}
	secret := in.Secret
	if secret != "" {
		if err := checkSecret(secret); err != nil {
			return WebhookAnswer[tenant.WebhookUpdated]{}, err
		}
	} else if in.RotateSecret {
		secret = NewWebhookSecret()
	}
	var ws store.WebhookSecrets
	return tenantCommand[tenant.WebhookUpdated](ctx, s, c, orgID, func(ctx context.Context, tx *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		var err error
		if ws, _, err = tx.WebhookSecrets(ctx, id); err != nil {
			return nil, err
		}
		if secret != "" && secret == ws.Secret {
			// The secret it has already: nothing rotates.
			secret = ""
			if _, ok := st.Webhook(id); ok && u == "" && evs == nil && in.AuthType == "" {
				return nil, nil
			}
		}
		return tenant.DecideUpdateWebhook(st, tenant.UpdateWebhook{WebhookID: id, URL: u, Events: evs, AuthType: in.AuthType,
			AuthHeader: in.AuthHeader, RotateSecret: secret != "", Now: now})
	}, func(ctx context.Context, tx *store.Tx, st tenant.State, recs []es.Record, res *WebhookAnswer[tenant.WebhookUpdated]) error {
		w, _ := st.Webhook(id)
		res.WebhookID, res.Status, res.Secret = id, w.Status, secret
		if secret != "" || in.AuthType != "" {
			if secret != "" {
				until := s.now().Add(SecretOverlap).UTC().Format(domain.TimeLayout)
				ws.Previous, ws.PreviousUntil, ws.Secret = ws.Secret, until, secret
			}
			if in.AuthType != "" {
				ws.AuthValue = in.AuthValue
			}
			if err := tx.PutWebhookSecrets(ctx, id, ws); err != nil {
				return err
			}
		}
		if u == "" {
			return nil
		}
		return s.queueVerification(ctx, tx, recs[0], id)
	})
}

// PatchWebhookURL is the partner's self-service URL change (their own API
// key): the webhook goes back to pending until its new URL answers the
// verification POST with 2xx.
func (s *Service) PatchWebhookURL(ctx context.Context, c Call, id, rawURL string) (WebhookAnswer[tenant.WebhookUpdated], error) {
	w, err := s.ownWebhook(ctx, c.P, "", id)
	if err != nil {
		return WebhookAnswer[tenant.WebhookUpdated]{}, err
	}
	if strings.TrimSpace(rawURL) == "" {
		return WebhookAnswer[tenant.WebhookUpdated]{}, domain.InvalidField("url", "url is required")
	}
	return s.updateWebhook(ctx, c, w.OrgID, id, WebhookInput{URL: rawURL})
}

// DeleteWebhook removes a webhook of orgID (admin); its queued deliveries
// are dropped and its secrets forgotten.
func (s *Service) DeleteWebhook(ctx context.Context, c Call, orgID, id string) (WebhookAnswer[tenant.WebhookDeleted], error) {
	if err := requireAdmin(c.P); err != nil {
		return WebhookAnswer[tenant.WebhookDeleted]{}, err
	}
	return tenantCommand[tenant.WebhookDeleted](ctx, s, c, orgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		return tenant.DecideDeleteWebhook(st, id, now)
	}, func(ctx context.Context, tx *store.Tx, _ tenant.State, _ []es.Record, res *WebhookAnswer[tenant.WebhookDeleted]) error {
		res.WebhookID = id
		if err := tx.DeleteWebhookSecrets(ctx, id); err != nil {
			return err
		}
		_, err := tx.DropWebhookRows(ctx, id, "webhook deleted", s.now(), 0)
		return err
	})
}

// VerifyWebhook sends the verification POST again (a partner fixed their
// endpoint). It answers at once; the outcome shows in the webhook's
// status and last error.
func (s *Service) VerifyWebhook(ctx context.Context, p Principal, orgID, id string) (WebhookView, error) {
	w, err := s.ownWebhook(ctx, p, orgID, id)
	if err != nil {
		return WebhookView{}, err
	}
	if w.Status == tenant.StatusDisabled {
		return WebhookView{}, domain.Errorf(domain.Conflict, "The webhook is disabled (its URL answered 410 Gone); set its URL again to re-enable it")
	}
	err = s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		return tx.EnqueueFor(ctx, es.ConsumerWebhookVerify, tenant.AggregateType, w.OrgID, w.OrgID, id, 0, s.stamp())
	})
	return w, err
}

// ownWebhook returns webhook id if p may see it; NotFound otherwise, the
// same for another tenant's webhook as for none.
func (s *Service) ownWebhook(ctx context.Context, p Principal, orgID, id string) (WebhookView, error) {
	org, err := webhookOrg(p, orgID)
	if err != nil {
		return WebhookView{}, err
	}
	st, _, _, err := read(ctx, s.st, tenantAgg, org)
	if err != nil {
		return WebhookView{}, err
	}
	w, ok := st.Webhook(id)
	if !ok {
		return WebhookView{}, domain.Errorf(domain.NotFound, "Webhook not found")
	}
	v := []WebhookView{viewOf(org, w)}
	if err := s.withQueues(ctx, v); err != nil {
		return WebhookView{}, err
	}
	return v[0], nil
}

// Webhook returns one webhook of orgID ("" for a partner's own).
func (s *Service) Webhook(ctx context.Context, p Principal, orgID, id string) (WebhookView, error) {
	return s.ownWebhook(ctx, p, orgID, id)
}

// Webhooks lists orgID's webhooks ("" for a partner's own), oldest first,
// with the total before paging.
func (s *Service) Webhooks(ctx context.Context, p Principal, orgID string, limit, offset int) ([]WebhookView, int, error) {
	org, err := webhookOrg(p, orgID)
	if err != nil {
		return nil, 0, err
	}
	st, _, found, err := read(ctx, s.st, tenantAgg, org)
	if err != nil {
		return nil, 0, err
	}
	if !found && p.Admin {
		return nil, 0, domain.Errorf(domain.NotFound, "Tenant not registered")
	}
	all := st.Webhooks
	total := len(all)
	offset = min(max(offset, 0), total)
	end := total
	if limit > 0 {
		end = min(offset+limit, total)
	}
	out := make([]WebhookView, 0, end-offset)
	for _, w := range all[offset:end] {
		out = append(out, viewOf(org, w))
	}
	if err := s.withQueues(ctx, out); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// WebhookSecret returns the secret that signs webhook id's requests and,
// during the overlap after a rotation, the previous one with its end.
func (s *Service) WebhookSecret(ctx context.Context, p Principal, orgID, id string) (secret, previous, previousUntil string, err error) {
	if _, err := s.ownWebhook(ctx, p, orgID, id); err != nil {
		return "", "", "", err
	}
	ws, _, err := s.st.WebhookSecrets(ctx, id)
	if err != nil {
		return "", "", "", err
	}
	if previous = ws.StillSigning(s.stamp()); previous == "" {
		return ws.Secret, "", "", nil
	}
	return ws.Secret, previous, ws.PreviousUntil, nil
}

// PortalSetWebhookURL is the portal's webhook form: it creates the
// partner's first webhook (every event, no outbound auth) or changes the
// URL of its first one. Either way the webhook is pending until verified.
func (s *Service) PortalSetWebhookURL(ctx context.Context, p Principal, rawURL string) (WebhookView, error) {
	if err := requirePortal(p); err != nil {
		return WebhookView{}, err
	}
	hooks, _, err := s.Webhooks(ctx, p, "", 1, 0)
	if err != nil {
		return WebhookView{}, err
	}
	var id string
	if len(hooks) == 0 {
		res, err := s.createWebhook(ctx, Call{P: p}, p.OrgID, WebhookInput{URL: rawURL, Events: []string{tenant.AllEvents}})
		if err != nil {
			return WebhookView{}, err
		}
		id = res.WebhookID
	} else {
		res, err := s.PatchWebhookURL(ctx, Call{P: p}, hooks[0].ID, rawURL)
		if err != nil {
			return WebhookView{}, err
		}
		id = res.WebhookID
	}
	return s.ownWebhook(ctx, p, "", id)
}

// AttemptView is one recorded delivery attempt.
type AttemptView struct {
	At         string
	StatusCode int
	LatencyMS  int64
	Error      string
	Outcome    string // delivered | retry | failed | skipped
	Node       string
}

// DeliveryView is one delivery of an event to a webhook with its attempts.
type DeliveryView struct {
	ID                                                 int64
	EventID, EventType, AggregateType, AggregateID     string
	Version                                            int64
	Status                                             string // pending | delivered | failed | skipped
	EventTime, CreatedAt, LastAttemptAt, NextAttemptAt string
	LastError                                          string
	LastStatusCode                                     int
	Attempts                                           []AttemptView
}

func deliveryView(d store.DeliveryRow, atts []store.Attempt) DeliveryView {
	v := DeliveryView{ID: d.ID, EventType: d.EventType, AggregateType: d.AggregateType, AggregateID: d.AggID, Version: d.Version,
		Status: d.Status, EventTime: d.EventTimestamp, CreatedAt: d.CreatedAt, LastError: d.LastError, Attempts: make([]AttemptView, 0, len(atts))}
	v.EventID = webhook.EventID(es.Record{AggregateType: d.AggregateType, AggregateID: d.AggID, Version: d.Version})
	if d.Status == store.StatusPending {
		v.NextAttemptAt = d.NextAttemptAt
	}
	for _, a := range atts {
		v.Attempts = append(v.Attempts, AttemptView{At: a.At, StatusCode: a.StatusCode, LatencyMS: a.LatencyMS, Error: a.Error, Outcome: a.Outcome, Node: a.Node})
		v.LastAttemptAt, v.LastStatusCode = a.At, a.StatusCode
	}
	return v
}

// MaxDeliveriesPage bounds one page of the delivery log.
const MaxDeliveriesPage = 100

// Deliveries returns webhook id's delivery log, newest first: at most
// limit deliveries older than the delivery before (0: from the newest),
// optionally only those with status, and the cursor of the next page (0
// when none).
func (s *Service) Deliveries(ctx context.Context, p Principal, orgID, id string, before int64, limit int) ([]DeliveryView, int64, error) {
	return s.DeliveriesWith(ctx, p, orgID, id, before, limit, "")
}

// DeliveriesWith is Deliveries filtered by status ("" for all).
func (s *Service) DeliveriesWith(ctx context.Context, p Principal, orgID, id string, before int64, limit int, status string) ([]DeliveryView, int64, error) {
	if _, err := s.ownWebhook(ctx, p, orgID, id); err != nil {
		return nil, 0, err
	}
	if status != "" && !slices.Contains([]string{store.StatusPending, store.StatusDelivered, store.StatusFailed, store.StatusSkipped}, status) {
		return nil, 0, domain.InvalidField("status", "status must be pending, delivered, failed or skipped")
	}
	if limit <= 0 || limit > MaxDeliveriesPage {
		limit = 20
	}
	rows, err := s.st.WebhookDeliveries(ctx, id, before, limit+1, status)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].ID
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	atts, err := s.st.AttemptsOf(ctx, ids)
	if err != nil {
		return nil, 0, err
	}
	out := make([]DeliveryView, len(rows))
	for i, r := range rows {
		out[i] = deliveryView(r, atts[r.ID])
	}
	return out, next, nil
}

// DefaultRedeliveriesPerHour is how many redeliveries one tenant may ask
// for per hour (Options.RedeliveriesPerHour) unless told otherwise.
const DefaultRedeliveriesPerHour = 100

// Redeliver queues delivery deliveryID's event to the webhook again, as a
// new delivery, and returns it. A redelivery while an earlier redelivery
// of the same event to the webhook is undone is a conflict; a tenant asks
// for at most RedeliveriesPerHour redeliveries per hour (a
// TooMany refusal with its RetryAfter beyond).
func (s *Service) Redeliver(ctx context.Context, p Principal, orgID, id string, deliveryID int64) (DeliveryView, error) {
	w, err := s.ownWebhook(ctx, p, orgID, id)
	if err != nil {
		return DeliveryView{}, err
	}
	d, found, err := s.st.Delivery(ctx, deliveryID)
	if err != nil {
		return DeliveryView{}, err
	}
	if !found || d.Target != w.ID {
		return DeliveryView{}, domain.Errorf(domain.NotFound, "Delivery not found")
	}
	if w.Status == tenant.StatusDisabled {
		return DeliveryView{}, domain.Errorf(domain.Conflict, "The webhook is disabled (its URL answered 410 Gone); set its URL again to re-enable it")
	}
	now := s.now()
	var nid int64
	err = s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		nid, err = tx.Redeliver(ctx, d, now, s.redeliveriesPerHour)
		tx.Wake(es.ConsumerWebhookSend)
		return err
	})
	if errors.Is(err, store.ErrRedeliveryPending) {
		return DeliveryView{}, domain.Errorf(domain.Conflict, "A redelivery of this event to this webhook is still pending: wait until it is done (see the delivery log), then redeliver again")
	}
	if err != nil {
		return DeliveryView{}, rateLimited(err, now, "redeliveries", s.redeliveriesPerHour)
	}
	// The answer is the delivery as queued: read back after the commit it
	// may already be sent, its status ahead of its (unread) attempts.
	nd := d
	nd.ID, nd.Status, nd.CreatedAt, nd.NextAttemptAt, nd.DoneAt, nd.LastError, nd.Attempts = nid, store.StatusPending, now.UTC().Format(domain.TimeLayout), "", "", "", 0
	return deliveryView(nd, nil), nil
}

// MaxReplay bounds the deliveries one replay queues.
const MaxReplay = 100000

// DefaultReplaysPerHour is how many replays one tenant may start per hour
// (Options.ReplaysPerHour) unless told otherwise.
const DefaultReplaysPerHour = 10

// rateLimited turns a *store.RateLimitedError into the TooMany refusal
// of a tenant that made perHour requests of what in the last hour; other
// errors are returned as they are.
func rateLimited(err error, now time.Time, what string, perHour int) error {
	var limited *store.RateLimitedError
	if !errors.As(err, &limited) {
		return err
	}
	wait := max(limited.RetryAt.Sub(now), time.Second)
	return &domain.Error{Code: domain.TooMany, RetryAfter: wait,
		Message: fmt.Sprintf("At most %d %s per tenant per hour: try again in %d s", perHour, what, int64((wait+time.Second-1)/time.Second))}
}

// Replay queues, for webhook id, every event of its tenant since since
// that its filter matches, in order. It returns how many it will queue:
// they are queued after the answer, in chunks (store.ReplayStep), and an
// accepted replay completes even across a restart. A replay while an
// earlier one of the webhook still has undone rows is a conflict; a
// tenant starts at most ReplaysPerHour replays per hour (a
// TooMany refusal with its RetryAfter beyond).
func (s *Service) Replay(ctx context.Context, p Principal, orgID, id string, since time.Time) (int64, error) {
	w, err := s.ownWebhook(ctx, p, orgID, id)
	if err != nil {
		return 0, err
	}
	if w.Status == tenant.StatusDisabled {
		return 0, domain.Errorf(domain.Conflict, "The webhook is disabled (its URL answered 410 Gone); set its URL again to re-enable it")
	}
	now := s.now()
	if since.After(now) {
		return 0, domain.InvalidField("since", "since must not be in the future")
	}
	var n int64
	err = s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		n, err = tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: w.ID, OrgID: w.OrgID, Events: w.Events}, Since: since, Now: now,
			Max: MaxReplay, PerWindow: s.replaysPerHour})
		if n == MaxReplay+1 {
			return domain.Errorf(domain.Invalid, "More than %d events since %s: replay a later start, several times", MaxReplay, since.UTC().Format(time.RFC3339))
		}
		tx.Wake(es.ConsumerWebhooks)
		return err
	})
	if errors.Is(err, store.ErrReplayRunning) {
		return 0, domain.Errorf(domain.Conflict, "A replay of this webhook is still running: wait until its deliveries are done (see the delivery log), then replay again")
	}
	return n, rateLimited(err, now, "replays", s.replaysPerHour)
}

// RecordVerification records the outcome of a verification POST to
// webhook id of orgID for its URL number urlVersion (the dispatcher calls
// it). A 2xx (errMsg "") makes the webhook active and lets its held
// deliveries go.
func (s *Service) RecordVerification(ctx context.Context, orgID, id string, urlVersion, code int, errMsg string) error {
	_, err := tenantCommand[tenant.WebhookVerified](ctx, s, Call{}, orgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		return tenant.DecideVerification(st, tenant.Verification{WebhookID: id, URLVersion: urlVersion, StatusCode: code, Error: errMsg, Now: now}), nil
	}, func(ctx context.Context, tx *store.Tx, _ tenant.State, recs []es.Record, _ *WebhookAnswer[tenant.WebhookVerified]) error {
		if len(recs) == 0 || errMsg != "" {
			return nil
		}
		tx.Wake(es.ConsumerWebhookSend)
		return tx.ReleaseWebhookRows(ctx, id)
	})
	return err
}

// DisableWebhook disables webhook id of orgID after its URL answered 410
// Gone (the dispatcher calls it): nothing more is queued for it and what
// was queued is dropped.
func (s *Service) DisableWebhook(ctx context.Context, orgID, id string, code int, reason string, exceptRow int64) error {
	_, err := tenantCommand[tenant.WebhookDisabled](ctx, s, Call{}, orgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		return tenant.DecideDisable(st, id, code, reason, now), nil
	}, func(ctx context.Context, tx *store.Tx, _ tenant.State, recs []es.Record, _ *WebhookAnswer[tenant.WebhookDisabled]) error {
		if len(recs) == 0 {
			return nil
		}
		_, err := tx.DropWebhookRows(ctx, id, "webhook disabled: "+reason, s.now(), exceptRow)
		return err
	})
	return err
}
