package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// clock is a hand-turned clock for expiry tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestAPIKeys covers the admin key lifecycle: issue rules, expiry, super
// keys, the masked listing, and that no stored byte holds a key.
func TestAPIKeys(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			clk := &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
			srv := testenv.NewServer(t, b, testenv.Options{Now: clk.Now})
			admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}

			// A key for a tenant that is not registered: 404, nothing stored.
			before := wireSnapshot(t, srv)
			resp := wireDo(t, srv, wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: map[string]any{"orgId": "ghost"}})
			if resp.Status != http.StatusNotFound || resp.Obj(t)["message"] != "Tenant not registered" {
				t.Fatalf("key for unregistered tenant: %d %s", resp.Status, resp.Raw)
			}
			wireUnchanged(t, srv, before)

			wireOK(t, srv, wireReq{Method: "POST", Path: "/tenants/acme/register", Header: admin, Body: map[string]any{"orgName": "Acme"}}, 201)
			for _, bad := range []string{"yesterday", "2026-11-25T11:00:00Z"} {
				resp := wireDo(t, srv, wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: map[string]any{"orgId": "acme", "expiresAt": bad}})
				if resp.Status != http.StatusBadRequest {
					t.Fatalf("expiresAt %q: %d %s", bad, resp.Status, resp.Raw)
				}
			}
			issued := wireOK(t, srv, wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: map[string]any{"orgId": "acme", "expiresAt": "2026-11-25T13:00:00Z"}}, 201)
			key := issued["apiKey"].(string)
			if len(key) != 40 || issued["expiresAt"] != "2026-11-25T13:00:00.000Z" {
				t.Fatalf("issued: %v", issued)
			}
			// One active key per tenant.
			resp = wireDo(t, srv, wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: map[string]any{"orgId": "acme"}})
			if resp.Status != http.StatusConflict {
				t.Fatalf("second active key: %d %s", resp.Status, resp.Raw)
			}

			// The listing shows the key masked, never whole, never hashed.
			list := wireOK(t, srv, wireReq{Method: "GET", Path: "/tenants", Header: admin}, 200)
			tk := list["tenants"].([]any)[0].(map[string]any)["apiKey"].(map[string]any)
			if tk["masked"] != key[:8]+"…"+key[36:] || strings.Contains(string(wireDo(t, srv, wireReq{Method: "GET", Path: "/tenants", Header: admin}).Raw), key) {
				t.Fatalf("listing: %v", tk)
			}

			// No stored byte holds the key: read models and the tenant's events.
			dump, err := srv.Store.DumpReadModels(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			recs, err := srv.Store.Stream(context.Background(), tenant.AggregateType, "acme", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			stored := dump
			for _, r := range recs {
				stored += string(r.Data)
			}
			if strings.Contains(stored, key) || !strings.Contains(stored, tk["masked"].(string)) {
				t.Fatal("the API key itself is stored, or its masked form is missing")
			}

			// The key works until it expires, then 401.
			if st := wireDo(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=a@example.com", Key: key}).Status; st != 200 {
				t.Fatalf("fresh key refused: %d", st)
			}
			clk.Advance(2 * time.Hour)
			resp = wireDo(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=a@example.com", Key: key})
			if resp.Status != http.StatusUnauthorized {
				t.Fatalf("expired key: %d %s", resp.Status, resp.Raw)
			}
			// With the old key expired a new one may be issued.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: map[string]any{"orgId": "acme"}}, 201)

			// A super key acts on another tenant's lock; a plain key of a
			// third tenant does not.
			owner := srv.Tenant(t, "owner-org", false)
			superKey := srv.Tenant(t, "root", true)
			other := srv.Tenant(t, "other", false)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/42/CreateLock", Key: owner, Body: map[string]any{"index": 1, "uuid": "11111111-2222-4333-8444-555555555555"}}, 201)
			if st := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/42/details", Key: superKey}).Status; st != 200 {
				t.Fatalf("super key on another tenant's lock: %d", st)
			}
			if st := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/42/details", Key: other}).Status; st != 403 {
				t.Fatalf("plain key on another tenant's lock: %d", st)
			}
		})
	}
}
