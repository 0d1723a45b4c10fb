package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// Recorder records what deliveries learn about a webhook; *app.Service
// implements it.
type Recorder interface {
	// RecordVerification records a verification answer (errMsg "" for 2xx).
	RecordVerification(ctx context.Context, orgID, id string, urlVersion, code int, errMsg string) error
	// DisableWebhook disables a webhook whose URL answered 410 Gone and
	// drops its queued deliveries except row exceptRow.
	DisableWebhook(ctx context.Context, orgID, id string, code int, reason string, exceptRow int64) error
}

// Defaults of Config.
const (
	DefaultTimeout   = 15 * time.Second
	DefaultHorizon   = 24 * time.Hour
	DefaultRetryBase = 10 * time.Second
	DefaultRetryMax  = time.Hour
	DefaultHold      = time.Minute
	DefaultWorkers   = 32
	DefaultPerTarget = 4
)

// Config tunes the partner deliveries. Zero values take the defaults.
type Config struct {
	// Region and Account fill the envelope's EventBridge fields.
	Region, Account string
	// Safety decides which addresses deliveries may connect to.
	Safety netsafe.Policy
	// TLS, if set, is the client's TLS configuration (tests: a private CA).
	TLS *tls.Config
	// Timeout bounds one request (15 s).
	Timeout time.Duration
	// Horizon is how long a delivery is retried before it fails for good
	// (24 h); RetryBase (10 s) doubles per attempt up to RetryMax (1 h),
	// with jitter.
	Horizon, RetryBase, RetryMax time.Duration
	// Hold is how long a delivery for a webhook that is still pending
	// waits before it looks again (1 min); verification releases it at
	// once.
	Hold time.Duration
	// Workers sends at most this many requests at once on this node (32),
	// PerTarget at most this many to one webhook (4): a slow receiver
	// cannot hold up the others.
	Workers, PerTarget int
	// FanOutBatch is how many queued events one fan-out step takes (500).
	FanOutBatch int
	// Window is how many undone deliveries one webhook may have queued
	// (store.DefaultWebhookWindow); the events after them wait in the
	// outbox until its queue drains (store.FanOutWebhooks).
	Window int
	// ReplayChunk is how many deliveries of a replay are queued at most
	// per transaction (store.DefaultReplayChunk, a window). A replay is
	// paced by Window: its next chunk is queued once the webhook has
	// fewer than half a window undone, and never more than fills it.
	ReplayChunk int
	Now         func() time.Time
}

// Dispatcher delivers partner webhooks: it fans queued events out to the
// tenant's subscriptions, sends them, and verifies new URLs.
type Dispatcher struct {
	st     *store.Store
	rec    Recorder
	cfg    Config
	client *http.Client
	log    *slog.Logger
	parked atomic.Bool // the last fan-out left webhooks parked
	// catchUpDue asks the next fan-out to look at the parked webhooks;
	// catchUpTimer is set while a timer is to set it. lastCatchUp is only
	// used by the fan-out job.
	catchUpDue, catchUpTimer atomic.Bool
	lastCatchUp              time.Time
	// replaying holds the webhooks with an open replay after the last
	// fan-out step (nil: none): a delivery to one that ends may make
	// room for the replay's next chunk.
	replaying atomic.Pointer[map[string]bool]
}

// catchUpDelay is how long after a delivery ends the fan-out looks at the
// parked webhooks' queues and at the open replays.
const catchUpDelay = 50 * time.Millisecond

// New returns a dispatcher; Register adds it to an engine.
func New(st *store.Store, rec Recorder, cfg Config, log *slog.Logger) *Dispatcher {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = DefaultHorizon
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.PerTarget <= 0 {
		cfg.PerTarget = DefaultPerTarget
	}
	if cfg.FanOutBatch <= 0 {
		cfg.FanOutBatch = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.Account == "" {
		cfg.Account = "spkey"
	}
	return &Dispatcher{st: st, rec: rec, cfg: cfg, client: cfg.Safety.Client(cfg.Timeout, cfg.TLS), log: log}
}

// target is a webhook with what sending to it needs.
type target struct {
	hook    tenant.Webhook
	secrets store.WebhookSecrets
}

// load returns webhook id of orgID; ok is false when it is gone.
func (d *Dispatcher) load(ctx context.Context, orgID, id string) (target, bool, error) {
	snap, found, err := d.st.Snapshot(ctx, tenant.AggregateType, orgID)
	if err != nil || !found {
		return target{}, false, err
	}
	var st tenant.State
	if err := json.Unmarshal(snap.State, &st); err != nil {
		return target{}, false, fmt.Errorf("decode tenant %s: %w", orgID, err)
	}
	w, ok := st.Webhook(id)
	if !ok {
		return target{}, false, nil
	}
	ws, _, err := d.st.WebhookSecrets(ctx, id)
	if err != nil {
		return target{}, false, err
	}
	return target{hook: w, secrets: ws}, true, nil
}

// Send delivers one event to one webhook: the envelope, signed, with the
// webhook's outbound authentication. See the README for how answers are
// classified.
func (d *Dispatcher) Send(ctx context.Context, cl store.Claim) outbox.Result {
	t, ok, err := d.load(ctx, cl.OrgID, cl.Target)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: err}
	}
	if !ok {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("webhook deleted")}
	}
	switch t.hook.Status {
	case tenant.StatusDisabled:
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("webhook disabled")}
	case tenant.StatusPending:
		queued, _ := time.Parse(domain.TimeLayout, cl.CreatedAt)
		if !queued.IsZero() && d.cfg.Now().Sub(queued) >= d.cfg.Horizon {
			return outbox.Result{Status: store.StatusFailed, Err: fmt.Errorf("the webhook's URL was not verified within %s", d.cfg.Horizon)}
		}
		return outbox.Result{Status: store.OutcomeDefer, RetryAfter: d.cfg.Hold}
	}
	if cl.AggregateType == store.ShadowUpdateAggregate {
		return d.sendShadow(ctx, t, cl)
	}
	rec, found, err := d.st.Event(ctx, cl.EventSeq)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: err}
	}
	if !found {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("event not found")}
	}
	if !t.hook.Matches(rec.Type) {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("the webhook's event filter no longer matches " + rec.Type)}
	}
	env, err := Build(rec, cl.OrgID, d.cfg.Region, d.cfg.Account)
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: err}
	}
	return d.deliver(ctx, t, cl, env.ID, env)
}

// deliver posts envelope env (its id) of row cl to t; a 410 Gone disables
// the webhook.
func (d *Dispatcher) deliver(ctx context.Context, t target, cl store.Claim, id string, env any) outbox.Result {
	body, err := json.Marshal(env)
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: err}
	}
	res := d.post(ctx, t, id, body)
	if res.StatusCode == http.StatusGone {
		if err := d.rec.DisableWebhook(ctx, cl.OrgID, cl.Target, res.StatusCode, "the URL answered 410 Gone", cl.ID); err != nil {
			d.log.Error("disable webhook after 410", "webhook_id", cl.Target, "err", err)
		}
		res.Err = fmt.Errorf("%w; the webhook is disabled", res.Err)
	}
	return res
}

// VerificationType is the type of the verification POST's body.
const VerificationType = "WebhookVerification"

// Verification is the body of the POST that verifies a webhook's URL. A
// 2xx answer makes the webhook active.
type Verification struct {
	Type      string `json:"type"` // "WebhookVerification"
	ID        string `json:"id"`   // = the webhook-id header
	WebhookID string `json:"webhookId"`
	PartnerID string `json:"partnerId"`
	URL       string `json:"url"`
	Timestamp string `json:"timestamp"`
}

// Verify sends the verification POST of one webhook and records the
// answer. Network errors are retried a few times; any answer is final.
func (d *Dispatcher) Verify(ctx context.Context, cl store.Claim) outbox.Result {
	t, ok, err := d.load(ctx, cl.OrgID, cl.Target)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: err}
	}
	if !ok || t.hook.Status == tenant.StatusDisabled {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("webhook deleted or disabled")}
	}
	w := t.hook
	id := "verify_" + w.ID + "_" + strconv.Itoa(w.URLVersion)
	body, err := json.Marshal(Verification{Type: VerificationType, ID: id, WebhookID: w.ID, PartnerID: cl.OrgID, URL: w.URL,
		Timestamp: d.cfg.Now().UTC().Format(domain.TimeLayout)})
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: err}
	}
	res := d.post(ctx, t, id, body)
	if res.Status == store.OutcomeRetry && res.StatusCode == 0 && cl.Attempts+1 < 3 {
		// No answer at all (connection refused, timeout): try again soon
		// before recording the failure.
		return res
	}
	msg := ""
	if res.Status != store.StatusDelivered {
		msg = res.Err.Error()
	}
	if err := d.rec.RecordVerification(ctx, cl.OrgID, w.ID, w.URLVersion, res.StatusCode, msg); err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: fmt.Errorf("record verification: %w", err)}
	}
	if res.Status != store.StatusDelivered {
		res.Status = store.StatusFailed
	}
	return res
}

// post makes one signed POST to t and classifies the answer: 2xx
// delivered; 408, 429 and 5xx (and no answer) retried, honouring
// Retry-After; anything else (3xx, other 4xx, 410 included) final.
func (d *Dispatcher) post(ctx context.Context, t target, id string, body []byte) outbox.Result {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.hook.URL, bytes.NewReader(body))
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: fmt.Errorf("build request: %w", netsafe.Redact(err))}
	}
	now := d.cfg.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "spkey-webhooks")
	if err := sign(req.Header, id, now, body, t.secrets.Secret, t.secrets.StillSigning(now.UTC().Format(domain.TimeLayout))); err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: err}
	}
	switch t.hook.AuthType {
	case tenant.AuthAPIKeyHeader:
		req.Header.Set(t.hook.AuthHeader, t.secrets.AuthValue)
	case tenant.AuthBearerToken:
		req.Header.Set("Authorization", "Bearer "+t.secrets.AuthValue)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: fmt.Errorf("POST: %w", netsafe.Redact(err))}
	}
	defer resp.Body.Close()
	snippet := netsafe.Snippet(resp.Body)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	res := outbox.Result{StatusCode: code}
	switch {
	case code >= 200 && code < 300:
		res.Status = store.StatusDelivered
		return res
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		res.Status = store.OutcomeRetry
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			res.RetryAfter = netsafe.RetryAfter(resp.Header.Get("Retry-After"), now)
		}
	default:
		res.Status = store.StatusFailed
	}
	res.Err = fmt.Errorf("HTTP %d", code)
	if snippet != "" {
		res.Err = fmt.Errorf("HTTP %d: %s", code, snippet)
	}
	return res
}
