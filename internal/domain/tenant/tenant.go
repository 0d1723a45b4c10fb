// Package tenant is the tenant (partner organization) aggregate, keyed by
// orgId: registration and its API keys. Only a key's SHA-256 hash and masked
// form are ever recorded; the key itself is shown once and forgotten.
package tenant

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// AggregateType is the stream type of tenants in the event store.
const AggregateType = "tenant"

// Event type names. They are stored forever; never rename one.
const (
	TypeTenantRegistered = "TenantRegistered"
	TypeAPIKeyIssued     = "ApiKeyIssued"
	TypeAPIKeyRevoked    = "ApiKeyRevoked"
)

// Key is an API key as the tenant knows it: never the key itself.
type Key struct {
	KeyID     string `json:"keyId"`
	Hash      string `json:"hash"`
	Masked    string `json:"masked"`
	Super     bool   `json:"super"`
	CreatedAt string `json:"createdAt"`
	CreatedBy string `json:"createdBy"`
	ExpiresAt string `json:"expiresAt,omitempty"`
	RevokedAt string `json:"revokedAt,omitempty"`
}

// Active reports whether the key can still authenticate at now (an ISO
// timestamp in domain.TimeLayout, which sorts lexically).
func (k Key) Active(now string) bool {
	return k.RevokedAt == "" && (k.ExpiresAt == "" || k.ExpiresAt > now)
}

// State is the tenant as folded from its events.
type State struct {
	OrgID            string    `json:"orgId"`
	OrgName          string    `json:"orgName"`
	MaskedOwnerEmail string    `json:"maskedOwnerEmail,omitempty"`
	RegisteredAt     string    `json:"registeredAt"`
	Keys             []Key     `json:"keys"`
	Webhooks         []Webhook `json:"webhooks,omitempty"`
}

// Exists reports whether the tenant is registered.
func (s State) Exists() bool { return s.OrgID != "" }

// ActiveKey returns the key that can authenticate at now, if any.
func (s State) ActiveKey(now string) (Key, bool) {
	for _, k := range s.Keys {
		if k.Active(now) {
			return k, true
		}
	}
	return Key{}, false
}

// TenantRegistered is recorded when a partner organization is registered.
type TenantRegistered struct {
	OrgID        string `json:"orgId"`
	OrgName      string `json:"orgName"`
	OwnerEmail   string `json:"ownerEmail,omitempty"`
	RegisteredAt string `json:"registeredAt"`
}

// APIKeyIssued is recorded when a key is issued; it carries the hash only.
type APIKeyIssued struct {
	OrgID     string `json:"orgId"`
	KeyID     string `json:"keyId"`
	Hash      string `json:"hash"`
	Masked    string `json:"masked"`
	Super     bool   `json:"super"`
	CreatedAt string `json:"createdAt"`
	CreatedBy string `json:"createdBy"`
	ExpiresAt string `json:"expiresAt,omitempty"`
}

// APIKeyRevoked is recorded when a key stops working at once (rotation).
type APIKeyRevoked struct {
	OrgID     string `json:"orgId"`
	KeyID     string `json:"keyId"`
	Reason    string `json:"reason"`
	RevokedAt string `json:"revokedAt"`
}

// Events is the catalogue of the tenant's events (its webhook events
// included).
var Events = domain.NewCatalog(AggregateType,
	domain.Def[TenantRegistered](TypeTenantRegistered),
	domain.Def[APIKeyIssued](TypeAPIKeyIssued),
	domain.Def[APIKeyRevoked](TypeAPIKeyRevoked),
	domain.Def[WebhookCreated](TypeWebhookCreated),
	domain.Def[WebhookUpdated](TypeWebhookUpdated),
	domain.Def[WebhookDeleted](TypeWebhookDeleted),
	domain.Def[WebhookVerified](TypeWebhookVerified),
	domain.Def[WebhookVerificationFailed](TypeWebhookVerificationFailed),
	domain.Def[WebhookDisabled](TypeWebhookDisabled),
)

// Apply returns the state after e. Unknown events leave the state as it is.
func Apply(s State, e domain.Event) State {
	if s2, ok := applyWebhook(s, e); ok {
		return s2
	}
	switch v := e.(type) {
	case TenantRegistered:
		s = State{OrgID: v.OrgID, OrgName: v.OrgName, MaskedOwnerEmail: v.OwnerEmail, RegisteredAt: v.RegisteredAt, Keys: []Key{}}
	case APIKeyIssued:
		s.Keys = append(append([]Key{}, s.Keys...), Key{KeyID: v.KeyID, Hash: v.Hash, Masked: v.Masked, Super: v.Super,
			CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy, ExpiresAt: v.ExpiresAt})
	case APIKeyRevoked:
		keys := append([]Key{}, s.Keys...)
		for i := range keys {
			if keys[i].KeyID == v.KeyID {
				keys[i].RevokedAt = v.RevokedAt
			}
		}
		s.Keys = keys
	}
	return s
}

// Register asks for a new tenant; OwnerEmail is raw and only its mask is
// recorded.
type Register struct {
	OrgID, OrgName, OwnerEmail, Now string
}

// DecideRegister returns TenantRegistered. It returns Conflict when the org
// is already registered.
func DecideRegister(s State, c Register) ([]domain.Event, error) {
	if s.Exists() {
		return nil, domain.Errorf(domain.Conflict, "Tenant already registered")
	}
	if err := CheckOrgName(c.OrgName); err != nil {
		return nil, err
	}
	masked := ""
	if c.OwnerEmail != "" {
		masked = domain.MaskEmail(c.OwnerEmail)
	}
	return []domain.Event{TenantRegistered{OrgID: c.OrgID, OrgName: c.OrgName, OwnerEmail: masked, RegisteredAt: c.Now}}, nil
}

// CheckOrgName checks an organization's name: one line of at most
// domain.MaxOrgNameLen characters without control or bidirectional
// formatting characters.
func CheckOrgName(name string) error {
	return domain.CheckText("orgName", name, domain.MaxOrgNameLen, false)
}

// Issue asks for a new key; the caller generated the key and passes only
// its identity, hash and masked form.
type Issue struct {
	KeyID, Hash, Masked, CreatedBy, ExpiresAt, Now string
	Super                                          bool
}

func (c Issue) event(orgID string) APIKeyIssued {
	return APIKeyIssued{OrgID: orgID, KeyID: c.KeyID, Hash: c.Hash, Masked: c.Masked, Super: c.Super,
		CreatedAt: c.Now, CreatedBy: c.CreatedBy, ExpiresAt: c.ExpiresAt}
}

// DecideIssueKey returns APIKeyIssued. It returns NotFound when the tenant
// is not registered and Conflict when it already has an active key.
func DecideIssueKey(s State, c Issue) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "Tenant not registered")
	}
	if _, ok := s.ActiveKey(c.Now); ok {
		return nil, domain.Errorf(domain.Conflict, "Organization already has an active API key; rotate it instead")
	}
	return []domain.Event{c.event(s.OrgID)}, nil
}

// DecideRotateKey revokes the active key (if any) and issues a new one in
// the same step. It returns NotFound when the tenant is not registered.
func DecideRotateKey(s State, c Issue) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "Tenant not registered")
	}
	var evs []domain.Event
	for _, k := range s.Keys {
		if k.RevokedAt == "" {
			evs = append(evs, APIKeyRevoked{OrgID: s.OrgID, KeyID: k.KeyID, Reason: "rotated", RevokedAt: c.Now})
		}
	}
	return append(evs, c.event(s.OrgID)), nil
}
