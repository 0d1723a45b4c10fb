package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// newNode builds a node over a fresh store of b, as `spkey serve` does,
// with a tenant "acme" and a user of its, and returns it with the user's
// id and token.
func newNode(t *testing.T, b testenv.Backend, cfg server.Config) (node *server.Node, user, token string) {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.Config{KeyPath: filepath.Join(t.TempDir(), "key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Verifier, cfg.Log, cfg.StoreMetrics = testenv.OpenStore(t, b), v, testenv.Logger(t), true
	cfg.HTTP = httpapi.Config{Version: "test", CORSOrigins: map[string]bool{}}
	cfg.Timeouts = server.DefaultTimeouts
	node = server.New(cfg)
	ctx := context.Background()
	admin := app.Principal{Admin: true}
	if _, err := node.Svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	u, err := node.Svc.FindOrCreate(ctx, app.Principal{Kind: app.TenantCaller, OrgID: "acme"}, false, app.FindInput{Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if token, err = v.Mint(u.UserID, "alice@example.com", time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	return node, u.UserID, token
}

// TestNodeLifecycle: a node serves its API and its metrics apart; its
// live streams end at Shutdown, which waits for them; Stop stops the
// engine and the retention job; Close after Shutdown and a second Stop
// are harmless.
func TestNodeLifecycle(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			node, user, token := newNode(t, b, server.Config{PruneInterval: time.Hour})
			node.Start(context.Background())
			base, err := node.ServeOn("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			mln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			stopMetrics := node.ServeMetrics(mln, "")
			defer stopMetrics(context.Background())

			resp, err := http.Get(base + "/healthz")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /healthz: %v %v", resp, err)
			}
			resp.Body.Close()
			resp, err = http.Get("http://" + mln.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, m := range []string{"spkey_event_appends_total", "spkey_http_requests_total", "go_goroutines", "spkey_live_streams"} {
				if !strings.Contains(string(body), m) {
					t.Errorf("metrics lack %s", m)
				}
			}

			stream := testenv.OpenStream(t, base+"/users/"+user+"/notifications/stream", testenv.Bearer(token))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := node.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown with a live stream open: %v", err)
			}
			stream.WaitEnd(t, 5*time.Second)
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Error("the API still answers after Shutdown")
			}
			node.Stop()
			node.Stop()
			if err := node.Close(); err != nil {
				t.Errorf("Close after Shutdown: %v", err)
			}
		})
	}
}

// TestNodeClose: Close ends the live streams at once.
func TestNodeClose(t *testing.T) {
	node, user, token := newNode(t, testenv.SQLite, server.Config{})
	node.Start(context.Background())
	defer node.Stop()
	base, err := node.ServeOn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stream := testenv.OpenStream(t, base+"/users/"+user+"/notifications/stream", testenv.Bearer(token))
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	stream.WaitEnd(t, 5*time.Second)
}
