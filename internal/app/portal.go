package app

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/store"
)

// The Partner Portal's self-service: what a partner may do without an
// admin once the portal has verified their e-mail address (OIDC with
// email_verified, or a one-time link the operator printed). The portal's
// principal is {Kind: TenantCaller, OrgID: the org whose owner e-mail is
// the signed-in address, Email: that address}; the portal finds OrgID
// with PortalAccount on every request and never takes it from a form.

// MaxOrgName bounds the organization name chosen on the onboarding form.
const MaxOrgName = 200

// PortalAccount returns the organization whose owner e-mail is email: the
// portal's account of a signed-in partner. found is false for an address
// that owns none yet (the portal then offers onboarding). It returns an
// Invalid error for a malformed address.
func (s *Service) PortalAccount(ctx context.Context, email string) (orgID string, found bool, err error) {
	e, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return "", false, err
	}
	return s.st.TenantByOwnerEmail(ctx, e)
}

// Onboard registers orgID with orgName and the verified owner e-mail email
// and issues its first API key, in one transaction: either both happen or
// neither. It returns Invalid for a bad orgId, name or address, and
// Conflict when the orgId is taken or email already owns an organization.
func (s *Service) Onboard(ctx context.Context, email, orgID, orgName string) (IssuedKey, error) {
	e, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return IssuedKey{}, err
	}
	if !domain.ValidOrgID(orgID) {
		return IssuedKey{}, domain.InvalidField("orgId", "The organization id must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit.")
	}
	orgName = strings.TrimSpace(orgName)
	if orgName == "" {
		return IssuedKey{}, domain.InvalidField("orgName", "Please enter your organization's name.")
	}
	if !utf8.ValidString(orgName) || utf8.RuneCountInString(orgName) > MaxOrgName || strings.ContainsFunc(orgName, unicode.IsControl) {
		return IssuedKey{}, domain.InvalidField("orgName", "The organization name must be one line of at most 200 characters.")
	}
	key := s.random(40)
	var out IssuedKey
	_, err = tenantCommand[tenant.TenantRegistered](ctx, s, Call{}, orgID, func(ctx context.Context, tx *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		if owned, found, err := tx.TenantByOwnerEmail(ctx, e); err != nil {
			return nil, err
		} else if found {
			return nil, domain.Errorf(domain.Conflict, "%s already owns the organization %s", e, owned)
		}
		if st.Exists() {
			return nil, &domain.Error{Code: domain.Conflict, Message: "The organization id " + orgID + " is taken; please choose another.",
				Details: []domain.FieldError{{Field: "orgId", Message: "taken"}}}
		}
		evs, err := tenant.DecideRegister(st, tenant.Register{OrgID: orgID, OrgName: orgName, OwnerEmail: e, Now: now})
		if err != nil {
			return nil, err
		}
		registered := st
		for _, ev := range evs {
			registered = tenant.Apply(registered, ev)
		}
		issue := tenant.Issue{KeyID: s.newUUID(), Hash: HashAPIKey(key), Masked: MaskAPIKey(key), CreatedBy: e, Now: now}
		keyEvs, err := tenant.DecideIssueKey(registered, issue)
		if err != nil {
			return nil, err
		}
		if err := tx.SetTenantContact(ctx, orgID, e); err != nil {
			return nil, err
		}
		out = IssuedKey{APIKey: key, OrgID: orgID, OrgName: orgName, CreatedAt: now, CreatedBy: e}
		return append(evs, keyEvs...), nil
	}, nil)
	if err != nil {
		return IssuedKey{}, err
	}
	return out, nil
}

// PortalOrg returns the portal principal's organization with its active
// key, masked (Key is nil when none is active). It returns Forbidden for a
// principal that is not a tenant and NotFound for an unregistered org.
func (s *Service) PortalOrg(ctx context.Context, p Principal) (TenantView, error) {
	if err := requirePortal(p); err != nil {
		return TenantView{}, err
	}
	st, _, found, err := read(ctx, s.st, tenantAgg, p.OrgID)
	if err != nil {
		return TenantView{}, err
	}
	if !found || !st.Exists() {
		return TenantView{}, domain.Errorf(domain.NotFound, "Tenant not registered")
	}
	tv := TenantView{OrgID: st.OrgID, OrgName: st.OrgName, RegisteredAt: st.RegisteredAt}
	if k, ok := st.ActiveKey(s.stamp()); ok {
		k.Hash = ""
		tv.Key = &k
	}
	return tv, nil
}

// RotateOwnKey issues the portal principal's organization a new API key
// and revokes the current one in the same step (the old key is refused at
// once). currentKeyID is the key the partner saw when they pressed the
// button ("" for none): when another key is active by now, nothing
// changes and it returns Conflict, so a resubmitted form never rotates
// twice. A super key stays super. It returns Forbidden for a principal
// that is not a tenant and NotFound for an unregistered org.
func (s *Service) RotateOwnKey(ctx context.Context, p Principal, currentKeyID string) (IssuedKey, error) {
	if err := requirePortal(p); err != nil {
		return IssuedKey{}, err
	}
	key := s.random(40)
	createdBy := p.Email
	if createdBy == "" {
		createdBy = "self-service"
	}
	var out IssuedKey
	_, err := tenantCommand[tenant.APIKeyIssued](ctx, s, Call{P: p}, p.OrgID, func(_ context.Context, _ *store.Tx, st tenant.State, now string) ([]domain.Event, error) {
		active, ok := st.ActiveKey(now)
		if active.KeyID != currentKeyID {
			return nil, domain.Errorf(domain.Conflict, "The API key changed since this page was shown; nothing was rotated")
		}
		cmd := tenant.Issue{KeyID: s.newUUID(), Hash: HashAPIKey(key), Masked: MaskAPIKey(key), CreatedBy: createdBy, Now: now, Super: ok && active.Super}
		out = IssuedKey{APIKey: key, OrgID: p.OrgID, OrgName: st.OrgName, CreatedAt: now, CreatedBy: createdBy, Super: cmd.Super}
		return tenant.DecideRotateKey(st, cmd)
	}, nil)
	if err != nil {
		return IssuedKey{}, err
	}
	return out, nil
}

// UsePortalNonce spends the nonce of a one-time sign-in link: fresh is true
// only the first time, on any node. Links live at most maxTTL, so nonces
// spent longer ago than that are forgotten on the way (their links have
// expired and are refused before their nonce is looked at).
func (s *Service) UsePortalNonce(ctx context.Context, nonce string, maxTTL time.Duration) (fresh bool, err error) {
	now := s.now()
	if err := s.st.ForgetNonces(ctx, now.Add(-maxTTL)); err != nil {
		return false, err
	}
	return s.st.UseNonce(ctx, nonce, now)
}

// EndPortalSession records that the portal session id was signed out, on
// every node: PortalSessionEnded reports it from then on. Sessions live
// less than the nonce table remembers (maxTTL), so a signed-out session
// expires before it is forgotten.
func (s *Service) EndPortalSession(ctx context.Context, id string, maxTTL time.Duration) error {
	_, err := s.UsePortalNonce(ctx, sessionNonce(id), maxTTL)
	return err
}

// PortalSessionEnded reports whether the portal session id was signed out.
func (s *Service) PortalSessionEnded(ctx context.Context, id string) (bool, error) {
	return s.st.NonceUsed(ctx, sessionNonce(id))
}

// sessionNonce keeps signed-out sessions apart from link nonces in the
// one table of spent single-use values.
func sessionNonce(id string) string { return "session:" + id }

func requirePortal(p Principal) error {
	if p.Kind != TenantCaller || p.OrgID == "" {
		return domain.Errorf(domain.Forbidden, "A partner organization is required")
	}
	return nil
}
