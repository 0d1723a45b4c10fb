package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

func requireAdmin(p Principal) error {
	if !p.Admin {
		return domain.Errorf(domain.Unauthorized, "Admin credentials required")
	}
	return nil
}

// RegisterTenant registers orgID. It returns Conflict when it exists.
func (s *Service) RegisterTenant(ctx context.Context, c Call, orgID, orgName, ownerEmail string) (Answer[tenant.TenantRegistered], error) {
	if err := requireAdmin(c.P); err != nil {
		return Answer[tenant.TenantRegistered]{}, err
	}
	if !domain.ValidOrgID(orgID) {
		return Answer[tenant.TenantRegistered]{}, domain.InvalidField("orgId", "orgId must be 1-128 characters of letters, digits and . _ : @ -")
	}
	if orgName == "" {
		orgName = orgID
	}
	email := ""
	if ownerEmail != "" {
		var err error
		if email, err = domain.NormalizeEmail("ownerEmail", ownerEmail); err != nil {
			return Answer[tenant.TenantRegistered]{}, err
		}
	}
	res, err := tenantCommand[tenant.TenantRegistered](ctx, s, c, orgID, func(ctx context.Context, tx *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		evs, err := tenant.DecideRegister(st, tenant.Register{OrgID: orgID, OrgName: orgName, OwnerEmail: email, Now: now})
		if err != nil || email == "" {
			return evs, err
		}
		return evs, tx.SetTenantContact(ctx, orgID, email)
	}, func(_ context.Context, _ *store.Tx, _ tenant.State, _ []es.Record, res *WebhookAnswer[tenant.TenantRegistered]) error {
		res.Created = true
		return nil
	})
	return res.Answer, err
}

// IssuedKey is an API key shown once, right after issue or rotation.
type IssuedKey struct {
	APIKey    string
	OrgID     string
	OrgName   string
	CreatedAt string
	CreatedBy string
	ExpiresAt string
	Super     bool
}

// IssueKeyInput is the body of POST /api-keys (and of rotation).
type IssueKeyInput struct {
	OrgID     string `json:"orgId"`
	OrgName   string `json:"orgName,omitempty"`
	ExpiresAt string `json:"expiresAt,omitempty"`
	Super     bool   `json:"super,omitempty"`
}

// IssueKey issues the first API key of a tenant (rotate=false) or replaces
// the current one, revoking it at once (rotate=true). It returns NotFound
// for an unregistered tenant and Conflict when a key is active and rotate
// is false.
func (s *Service) IssueKey(ctx context.Context, p Principal, in IssueKeyInput, rotate bool) (IssuedKey, error) {
	if err := requireAdmin(p); err != nil {
		return IssuedKey{}, err
	}
	if in.OrgID == "" {
		return IssuedKey{}, domain.InvalidField("orgId", "orgId is required")
	}
	if err := tenant.CheckOrgName(in.OrgName); err != nil {
		return IssuedKey{}, err
	}
	expires := ""
	if in.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.ExpiresAt)
		if err != nil {
			return IssuedKey{}, domain.InvalidField("expiresAt", "expiresAt must be an ISO-8601 date-time, e.g. 2027-01-01T00:00:00Z")
		}
		if !t.After(s.now()) {
			return IssuedKey{}, domain.InvalidField("expiresAt", "expiresAt must be in the future")
		}
		expires = t.UTC().Format(domain.TimeLayout)
	}
	key := s.random(40)
	createdBy := p.Email
	if createdBy == "" {
		createdBy = "admin"
	}
	var out IssuedKey
	_, err := tenantCommand[tenant.APIKeyIssued](ctx, s, Call{P: p}, in.OrgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		super := in.Super
		if rotate {
			if k, ok := st.ActiveKey(now); ok && !in.Super {
				super = k.Super
			}
		}
		cmd := tenant.Issue{KeyID: s.newUUID(), Hash: HashAPIKey(key), Masked: MaskAPIKey(key), CreatedBy: createdBy, ExpiresAt: expires, Now: now, Super: super}
		decide := tenant.DecideIssueKey
		if rotate {
			decide = tenant.DecideRotateKey
		}
		out = IssuedKey{APIKey: key, OrgID: in.OrgID, OrgName: in.OrgName, CreatedAt: now, CreatedBy: createdBy, ExpiresAt: expires, Super: super}
		return decide(st, cmd)
	}, func(_ context.Context, _ *store.Tx, st tenant.State, _ []es.Record, _ *WebhookAnswer[tenant.APIKeyIssued]) error {
		if out.OrgName == "" {
			out.OrgName = st.OrgName
		}
		return nil
	})
	if err != nil {
		return IssuedKey{}, err
	}
	return out, nil
}

// TenantView is one tenant in the admin list.
type TenantView struct {
	OrgID, OrgName, OwnerEmail, RegisteredAt string
	Key                                      *tenant.Key
}

// Tenants lists every tenant with its current key (masked).
func (s *Service) Tenants(ctx context.Context, p Principal) ([]TenantView, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	snaps, err := s.st.Snapshots(ctx, tenant.AggregateType)
	if err != nil {
		return nil, err
	}
	now := s.stamp()
	out := make([]TenantView, 0, len(snaps))
	for _, sn := range snaps {
		var st tenant.State
		if err := json.Unmarshal(sn.State, &st); err != nil {
			return nil, fmt.Errorf("decode tenant %s: %w", sn.AggregateID, err)
		}
		email, err := s.st.TenantContact(ctx, st.OrgID)
		if err != nil {
			return nil, err
		}
		tv := TenantView{OrgID: st.OrgID, OrgName: st.OrgName, OwnerEmail: email, RegisteredAt: st.RegisteredAt}
		if k, ok := st.ActiveKey(now); ok {
			k.Hash = ""
			tv.Key = &k
		}
		out = append(out, tv)
	}
	return out, nil
}

// AuthenticateKey returns the principal of an API key. It returns
// Unauthorized for an unknown, revoked or expired key.
func (s *Service) AuthenticateKey(ctx context.Context, key string) (Principal, error) {
	k, found, err := s.st.APIKeyByHash(ctx, HashAPIKey(key))
	if err != nil {
		return Principal{}, err
	}
	now := s.stamp()
	if !found || k.RevokedAt != "" || (k.ExpiresAt != "" && k.ExpiresAt <= now) {
		return Principal{}, domain.Errorf(domain.Unauthorized, "Invalid, revoked or expired API key")
	}
	return Principal{Kind: TenantCaller, OrgID: k.OrgID, KeyID: k.KeyID, Super: k.Super}, nil
}

// Rebuild recomputes every event-derived read model from the event log.
func (s *Service) Rebuild(ctx context.Context) error { return s.st.Rebuild(ctx, folder(s.aggs)) }
