package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestUseNonce: a nonce is fresh exactly once, also when many goroutines
// use it at the same moment; forgotten nonces are fresh again, recent ones
// are kept.
func TestUseNonce(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

			fresh, err := st.UseNonce(ctx, "n1", at)
			if err != nil || !fresh {
				t.Fatalf("first use: fresh %v, err %v", fresh, err)
			}
			fresh, err = st.UseNonce(ctx, "n1", at.Add(time.Second))
			if err != nil || fresh {
				t.Fatalf("second use: fresh %v, err %v", fresh, err)
			}
			if used, err := st.NonceUsed(ctx, "n1"); err != nil || !used {
				t.Fatalf("n1 used: %v, %v", used, err)
			}
			if used, err := st.NonceUsed(ctx, "n2"); err != nil || used {
				t.Fatalf("n2 used: %v, %v", used, err)
			}
			if _, err := st.UseNonce(ctx, "", at); err == nil {
				t.Fatal("an empty nonce was accepted")
			}

			const n = 16
			var wg sync.WaitGroup
			results := make(chan bool, n)
			for range n {
				wg.Go(func() {
					fresh, err := st.UseNonce(ctx, "race", at)
					if err != nil {
						t.Error(err)
					}
					results <- fresh
				})
			}
			wg.Wait()
			close(results)
			won := 0
			for f := range results {
				if f {
					won++
				}
			}
			if won != 1 {
				t.Fatalf("%d of %d concurrent uses were fresh, want exactly 1", won, n)
			}

			if _, err := st.UseNonce(ctx, "later", at.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := st.ForgetNonces(ctx, at.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			for nonce, want := range map[string]bool{"n1": true, "race": true, "later": false} {
				fresh, err := st.UseNonce(ctx, nonce, at.Add(2*time.Hour))
				if err != nil || fresh != want {
					t.Errorf("after forgetting: %s fresh %v (want %v), err %v", nonce, fresh, want, err)
				}
			}
		})
	}
}

// TestTenantByOwnerEmail finds a tenant by its owner's (normalized) e-mail,
// the first by orgId when several share one, and nothing for a stranger.
func TestTenantByOwnerEmail(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			admin := app.Principal{Admin: true}
			for _, r := range []struct{ org, email string }{{"zeta", "Owner@Example.com"}, {"alpha", "owner@example.com"}, {"other", "someone@example.com"}, {"none", ""}} {
				if _, err := svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register"}, r.org, "", r.email); err != nil {
					t.Fatal(err)
				}
			}
			for email, want := range map[string]string{"owner@example.com": "alpha", "someone@example.com": "other", "nobody@example.com": "", "": ""} {
				org, found, err := st.TenantByOwnerEmail(ctx, email)
				if err != nil || org != want || found != (want != "") {
					t.Errorf("TenantByOwnerEmail(%q) = %q, %v, %v; want %q", email, org, found, err, want)
				}
			}
		})
	}
}
