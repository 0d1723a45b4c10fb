package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestAdminDisabledWithoutKey: with no admin key configured, every admin
// route answers 401 whatever is sent, and nothing is written.
func TestAdminDisabledWithoutKey(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{NoAdminKey: true})
	tok := srv.Token(t, "aaaaaaaa-1111-4111-8111-111111111111", "ops@example.com")
	for _, r := range []wireReq{
		{Method: "POST", Path: "/tenants/acme/register", Body: map[string]any{"orgName": "Acme"}},
		{Method: "POST", Path: "/api-keys", Body: map[string]any{"orgId": "acme"}},
		{Method: "POST", Path: "/api-keys/acme/rotate"},
		{Method: "GET", Path: "/tenants"},
		{Method: "POST", Path: "/users", Body: map[string]any{"detail": map[string]any{"data": map[string]any{"user_name": "a@example.com", "user_id": "5a5a5a5a-0000-4000-8000-000000000001"}}}},
	} {
		for _, key := range []string{"", testenv.AdminKey, "anything-at-all-0123456789"} {
			r := r
			r.JWT = tok
			if key != "" {
				r.Header = map[string]string{"X-Admin-API-Key": key}
			}
			before := wireSnapshot(t, srv)
			if resp := wireDo(t, srv, r); resp.Status != http.StatusUnauthorized {
				t.Errorf("%s %s with admin key %q: %d %s", r.Method, r.Path, key, resp.Status, resp.Raw)
			}
			wireUnchanged(t, srv, before)
		}
	}
}

// TestReadyzFollowsTheDatabase: /readyz answers 503 once the database is
// gone, while /healthz (liveness) stays 200.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	wireOK(t, srv, wireReq{Method: "GET", Path: "/readyz"}, 200)
	if err := srv.Store.Close(); err != nil {
		t.Fatal(err)
	}
	resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/readyz"})
	if resp.Status != http.StatusServiceUnavailable || resp.Obj(t)["status"] != "database unavailable" {
		t.Fatalf("readyz without a database: %d %s", resp.Status, resp.Raw)
	}
	wireOK(t, srv, wireReq{Method: "GET", Path: "/healthz"}, 200)
}

// TestAdminDomainNeedsVerifiedEmail: an outside issuer's token whose e-mail
// is in the admin domain opens the admin routes only when the issuer says
// the address is verified (anybody can sign up as ops@example.com at a
// provider that does not check).
func TestAdminDomainNeedsVerifiedEmail(t *testing.T) {
	iss := testenv.OIDCIssuer(t)
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{AdminEmailDomain: "example.com", JWT: &auth.Config{Issuer: iss.URL}})
	claims := func(verified bool) jwt.MapClaims {
		return jwt.MapClaims{"iss": iss.URL, "sub": "aaaaaaaa-1111-4111-8111-111111111111", "email": "ops@example.com",
			"email_verified": verified, "exp": time.Now().Add(time.Hour).Unix()}
	}
	req := func(tok string) wireReq {
		return wireReq{Method: "GET", Path: "/tenants", JWT: tok, Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}
	}
	if r := wireDo(t, srv, req(iss.Sign(t, claims(false)))); r.Status != http.StatusForbidden {
		t.Fatalf("unverified admin-domain e-mail: %d %s", r.Status, r.Raw)
	}
	if r := wireDo(t, srv, req(iss.Sign(t, claims(true)))); r.Status != http.StatusOK {
		t.Fatalf("verified admin-domain e-mail: %d %s", r.Status, r.Raw)
	}
}
