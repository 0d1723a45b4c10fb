package tenant

import (
	"regexp"
	"slices"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Webhook event type names. They are stored forever; never rename one.
const (
	TypeWebhookCreated            = "WebhookCreated"
	TypeWebhookUpdated            = "WebhookUpdated"
	TypeWebhookDeleted            = "WebhookDeleted"
	TypeWebhookVerified           = "WebhookVerified"
	TypeWebhookVerificationFailed = "WebhookVerificationFailed"
	TypeWebhookDisabled           = "WebhookDisabled"
)

// Webhook statuses.
const (
	StatusPending  = "pending"  // waiting for a 2xx to the verification POST; deliveries are held
	StatusActive   = "active"   // verified: deliveries flow
	StatusDisabled = "disabled" // the receiver answered 410 Gone; nothing is queued for it
)

// Outbound authentication of a webhook's requests (upstream's connection
// types).
const (
	AuthNone         = "none"
	AuthAPIKeyHeader = "apiKeyHeader"
	AuthBearerToken  = "bearerToken"
)

// AllEvents is the event filter that matches every event.
const AllEvents = "*"

// Webhook is one subscription of the tenant. Its secrets (signing secret,
// outbound token) are never part of the state or the events.
type Webhook struct {
	ID         string   `json:"id"`
	URL        string   `json:"url"`
	Events     []string `json:"events"`
	AuthType   string   `json:"authType"`
	AuthHeader string   `json:"authHeader,omitempty"`
	Status     string   `json:"status"`
	// URLVersion counts URL changes: a verification answer counts only for
	// the URL it was sent to.
	URLVersion      int    `json:"urlVersion"`
	CreatedAt       string `json:"createdAt"`
	UpdatedAt       string `json:"updatedAt"`
	VerifiedAt      string `json:"verifiedAt,omitempty"`
	LastError       string `json:"lastError,omitempty"`
	LastStatusCode  int    `json:"lastStatusCode,omitempty"`
	LastErrorAt     string `json:"lastErrorAt,omitempty"`
	SecretRotatedAt string `json:"secretRotatedAt,omitempty"`
	DisabledAt      string `json:"disabledAt,omitempty"`
}

// Matches reports whether the webhook's filter lets events of type typ
// through.
func (w Webhook) Matches(typ string) bool { return FilterMatches(w.Events, typ) }

// FilterMatches reports whether the event filter events (["*"] or event
// types) lets events of type typ through.
func FilterMatches(events []string, typ string) bool {
	return slices.Contains(events, AllEvents) || slices.Contains(events, typ)
}

// Webhook returns the tenant's webhook id.
func (s State) Webhook(id string) (Webhook, bool) {
	for _, w := range s.Webhooks {
		if w.ID == id {
			return w, true
		}
	}
	return Webhook{}, false
}

// WebhookCreated is recorded when a subscription is created (pending until
// verified).
type WebhookCreated struct {
	OrgID      string   `json:"orgId"`
	WebhookID  string   `json:"webhookId"`
	URL        string   `json:"url"`
	Events     []string `json:"events"`
	AuthType   string   `json:"authType"`
	AuthHeader string   `json:"authHeader,omitempty"`
	CreatedAt  string   `json:"createdAt"`
}

// WebhookUpdated is recorded when a subscription changes. Absent fields did
// not change; a new URL sends the webhook back to pending.
type WebhookUpdated struct {
	OrgID         string   `json:"orgId"`
	WebhookID     string   `json:"webhookId"`
	URL           string   `json:"url,omitempty"`
	Events        []string `json:"events,omitempty"`
	AuthType      string   `json:"authType,omitempty"`
	AuthHeader    string   `json:"authHeader,omitempty"`
	SecretRotated bool     `json:"secretRotated,omitempty"`
	UpdatedAt     string   `json:"updatedAt"`
}

// WebhookDeleted is recorded when a subscription is deleted; its queued
// deliveries are dropped.
type WebhookDeleted struct {
	OrgID     string `json:"orgId"`
	WebhookID string `json:"webhookId"`
	DeletedAt string `json:"deletedAt"`
}

// WebhookVerified is recorded when the URL answered the verification POST
// with 2xx.
type WebhookVerified struct {
	OrgID      string `json:"orgId"`
	WebhookID  string `json:"webhookId"`
	URLVersion int    `json:"urlVersion"`
	StatusCode int    `json:"statusCode"`
	VerifiedAt string `json:"verifiedAt"`
}

// WebhookVerificationFailed is recorded when the verification POST got
// anything but 2xx; the webhook stays pending.
type WebhookVerificationFailed struct {
	OrgID      string `json:"orgId"`
	WebhookID  string `json:"webhookId"`
	URLVersion int    `json:"urlVersion"`
	StatusCode int    `json:"statusCode,omitempty"`
	Error      string `json:"error"`
	FailedAt   string `json:"failedAt"`
}

// WebhookDisabled is recorded when a delivery got 410 Gone.
type WebhookDisabled struct {
	OrgID      string `json:"orgId"`
	WebhookID  string `json:"webhookId"`
	StatusCode int    `json:"statusCode"`
	Reason     string `json:"reason"`
	DisabledAt string `json:"disabledAt"`
}

// applyWebhook folds the webhook events; ok is false for other events.
func applyWebhook(s State, e domain.Event) (State, bool) {
	edit := func(id string, f func(*Webhook)) State {
		hooks := append([]Webhook{}, s.Webhooks...)
		for i := range hooks {
			if hooks[i].ID == id {
				f(&hooks[i])
			}
		}
		s.Webhooks = hooks
		return s
	}
	switch v := e.(type) {
	case WebhookCreated:
		s.Webhooks = append(append([]Webhook{}, s.Webhooks...), Webhook{ID: v.WebhookID, URL: v.URL, Events: v.Events, AuthType: v.AuthType,
			AuthHeader: v.AuthHeader, Status: StatusPending, URLVersion: 1, CreatedAt: v.CreatedAt, UpdatedAt: v.CreatedAt})
	case WebhookUpdated:
		s = edit(v.WebhookID, func(w *Webhook) {
			if v.URL != "" {
				w.URL, w.Status, w.URLVersion, w.VerifiedAt, w.DisabledAt = v.URL, StatusPending, w.URLVersion+1, "", ""
				w.LastError, w.LastStatusCode, w.LastErrorAt = "", 0, ""
			}
			if v.Events != nil {
				w.Events = v.Events
			}
			if v.AuthType != "" {
				w.AuthType, w.AuthHeader = v.AuthType, v.AuthHeader
			}
			if v.SecretRotated {
				w.SecretRotatedAt = v.UpdatedAt
			}
			w.UpdatedAt = v.UpdatedAt
		})
	case WebhookDeleted:
		hooks := make([]Webhook, 0, len(s.Webhooks))
		for _, w := range s.Webhooks {
			if w.ID != v.WebhookID {
				hooks = append(hooks, w)
			}
		}
		s.Webhooks = hooks
	case WebhookVerified:
		s = edit(v.WebhookID, func(w *Webhook) {
			w.Status, w.VerifiedAt, w.LastError, w.LastStatusCode, w.LastErrorAt = StatusActive, v.VerifiedAt, "", 0, ""
		})
	case WebhookVerificationFailed:
		s = edit(v.WebhookID, func(w *Webhook) {
			w.LastError, w.LastStatusCode, w.LastErrorAt = v.Error, v.StatusCode, v.FailedAt
		})
	case WebhookDisabled:
		s = edit(v.WebhookID, func(w *Webhook) {
			w.Status, w.DisabledAt, w.LastError, w.LastStatusCode, w.LastErrorAt = StatusDisabled, v.DisabledAt, v.Reason, v.StatusCode, v.DisabledAt
		})
	default:
		return s, false
	}
	return s, true
}

var eventNameRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{1,99}$`)

// MaxWebhooks bounds the subscriptions of one tenant.
const MaxWebhooks = 20

// NormalizeEvents checks an event filter: ["*"] alone, or up to 100
// PascalCase event names (or "Shadow Update"); nil or empty means ["*"].
// Duplicates are dropped, order is kept.
func NormalizeEvents(evs []string) ([]string, error) {
	if len(evs) == 0 {
		return []string{AllEvents}, nil
	}
	if len(evs) > 100 {
		return nil, domain.InvalidField("events", "events lists at most 100 event types")
	}
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		switch {
		case e == AllEvents:
			if len(evs) != 1 {
				return nil, domain.InvalidField("events", `"*" matches every event and must be the only entry`)
			}
		case e == "Shadow Update", eventNameRE.MatchString(e):
		default:
			return nil, domain.InvalidField("events", "events must be [\"*\"] or PascalCase event types such as LockCreated; got "+quote(e))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

func quote(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return `"` + s + `"`
}

// ValidAuth checks an outbound authentication setting.
func ValidAuth(typ, header string) error {
	switch typ {
	case AuthNone, AuthBearerToken:
		if header != "" {
			return domain.InvalidField("authHeader", "authHeader is only for authType apiKeyHeader")
		}
	case AuthAPIKeyHeader:
		if !headerRE.MatchString(header) {
			return domain.InvalidField("authHeader", "authType apiKeyHeader needs authHeader, an HTTP header name such as X-Api-Key")
		}
		switch http := canonical(header); http {
		case "Authorization", "Content-Type", "Content-Length", "Host", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "User-Agent":
			return domain.InvalidField("authHeader", "authHeader cannot be "+http)
		}
	default:
		return domain.InvalidField("authType", "authType must be none, apiKeyHeader or bearerToken")
	}
	return nil
}

var headerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func canonical(h string) string {
	b := []byte(h)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		} else if !up && c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
		up = c == '-'
	}
	return string(b)
}

// CreateWebhook asks for a new subscription; the caller checked URL,
// events and auth.
type CreateWebhook struct {
	WebhookID, URL, AuthType, AuthHeader, Now string
	Events                                    []string
}

// DecideCreateWebhook returns WebhookCreated. It returns NotFound for an
// unregistered tenant and Conflict past MaxWebhooks.
func DecideCreateWebhook(s State, c CreateWebhook) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "Tenant not registered")
	}
	if len(s.Webhooks) >= MaxWebhooks {
		return nil, domain.Errorf(domain.Conflict, "A tenant can have at most %d webhooks", MaxWebhooks)
	}
	return []domain.Event{WebhookCreated{OrgID: s.OrgID, WebhookID: c.WebhookID, URL: c.URL, Events: c.Events, AuthType: c.AuthType,
		AuthHeader: c.AuthHeader, CreatedAt: c.Now}}, nil
}

// UpdateWebhook asks for a change; empty fields (nil Events) stay.
type UpdateWebhook struct {
	WebhookID, URL, AuthType, AuthHeader, Now string
	Events                                    []string
	RotateSecret                              bool
}

// DecideUpdateWebhook returns WebhookUpdated with what really changes (a
// URL set to itself still re-verifies). It returns NotFound for an unknown
// webhook and Unprocessable when nothing is asked.
func DecideUpdateWebhook(s State, c UpdateWebhook) ([]domain.Event, error) {
	w, ok := s.Webhook(c.WebhookID)
	if !ok {
		return nil, domain.Errorf(domain.NotFound, "Webhook not found")
	}
	if c.URL == "" && c.Events == nil && c.AuthType == "" && !c.RotateSecret {
		return nil, domain.Errorf(domain.Invalid, "Give at least one of url, events, secret, authType")
	}
	e := WebhookUpdated{OrgID: s.OrgID, WebhookID: w.ID, URL: c.URL, Events: c.Events, AuthType: c.AuthType, AuthHeader: c.AuthHeader,
		SecretRotated: c.RotateSecret, UpdatedAt: c.Now}
	return []domain.Event{e}, nil
}

// DecideDeleteWebhook returns WebhookDeleted, or NotFound.
func DecideDeleteWebhook(s State, id, now string) ([]domain.Event, error) {
	if _, ok := s.Webhook(id); !ok {
		return nil, domain.Errorf(domain.NotFound, "Webhook not found")
	}
	return []domain.Event{WebhookDeleted{OrgID: s.OrgID, WebhookID: id, DeletedAt: now}}, nil
}

// Verification is the outcome of one verification POST.
type Verification struct {
	WebhookID  string
	URLVersion int
	StatusCode int
	Error      string // "" for a 2xx
	Now        string
}

// DecideVerification records the outcome if it is about the webhook's
// current URL and still news; otherwise it returns no events (a late
// answer for an old URL, a deleted webhook, a repeat).
func DecideVerification(s State, v Verification) []domain.Event {
	w, ok := s.Webhook(v.WebhookID)
	if !ok || w.URLVersion != v.URLVersion || w.Status == StatusDisabled {
		return nil
	}
	if v.Error == "" {
		if w.Status == StatusActive {
			return nil
		}
		return []domain.Event{WebhookVerified{OrgID: s.OrgID, WebhookID: w.ID, URLVersion: v.URLVersion, StatusCode: v.StatusCode, VerifiedAt: v.Now}}
	}
	if w.Status == StatusActive {
		// A verification re-sent to an active webhook that now fails
		// leaves it active: deliveries keep their own retry rules.
		return nil
	}
	return []domain.Event{WebhookVerificationFailed{OrgID: s.OrgID, WebhookID: w.ID, URLVersion: v.URLVersion, StatusCode: v.StatusCode, Error: v.Error, FailedAt: v.Now}}
}

// DecideDisable returns WebhookDisabled unless the webhook is gone or
// already disabled.
func DecideDisable(s State, id string, code int, reason, now string) []domain.Event {
	w, ok := s.Webhook(id)
	if !ok || w.Status == StatusDisabled {
		return nil
	}
	return []domain.Event{WebhookDisabled{OrgID: s.OrgID, WebhookID: id, StatusCode: code, Reason: reason, DisabledAt: now}}
}
