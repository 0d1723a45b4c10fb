package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
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
// id and token. cfg's Log (default: the test's) and HTTP.AccessLog are
// kept.
func newNode(t *testing.T, b testenv.Backend, cfg server.Config) (node *server.Node, user, token string) {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.Config{KeyPath: filepath.Join(t.TempDir(), "key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log == nil {
		cfg.Log = testenv.Logger(t)
	}
	cfg.Store, cfg.Verifier, cfg.StoreMetrics = testenv.OpenStore(t, b), v, true
	cfg.HTTP = httpapi.Config{Version: "test", CORSOrigins: map[string]bool{}, AccessLog: cfg.HTTP.AccessLog}
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

// TestNodeAccessLog: with --access-log errors (serve's default), a
// successful request writes no line and a refused one writes its
// "request" line with the request id the answer carries; with all, both
// are logged.
func TestNodeAccessLog(t *testing.T) {
	for _, c := range []struct {
		setting string
		want200 bool
	}{{"errors", false}, {"all", true}, {"", true}} {
		t.Run("access-log="+c.setting, func(t *testing.T) {
			var mu sync.Mutex
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			node, _, _ := newNode(t, testenv.SQLite, server.Config{Log: log, HTTP: httpapi.Config{AccessLog: c.setting}})
			base, err := node.ServeOn("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			get := func(path string) string {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.Header.Get("X-Request-Id")
			}
			ok, missing := get("/healthz"), get("/locks/999/residents")
			// The line is written before the answer is sent.
			mu.Lock()
			text := buf.String()
			mu.Unlock()
			lines := map[string]map[string]any{}
			for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
					lines[m["request_id"].(string)] = m
				}
			}
			if _, logged := lines[ok]; logged != c.want200 {
				t.Errorf("200 logged: %v, want %v (log: %s)", logged, c.want200, text)
			}
			if m := lines[missing]; m == nil || m["status"] != float64(404) || m["path"] != "/locks/999/residents" {
				t.Errorf("404 line %v (request id %q, log: %s)", m, missing, text)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
