package httpapi

import (
	"context"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
)

type registerTenantInput struct {
	OrgID string `path:"orgId" doc:"The organization id the partner chose"`
	IdemHeader
	Body struct {
		_          struct{} `additionalProperties:"true"`
		OrgName    string   `json:"orgName,omitempty"`
		OwnerEmail string   `json:"ownerEmail,omitempty"`
	}
}

func (s *Server) registerTenant(ctx context.Context, in *registerTenantInput) (*CommandOutput[tenant.TenantRegistered], error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	r, err := s.svc.RegisterTenant(ctx, app.Call{P: p, Route: "register " + in.OrgID, IdempotencyKey: in.IdempotencyKey, Input: in.Body}, in.OrgID, in.Body.OrgName, in.Body.OwnerEmail)
	return command(ctx, s, r, err, true)
}

type issueKeyInput struct {
	Body struct {
		_         struct{} `additionalProperties:"true"`
		OrgID     string   `json:"orgId" minLength:"1"`
		OrgName   string   `json:"orgName,omitempty"`
		ExpiresAt string   `json:"expiresAt,omitempty" doc:"ISO-8601 expiry; none when absent"`
		Super     bool     `json:"super,omitempty" doc:"spkey extension: a super key bypasses org ownership"`
	}
}

// IssuedKeyOutput shows a new key once.
type IssuedKeyOutput struct {
	Status int
	Body   struct {
		APIKey    string  `json:"apiKey" doc:"The key itself: shown only in this answer"`
		OrgID     string  `json:"orgId"`
		OrgName   string  `json:"orgName"`
		CreatedAt string  `json:"createdAt"`
		CreatedBy string  `json:"createdBy"`
		ExpiresAt *string `json:"expiresAt"`
		Super     bool    `json:"super"`
	}
}

func (s *Server) issued(ctx context.Context, k app.IssuedKey, err error) (*IssuedKeyOutput, error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &IssuedKeyOutput{Status: http.StatusCreated}
	b := &out.Body
	b.APIKey, b.OrgID, b.OrgName, b.CreatedAt, b.CreatedBy, b.ExpiresAt, b.Super = k.APIKey, k.OrgID, k.OrgName, k.CreatedAt, k.CreatedBy, optional(k.ExpiresAt), k.Super
	return out, nil
}

func (s *Server) issueKey(ctx context.Context, in *issueKeyInput) (*IssuedKeyOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	k, err := s.svc.IssueKey(ctx, p, app.IssueKeyInput{OrgID: in.Body.OrgID, OrgName: in.Body.OrgName, ExpiresAt: in.Body.ExpiresAt, Super: in.Body.Super}, false)
	return s.issued(ctx, k, err)
}

type rotateKeyInput struct {
	OrgID string `path:"orgId"`
	Body  *struct {
		_         struct{} `additionalProperties:"true"`
		ExpiresAt string   `json:"expiresAt,omitempty" doc:"ISO-8601 expiry of the new key"`
	}
}

func (s *Server) rotateKey(ctx context.Context, in *rotateKeyInput) (*IssuedKeyOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	ki := app.IssueKeyInput{OrgID: in.OrgID}
	if in.Body != nil {
		ki.ExpiresAt = in.Body.ExpiresAt
	}
	k, err := s.svc.IssueKey(ctx, p, ki, true)
	return s.issued(ctx, k, err)
}

type tenantKey struct {
	Masked    string  `json:"masked"`
	CreatedAt string  `json:"createdAt"`
	CreatedBy string  `json:"createdBy"`
	ExpiresAt *string `json:"expiresAt"`
	Super     bool    `json:"super"`
}

type tenantItem struct {
	OrgID        string     `json:"orgId"`
	OrgName      string     `json:"orgName"`
	OwnerEmail   string     `json:"ownerEmail,omitempty"`
	RegisteredAt string     `json:"registeredAt"`
	APIKey       *tenantKey `json:"apiKey" doc:"The active key, masked; null when none"`
}

// TenantsOutput is GET /tenants.
type TenantsOutput struct {
	Body struct {
		Tenants []tenantItem `json:"tenants" nullable:"false"`
		Total   int          `json:"total"`
	}
}

func (s *Server) listTenants(ctx context.Context, _ *struct{}) (*TenantsOutput, error) {
	p := principal(ctx) // admin credentials: checked by admit (gateAdmin)
	ts, err := s.svc.Tenants(ctx, p)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &TenantsOutput{}
	out.Body.Tenants = make([]tenantItem, 0, len(ts))
	for _, t := range ts {
		it := tenantItem{OrgID: t.OrgID, OrgName: t.OrgName, OwnerEmail: t.OwnerEmail, RegisteredAt: t.RegisteredAt}
		if t.Key != nil {
			it.APIKey = &tenantKey{Masked: t.Key.Masked, CreatedAt: t.Key.CreatedAt, CreatedBy: t.Key.CreatedBy, ExpiresAt: optional(t.Key.ExpiresAt), Super: t.Key.Super}
		}
		out.Body.Tenants = append(out.Body.Tenants, it)
	}
	out.Body.Total = len(ts)
	return out, nil
}
