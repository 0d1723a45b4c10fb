package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/netsafe/netsafetest"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// The fixture of the HTTP fuzz targets (fuzz_test.go): one real server on
// SQLite per fuzz process, built before f.Fuzz, whose inputs then run one
// after the other against it.

// Fixed ids, so that the committed corpus can name them in bodies.
const (
	fuzzOwner     = "0f0f0f0f-1111-4222-8333-444455556666" // owner of lock 1, its resident, targeted by the ring
	fuzzPhoneOnly = "0f0f0f0f-2222-4222-8333-444455556666" // created by acme by phone, never signed in: acme has custody
	fuzzNewUser   = "0f0f0f0f-3333-4222-8333-444455556666" // no user has it: CreateUser
	fuzzLockUUID  = "0f0f0f0f-4444-4222-8333-444455556666" // lock 1's device
	fuzzLock2UUID = "0f0f0f0f-5555-4222-8333-444455556666" // free for CreateLock on lock 2
)

// fuzzCred is the credentials a fuzz request is sent with.
type fuzzCred int

const (
	credNone  fuzzCred = iota
	credKey            // acme's API key: owns lock 1, created the users
	credSuper          // root's super key
	credHook           // hooks' API key: owns the webhook
	credOwner          // the lock owner's JWT
	credAdmin          // X-Admin-API-Key and an admin-domain JWT
)

// fuzzFixture is a server with tenants acme (lock 1 with its owner as
// resident and one ring), root (super key), hooks (one webhook, pending:
// its URL is never reachable), spare (registered, no key); users owner
// and phone-only. Webhook URLs resolve to a private address and the
// policy is the strict one, so that no fuzz input sends anything off
// this machine.
type fuzzFixture struct {
	srv    *testenv.Server
	client *http.Client
	log    *fuzzLog
	creds  map[fuzzCred]func(h http.Header)
	ring   string // a ring of lock 1 that targeted owner
	hook   string // hooks' webhook
	head   int64  // the newest event seen (global seq)
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	ctx := context.Background()
	dns := netsafetest.NewDNS(f, netip.MustParseAddr("10.0.0.7"))
	logs := &fuzzLog{}
	srv := testenv.NewServer(f, testenv.SQLite, testenv.Options{
		AdminEmailDomain: "example.com",
		Log:              slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Safety:           &netsafe.Policy{Resolver: dns.Resolver()},
		Webhooks:         webhook.Config{Timeout: 200 * time.Millisecond},
	})
	fx := &fuzzFixture{srv: srv, log: logs, client: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	key, super, hookKey := srv.Tenant(f, "acme", false), srv.Tenant(f, "root", true), srv.Tenant(f, "hooks", false)
	admin := app.Principal{Admin: true, Email: "test"}
	if _, err := srv.Svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register spare"}, "spare", "Spare", ""); err != nil {
		f.Fatalf("register spare: %v", err)
	}
	ownerJWT := srv.Token(f, fuzzOwner, "owner@fuzz.test")
	adminJWT := srv.Token(f, app.NewUUID(), "a@example.com")
	fx.creds = map[fuzzCred]func(h http.Header){
		credNone:  func(http.Header) {},
		credKey:   func(h http.Header) { h.Set("X-API-Key", key) },
		credSuper: func(h http.Header) { h.Set("X-API-Key", super) },
		credHook:  func(h http.Header) { h.Set("X-API-Key", hookKey) },
		credOwner: func(h http.Header) { h.Set("Authorization", "Bearer "+ownerJWT) },
		credAdmin: func(h http.Header) {
			h.Set("Authorization", "Bearer "+adminJWT)
			h.Set("X-Admin-API-Key", testenv.AdminKey)
		},
	}
	must := func(method, path string, cred fuzzCred, body string, want int) []byte {
		status, raw, err := fx.do(method, path, cred, []byte(body))
		if err != nil || status != want {
			f.Fatalf("fixture %s %s: %d %s, %v; want %d", method, path, status, raw, err, want)
		}
		return raw
	}
	must("POST", "/locks/1/CreateLock", credKey, `{"index":1,"uuid":"`+fuzzLockUUID+`"}`, http.StatusCreated)
	must("GET", "/users/by-email?email=owner@fuzz.test&uuid="+fuzzOwner, credKey, "", http.StatusOK)
	must("GET", "/users/by-phone?phoneNumber=%2B48999888777&uuid="+fuzzPhoneOnly, credKey, "", http.StatusOK)
	must("POST", "/locks/1/SetOwner", credKey, `{"userId":"`+fuzzOwner+`"}`, http.StatusOK)
	must("POST", "/locks/1/AddResident", credKey, `{"name":"Owner","email":"owner@fuzz.test"}`, http.StatusOK)
	fx.ring = fuzzField(f, must("POST", "/locks/1/RingDoorbell", credKey, `{"visitorName":"Courier"}`, http.StatusOK), "ringId")
	// The webhook is created past the server's policy (a loopback URL the
	// server's own dialer refuses), so that it exists without anything
	// reachable behind it.
	lax := app.New(srv.Store, app.Options{Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
	r, err := lax.CreateWebhook(ctx, app.Call{P: admin, Route: "fixture webhook"}, "hooks", app.WebhookInput{URL: "http://127.0.0.1:9/hook"})
	if err != nil {
		f.Fatalf("create webhook: %v", err)
	}
	fx.hook = r.WebhookID
	fx.settle(f)
	return fx
}

// fuzzField returns a string member of a JSON object answer.
func fuzzField(t testing.TB, raw []byte, name string) string {
	t.Helper()
	v, _ := wireJSON(t, string(raw)).(map[string]any)[name].(string)
	if v == "" {
		t.Fatalf("answer %s has no %q", raw, name)
	}
	return v
}

// do sends one request; body nil sends none, anything else is sent as
// JSON. A request the client cannot build or send is an error.
func (fx *fuzzFixture) do(method, path string, cred fuzzCred, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, fx.srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	fx.creds[cred](req.Header)
	resp, err := fx.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// settle waits until no webhook verification is queued: a verification
// records its outcome as an event, later, on its own.
func (fx *fuzzFixture) settle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rows, err := fx.srv.Store.Outbox(context.Background(), es.ConsumerWebhookVerify, 1)
		if err != nil {
			t.Fatalf("read verification queue: %v", err)
		}
		if len(rows) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook verification still queued after 15s: %+v", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshot settles the background work, catches up with the events
// stored so far and returns the read models: what a refused request must
// leave as it is (with no event after fx.head).
func (fx *fuzzFixture) snapshot(t testing.TB) string {
	t.Helper()
	fx.settle(t)
	ctx := context.Background()
	for {
		_, found, err := fx.srv.Store.Event(ctx, fx.head+1)
		if err != nil {
			t.Fatalf("read event %d: %v", fx.head+1, err)
		}
		if !found {
			break
		}
		fx.head++
	}
	dump, err := fx.srv.Store.DumpReadModels(ctx)
	if err != nil {
		t.Fatalf("dump read models: %v", err)
	}
	return dump
}

// unchanged fails when an event was stored after before was taken or the
// read models differ from it.
func (fx *fuzzFixture) unchanged(t testing.TB, before, what string) {
	t.Helper()
	ctx := context.Background()
	if rec, found, err := fx.srv.Store.Event(ctx, fx.head+1); err != nil || found {
		t.Fatalf("%s stored event %d (%s %s/%s), %v", what, rec.Seq, rec.Type, rec.AggregateType, rec.AggregateID, err)
	}
	after, err := fx.srv.Store.DumpReadModels(ctx)
	if err != nil {
		t.Fatalf("dump read models: %v", err)
	}
	if after != before {
		t.Fatalf("%s changed the read models:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

// fuzzLog keeps the server's warnings and errors of the current input,
// shown when it fails (a fuzz function may not log to the *testing.F).
type fuzzLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *fuzzLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 1<<16 {
		l.buf.Write(p)
	}
	return len(p), nil
}

// take returns and forgets what was logged.
func (l *fuzzLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	l.buf.Reset()
	return s
}

// check is the property every fuzz request holds: an answer below 500,
// and nothing stored when it is a refusal (or when the route is a read).
func (fx *fuzzFixture) check(t *testing.T, method, path string, cred fuzzCred, body []byte, readOnly bool) int {
	t.Helper()
	before := fx.snapshot(t)
	fx.log.take()
	what := fmt.Sprintf("%s %s with body %q", method, path, body)
	status, raw, err := fx.do(method, path, cred, body)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if status >= 500 {
		t.Fatalf("%s: status %d, body %s\nserver log:\n%s", what, status, raw, fx.log.take())
	}
	if status >= 300 || readOnly {
		fx.unchanged(t, before, fmt.Sprintf("%s (status %d, answer %s)", what, status, raw))
	}
	return status
}
