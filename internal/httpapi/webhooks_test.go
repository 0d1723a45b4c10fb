package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// hookReceiver is a partner's webhook endpoint on loopback: it records
// every request and answers 200.
type hookReceiver struct {
	URL string
	mu  sync.Mutex
	got []hookRequest
}

// hookRequest is one request a hookReceiver got.
type hookRequest struct {
	Path   string
	Header http.Header
	Body   map[string]any
}

// newHookReceiver starts a receiver, closed at the end of the test. Start
// it before the server whose dispatcher calls it, so that it is closed
// after the dispatcher stops.
func newHookReceiver(t testing.TB) *hookReceiver {
	t.Helper()
	r := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		r.mu.Lock()
		r.got = append(r.got, hookRequest{Path: req.URL.Path, Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Requests returns what the receiver got so far, oldest first.
func (r *hookReceiver) Requests() []hookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookRequest(nil), r.got...)
}

// hookSettle waits until no webhook work is queued: every partner event
// fanned out, every delivery and verification done (verifications
// recorded).
func hookSettle(t testing.TB, srv *testenv.Server) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var busy []es.OutboxRow
		for _, c := range []string{es.ConsumerWebhooks, es.ConsumerWebhookSend, es.ConsumerWebhookVerify} {
			rows, err := srv.Store.Outbox(context.Background(), c, 10)
			if err != nil {
				t.Fatalf("read %s queue: %v", c, err)
			}
			busy = append(busy, rows...)
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook work still queued after 15s: %+v", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hookState is what the webhook tables hold beside the events: each
// webhook's deliveries ("id status attempts") and secrets, by webhook id,
// and how many requests the receiver got.
type hookState struct {
	Received int
	Hooks    map[string]hookRows
}

type hookRows struct {
	Deliveries []string
	Secrets    store.WebhookSecrets
}

// hookSnapshot pictures the webhooks of orgs (registered tenants).
func hookSnapshot(t testing.TB, srv *testenv.Server, rcv *hookReceiver, orgs ...string) hookState {
	t.Helper()
	ctx := context.Background()
	st := hookState{Received: len(rcv.Requests()), Hooks: map[string]hookRows{}}
	for _, org := range orgs {
		hooks, _, err := srv.Svc.Webhooks(ctx, app.Principal{Admin: true}, org, 0, 0)
		if err != nil {
			t.Fatalf("webhooks of %s: %v", org, err)
		}
		for _, w := range hooks {
			ds, err := srv.Store.WebhookDeliveries(ctx, w.ID, 0, 100000, "")
			if err != nil {
				t.Fatalf("deliveries of %s: %v", w.ID, err)
			}
			var rows hookRows
			for _, d := range ds {
				rows.Deliveries = append(rows.Deliveries, fmt.Sprintf("%d %s %d", d.ID, d.Status, d.Attempts))
			}
			if rows.Secrets, _, err = srv.Store.WebhookSecrets(ctx, w.ID); err != nil {
				t.Fatalf("secrets of %s: %v", w.ID, err)
			}
			st.Hooks[w.ID] = rows
		}
	}
	return st
}

// hookUnchanged fails when the webhooks of before's orgs differ from
// before.
func hookUnchanged(t testing.TB, srv *testenv.Server, rcv *hookReceiver, before hookState, orgs ...string) {
	t.Helper()
	if diff := cmp.Diff(before, hookSnapshot(t, srv, rcv, orgs...)); diff != "" {
		t.Errorf("webhooks changed by a request that must not change them (-before +after):\n%s", diff)
	}
}
