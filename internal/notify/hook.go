package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// DefaultHookTimeout bounds one hook request when HookConfig.Client is nil.
const DefaultHookTimeout = 15 * time.Second

// HookEventRing is the type of the hook payload sent for a ring.
const HookEventRing = "doorbell.ring"

// HookConfig configures the outgoing HTTP hook.
type HookConfig struct {
	// URL (SPKEY_NOTIFY_HOOK_URL) receives the POSTs: https (http when
	// Safety.AllowHTTP), with a host, without user info or fragment.
	URL string
	// Secret (SPKEY_NOTIFY_HOOK_SECRET) signs them (Standard Webhooks). A secret
	// starting with "whsec_" is the base64 of the key; any other secret is
	// the key itself, byte for byte. Empty: requests are not signed (no
	// webhook-signature header) — only for a receiver on a trusted network.
	Secret string
	// Safety is the operator's outbound URL policy (SPKEY_WEBHOOK_ALLOW_HTTP,
	// SPKEY_WEBHOOK_ALLOW_PRIVATE): NewHook checks URL with it and, when
	// Client is nil, every connection is checked by Safety.Client's dialer.
	Safety netsafe.Policy
	// Client sends the requests (nil: Safety.Client with
	// DefaultHookTimeout); a client given here is used as it is, without
	// Safety's check of each connection. A client without a Timeout gets
	// DefaultHookTimeout (15 s). Redirects are never followed, whatever the
	// client's CheckRedirect says.
	Client *http.Client
}

// hookCheckTimeout bounds the name lookup of NewHook's URL check.
const hookCheckTimeout = 10 * time.Second

// HookPayload is the JSON body POSTed to the hook for every ring and
// targeted resident; the field names are a contract with receivers and do
// not change:
//
//	{
//	  "type": "doorbell.ring",
//	  "id": "msg_<ringId>_<userId>",       // = the webhook-id header
//	  "ringId": "<uuid>",
//	  "lockId": 7,
//	  "timestamp": "2026-01-02T15:04:05.000Z", // when the doorbell rang (UTC)
//	  "source": "api" | "visitor-page" | "device" | ...,
//	  "visitorName": "Courier",             // only when given
//	  "message": "Parcel",                  // only when given
//	  "resident": {
//	    "userId": "<uuid>",
//	    "name": "Bob",                      // as the lock lists the resident
//	    "phoneNumber": "+48123456789"       // only when the user has a phone
//	  }
//	}
//
// Headers: Content-Type: application/json, User-Agent: spkey,
// webhook-id (the same on every retry of one delivery), webhook-timestamp
// (Unix seconds of the attempt) and, when a secret is configured,
// webhook-signature: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp
// + "." + body)) as Standard Webhooks specifies. A receiver answering 2xx
// has the delivery; 408, 429 and 5xx (and network errors and timeouts) are
// retried, honouring Retry-After on 429 and 503; any other status, 3xx
// included, fails the delivery for good.
type HookPayload struct {
	Type        string       `json:"type"`
	ID          string       `json:"id"`
	RingID      string       `json:"ringId"`
	LockID      int64        `json:"lockId"`
	Timestamp   string       `json:"timestamp"`
	Source      string       `json:"source"`
	VisitorName string       `json:"visitorName,omitempty"`
	Message     string       `json:"message,omitempty"`
	Resident    HookResident `json:"resident"`
}

// HookResident is the recipient part of HookPayload.
type HookResident struct {
	UserID      string `json:"userId"`
	Name        string `json:"name"`
	PhoneNumber string `json:"phoneNumber,omitempty"`
}

// Hook POSTs each ring to the operator's HTTP endpoint, one request per
// targeted resident (to turn into an SMS, a push message, ...). It
// implements Channel for es.ConsumerDoorbellHook.
type Hook struct {
	url    string
	key    *standardwebhooks.Webhook // nil: unsigned
	client *http.Client
}

// NewHook checks cfg and returns the channel. The URL is checked with
// cfg.Safety, resolving its host name (within 10 s) unless private targets
// are allowed. Errors name the setting at fault (SPKEY_NOTIFY_HOOK_URL,
// SPKEY_NOTIFY_HOOK_SECRET) and never contain the secret; a URL refused by
// the policy matches netsafe.ErrRefused and names the setting that would
// allow it.
func NewHook(cfg HookConfig) (*Hook, error) {
	// A constructor run at start-up, without a context: the lookup gets its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), hookCheckTimeout)
	defer cancel()
	u, err := cfg.Safety.CheckURL(ctx, strings.TrimSpace(cfg.URL))
	if err != nil {
		return nil, fmt.Errorf("SPKEY_NOTIFY_HOOK_URL: %w", err)
	}
	h := &Hook{url: u.String()}
	if cfg.Secret != "" {
		if h.key, err = hookKey(cfg.Secret); err != nil {
			return nil, fmt.Errorf("SPKEY_NOTIFY_HOOK_SECRET: %w", err)
		}
	}
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		c = *cfg.Safety.Client(DefaultHookTimeout, nil)
	}
	if c.Timeout <= 0 {
		// The engine's attempts have no deadline of their own.
		c.Timeout = DefaultHookTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h.client = &c
	return h, nil
}

// Consumer implements Channel.
func (h *Hook) Consumer() string { return es.ConsumerDoorbellHook }

// Name implements Channel.
func (h *Hook) Name() string { return user.ChannelHook }

// WebhookID returns the webhook-id of ring ringID's delivery to userID:
// the same on every attempt, so a receiver can drop duplicates.
func WebhookID(ringID, userID string) string { return "msg_" + ringID + "_" + userID }

// Sign returns the Standard Webhooks signature header value of body, or
// "" when the hook has no secret.
func (h *Hook) Sign(id string, ts int64, body []byte) string {
	if h.key == nil {
		return ""
	}
	sig, _ := h.key.Sign(id, time.Unix(ts, 0), body) // the library's Sign fails never
	return sig
}

// hookKey reads HookConfig.Secret. The standard-webhooks library reads
// every secret as base64 (its "whsec_" prefix or not) and takes "whsec_"
// alone as an empty key, so the rule for a secret without the prefix (its
// bytes are the key) and the refusal of an empty key are ours.
func hookKey(secret string) (*standardwebhooks.Webhook, error) {
	if !strings.HasPrefix(secret, "whsec_") {
		return standardwebhooks.NewWebhookRaw([]byte(secret))
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil || secret == "whsec_" {
		// The refusal in our words, as before: the library's names a byte offset.
		return nil, errors.New(`after "whsec_" must come the key in standard base64`)
	}
	return wh, nil
}

// Deliver makes one POST (see HookPayload for the contract and the
// classification of answers).
func (h *Hook) Deliver(ctx context.Context, d Delivery) outbox.Result {
	if d.Event.Type != doorbell.TypeDoorbellRang {
		return outbox.Result{Status: store.StatusSkipped, Err: fmt.Errorf("the hook is called for rings only, not %s", d.Event.Type)}
	}
	r := d.Ring
	id := WebhookID(r.RingID, d.Claim.Target)
	body, err := json.Marshal(HookPayload{Type: HookEventRing, ID: id, RingID: r.RingID, LockID: r.LockID, Timestamp: r.RangAt, Source: r.Source,
		VisitorName: r.VisitorName, Message: r.Message,
		Resident: HookResident{UserID: d.Claim.Target, Name: d.Resident.Name, PhoneNumber: d.User.Phone}})
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: fmt.Errorf("encode hook payload: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: fmt.Errorf("build hook request: %w", err)}
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "spkey")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if sig := h.Sign(id, ts, body); sig != "" {
		req.Header.Set("webhook-signature", sig)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: fmt.Errorf("POST hook: %w", netsafe.Redact(err))}
	}
	defer resp.Body.Close()
	snippet := netsafe.Snippet(resp.Body)
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	res := outbox.Result{StatusCode: code}
	switch {
	case code >= 200 && code < 300:
		res.Status = store.StatusDelivered
		return res
	case code >= 300 && code < 400:
		res.Status = store.StatusFailed
		res.Err = fmt.Errorf("hook answered %s redirecting to %q: redirects are not followed; configure the final URL", resp.Status, resp.Header.Get("Location"))
		return res
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		res.Status = store.OutcomeRetry
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			res.RetryAfter = netsafe.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	default:
		res.Status = store.StatusFailed
	}
	res.Err = fmt.Errorf("hook answered %s", resp.Status)
	if snippet != "" {
		res.Err = fmt.Errorf("hook answered %s: %s", resp.Status, snippet)
	}
	return res
}
