package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/testenv"
)

func wantCode(t *testing.T, what string, err error, code domain.Code) {
	t.Helper()
	if domain.ErrorCode(err) != code {
		t.Fatalf("%s: error %v, want code %s", what, err, code)
	}
}

// TestOnboard: a verified e-mail registers a tenant and gets its first
// key in one step; the key authenticates as that org, the account is
// found by the e-mail in any case, and the org shows the key masked.
// A taken orgId, a second org for the same e-mail and bad input change
// nothing.
func TestOnboard(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			svc := app.New(testenv.OpenStore(t, b), app.Options{}, testenv.Discard())

			if _, found, err := svc.PortalAccount(ctx, "ops@acme.example"); err != nil || found {
				t.Fatalf("account before onboarding: found %v, err %v", found, err)
			}
			k, err := svc.Onboard(ctx, "Ops@Acme.example", "acme", "  Acme Rentals ")
			if err != nil {
				t.Fatal(err)
			}
			if len(k.APIKey) != 40 || k.OrgID != "acme" || k.OrgName != "Acme Rentals" || k.CreatedBy != "ops@acme.example" {
				t.Fatalf("issued key: %+v", k)
			}
			p, err := svc.AuthenticateKey(ctx, k.APIKey)
			if err != nil || p.Kind != app.TenantCaller || p.OrgID != "acme" {
				t.Fatalf("the new key authenticates as %+v, %v", p, err)
			}
			org, found, err := svc.PortalAccount(ctx, "OPS@acme.example")
			if err != nil || !found || org != "acme" {
				t.Fatalf("account: %q %v %v", org, found, err)
			}
			me := app.Principal{Kind: app.TenantCaller, OrgID: "acme", Email: "ops@acme.example"}
			tv, err := svc.PortalOrg(ctx, me)
			if err != nil {
				t.Fatal(err)
			}
			if tv.OrgName != "Acme Rentals" || tv.Key == nil || tv.Key.Masked != app.MaskAPIKey(k.APIKey) || tv.Key.Hash != "" {
				t.Fatalf("org view: %+v key %+v", tv, tv.Key)
			}

			_, err = svc.Onboard(ctx, "someone@else.example", "acme", "Other")
			wantCode(t, "taken orgId", err, domain.Conflict)
			if !strings.Contains(err.Error(), "taken") {
				t.Errorf("taken orgId message: %v", err)
			}
			_, err = svc.Onboard(ctx, "ops@acme.example", "acme2", "Second")
			wantCode(t, "second org for one e-mail", err, domain.Conflict)
			for _, c := range []struct{ email, org, name string }{
				{"not-an-email", "x1", "X"}, {"a@b.example", "bad id!", "X"}, {"a@b.example", "", "X"},
				{"a@b.example", "x1", "  "}, {"a@b.example", "x1", "two\nlines"}, {"a@b.example", "x1", strings.Repeat("n", app.MaxOrgName+1)},
			} {
				_, err := svc.Onboard(ctx, c.email, c.org, c.name)
				wantCode(t, "onboard "+c.email+" "+c.org+" "+c.name, err, domain.Invalid)
			}
			for _, email := range []string{"someone@else.example", "a@b.example"} {
				if _, found, _ := svc.PortalAccount(ctx, email); found {
					t.Errorf("%s got an account from a refused onboarding", email)
				}
			}
			if _, found, _ := svc.PortalAccount(ctx, "ops@acme.example"); !found {
				t.Error("the account is gone")
			}
		})
	}
}

// TestRotateOwnKey: rotation revokes the old key at once and only when the
// key the partner saw is still the active one; a principal that is not a
// tenant is refused; an org without an active key gets one.
func TestRotateOwnKey(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			svc := app.New(testenv.OpenStore(t, b), app.Options{}, testenv.Discard())
			first, err := svc.Onboard(ctx, "ops@acme.example", "acme", "Acme")
			if err != nil {
				t.Fatal(err)
			}
			me := app.Principal{Kind: app.TenantCaller, OrgID: "acme", Email: "ops@acme.example"}
			tv, err := svc.PortalOrg(ctx, me)
			if err != nil {
				t.Fatal(err)
			}
			_, err = svc.RotateOwnKey(ctx, me, "not-the-current-key")
			wantCode(t, "stale key id", err, domain.Conflict)
			if _, err := svc.AuthenticateKey(ctx, first.APIKey); err != nil {
				t.Fatalf("a refused rotation revoked the key: %v", err)
			}
			for _, p := range []app.Principal{{}, {Kind: app.UserCaller, UserID: "u"}, {Kind: app.TenantCaller}} {
				_, err := svc.RotateOwnKey(ctx, p, tv.Key.KeyID)
				wantCode(t, "rotate as a non-tenant", err, domain.Forbidden)
			}

			second, err := svc.RotateOwnKey(ctx, me, tv.Key.KeyID)
			if err != nil {
				t.Fatal(err)
			}
			if second.APIKey == first.APIKey || second.CreatedBy != "ops@acme.example" {
				t.Fatalf("rotated key: %+v", second)
			}
			_, err = svc.AuthenticateKey(ctx, first.APIKey)
			wantCode(t, "old key after rotation", err, domain.Unauthorized)
			if p, err := svc.AuthenticateKey(ctx, second.APIKey); err != nil || p.OrgID != "acme" {
				t.Fatalf("new key: %+v %v", p, err)
			}
			// The same form posted again (a reload) names the old key.
			_, err = svc.RotateOwnKey(ctx, me, tv.Key.KeyID)
			wantCode(t, "rotation resubmitted", err, domain.Conflict)
			if _, err := svc.AuthenticateKey(ctx, second.APIKey); err != nil {
				t.Fatalf("a resubmitted rotation revoked the new key: %v", err)
			}

			// An org registered by an admin without a key: "no active key",
			// and rotation issues one.
			admin := app.Principal{Admin: true}
			if _, err := svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register"}, "globex", "Globex", "boss@globex.example"); err != nil {
				t.Fatal(err)
			}
			boss := app.Principal{Kind: app.TenantCaller, OrgID: "globex", Email: "boss@globex.example"}
			tv, err = svc.PortalOrg(ctx, boss)
			if err != nil || tv.Key != nil {
				t.Fatalf("keyless org: %+v %v", tv, err)
			}
			k, err := svc.RotateOwnKey(ctx, boss, "")
			if err != nil {
				t.Fatal(err)
			}
			if p, err := svc.AuthenticateKey(ctx, k.APIKey); err != nil || p.OrgID != "globex" {
				t.Fatalf("issued key: %+v %v", p, err)
			}
			_, err = svc.PortalOrg(ctx, app.Principal{Kind: app.TenantCaller, OrgID: "nobody"})
			wantCode(t, "unregistered org", err, domain.NotFound)
		})
	}
}

// TestUsePortalNonce: a nonce is spent once; nonces older than the link
// lifetime are forgotten; a signed-out session is remembered apart from
// link nonces.
func TestUsePortalNonce(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
			svc := app.New(testenv.OpenStore(t, b), app.Options{Now: func() time.Time { return now }}, testenv.Discard())
			for i, want := range []bool{true, false} {
				fresh, err := svc.UsePortalNonce(ctx, "abc", time.Hour)
				if err != nil || fresh != want {
					t.Fatalf("use %d: fresh %v, err %v", i, fresh, err)
				}
			}
			if ended, err := svc.PortalSessionEnded(ctx, "s1"); err != nil || ended {
				t.Fatalf("session s1 ended before sign-out: %v %v", ended, err)
			}
			if err := svc.EndPortalSession(ctx, "s1", time.Hour); err != nil {
				t.Fatal(err)
			}
			if ended, err := svc.PortalSessionEnded(ctx, "s1"); err != nil || !ended {
				t.Fatalf("session s1 not ended after sign-out: %v %v", ended, err)
			}
			if ended, _ := svc.PortalSessionEnded(ctx, "abc"); ended {
				t.Fatal("a link nonce counts as a signed-out session")
			}
			now = now.Add(2 * time.Hour)
			if fresh, err := svc.UsePortalNonce(ctx, "abc", time.Hour); err != nil || !fresh {
				t.Fatalf("after the lifetime: fresh %v, err %v", fresh, err)
			}
		})
	}
}
