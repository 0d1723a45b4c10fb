package webhook_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// TestSlowReceiverIsolation: a receiver that never answers holds at most
// PerTarget of the dispatcher's connections; another tenant's events and
// verifications go through meanwhile, within a few seconds.
func TestSlowReceiverIsolation(t *testing.T) {
	const fast = 3 * time.Second
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			// The server first: its cleanup (stopping the dispatcher) must
			// come after the slow handlers are let go.
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{Webhooks: webhook.Config{Timeout: time.Minute}}))
			slow, quick, quick2 := newReceiver(t, false), newReceiver(t, false), newReceiver(t, false)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var inflight, most atomic.Int32
			slow.Answer(func(int, request) (int, http.Header) {
				n := inflight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				defer inflight.Add(-1)
				<-release
				return http.StatusOK, nil
			})
			sp, fp := newPartner(t, srv, "slowco"), newPartner(t, srv, "fastco")
			sp.ActiveHook(map[string]any{"url": slow.URL("/")})
			fp.ActiveHook(map[string]any{"url": quick.URL("/")})
			for l := int64(91); l <= 96; l++ {
				sp.Lock(l)
			}
			eventually(t, wait, "the slow receiver to hold its connections", func() bool { return inflight.Load() == webhook.DefaultPerTarget })

			start := time.Now()
			fp.Lock(99)
			eventually(t, fast, "the other tenant's event", func() bool { return len(quick.Delivered()) == 1 })
			id2, _ := fp.CreateHook(map[string]any{"url": quick2.URL("/")})
			eventually(t, fast, "the other tenant's new webhook to be verified", func() bool { return fp.Hook(id2).Status == "active" })
			t.Logf("other tenant served in %s while the slow receiver held %d requests", time.Since(start), inflight.Load())
			if n := inflight.Load(); n != webhook.DefaultPerTarget {
				t.Errorf("slow receiver holds %d requests, want %d", n, webhook.DefaultPerTarget)
			}
			if m := most.Load(); m > webhook.DefaultPerTarget {
				t.Errorf("slow receiver had %d requests at once, more than PerTarget %d", m, webhook.DefaultPerTarget)
			}
			if n := len(slow.Requests()); n != 1 { // its verification only
				t.Errorf("slow receiver answered %d requests, want 1", n)
			}
		})
	}
}

// TestUnsafeURLsRefused: under the default outbound policy (https to public
// addresses only) a webhook for an http URL or a loopback https URL is
// refused with 400 and the error envelope, and nothing is stored.
func TestUnsafeURLsRefused(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{Safety: &netsafe.Policy{}})
			p := newPartner(t, srv, "acme")
			ctx := context.Background()
			before, err := srv.Store.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"http://example.com/hook", "https://127.0.0.1/hook", "https://[::1]:8443/hook", "https://10.1.2.3/hook"} {
				r := p.do("POST", "/tenants/acme/webhooks", adminHdr(), map[string]any{"url": u, "events": []string{"*"}})
				var e struct {
					Success *bool  `json:"success"`
					Error   string `json:"error"`
					Message string `json:"message"`
					Code    int    `json:"code"`
					Details []struct {
						Field   string `json:"field"`
						Message string `json:"message"`
					} `json:"details"`
				}
				r.Into(t, &e)
				if r.Status != http.StatusBadRequest || e.Success == nil || *e.Success || e.Error != "Bad Request" || e.Code != 400 ||
					len(e.Details) != 1 || e.Details[0].Field != "url" || !strings.Contains(e.Message, "SPKEY_WEBHOOK_ALLOW_") {
					t.Errorf("create with %s: %d %s", u, r.Status, r.Raw)
				}
			}
			var list struct {
				Webhooks []any `json:"webhooks"`
				Total    int   `json:"total"`
			}
			p.must(http.StatusOK, "GET", "/tenants/acme/webhooks", adminHdr(), nil).Into(t, &list)
			if list.Total != 0 || len(list.Webhooks) != 0 {
				t.Errorf("refused webhooks were stored: %+v", list)
			}
			after, err := srv.Store.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Error("a refused webhook changed the read models")
			}
		})
	}
}
