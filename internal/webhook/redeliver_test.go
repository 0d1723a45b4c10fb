package webhook_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestRedeliverBounds: while a redelivery of an event to a webhook is
// undone (queued, then retrying against a receiver answering 503),
// another redelivery of that event to that webhook is 409 on both routes,
// whichever of its deliveries is named, and queues nothing; another
// event's redelivery is accepted; once the redelivery is delivered the
// event may be redelivered again; a tenant's redeliveries beyond the
// hourly limit are 429 with Retry-After on both routes and queue nothing,
// and another tenant is not held back.
func TestRedeliverBounds(t *testing.T) {
	const lockID = 81
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			var holding atomic.Bool
			rcv.Answer(func(int, request) (int, http.Header) {
				if holding.Load() {
					return http.StatusServiceUnavailable, nil // retried: the row stays undone
				}
				return http.StatusOK, nil
			})
			srv := testenv.NewServer(t, b, testenv.Options{RedeliveriesPerHour: 4})
			p := newPartner(t, srv, "acme")
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			p.Lock(lockID)
			p.Toggle(lockID)
			want, _ := p.Expected(lockID)
			log := p.LogDone(id, len(want))
			n := len(want)
			// The log is newest first: first and second are two events.
			first, second := log[len(log)-1], log[len(log)-2]
			mine := func(d int64) string { return fmt.Sprintf("/webhooks/%s/deliveries/%d/redeliver", id, d) }
			admin := func(d int64) string { return fmt.Sprintf("/tenants/acme/webhooks/%s/deliveries/%d/redeliver", id, d) }
			refused := func(what string, status int, path string, hdr map[string]string, message string) reply {
				t.Helper()
				r := p.do("POST", path, hdr, nil)
				if r.Status != status {
					t.Fatalf("%s (%s): %d %s, want %d", what, path, r.Status, r.Raw, status)
				}
				if diff := cmp.Diff(map[string]any{"error": http.StatusText(status), "code": float64(status), "details": []any{}, "message": message}, r.Obj(t)); diff != "" {
					t.Errorf("%s (%s): envelope (-want +got):\n%s", what, path, diff)
				}
				return r
			}

			// Hold the receiver; redeliver the first event.
			holding.Store(true)
			var again deliveryEntry
			p.must(http.StatusAccepted, "POST", mine(first.ID), keyHdr(p.key), nil).Into(t, &again)
			if again.EventID != first.EventID || again.Status != "pending" {
				t.Fatalf("redelivery: %+v of %+v", again, first)
			}
			n++
			conflict := "A redelivery of this event to this webhook is still pending: wait until it is done (see the delivery log), then redeliver again"
			check := func(when string) {
				t.Helper()
				for _, d := range []int64{first.ID, again.ID} {
					refused("redeliver "+when, http.StatusConflict, mine(d), keyHdr(p.key), conflict)
					refused("redeliver "+when, http.StatusConflict, admin(d), adminHdr(), conflict)
				}
				if l := p.AllLog(id); len(l) != n {
					t.Fatalf("refused redeliveries (%s) queued: %d deliveries, want %d", when, len(l), n)
				}
			}
			check("while it is queued")
			// Retrying: the receiver answered 503 at least once.
			eventually(t, wait, "a 503 answer to the redelivery", func() bool {
				for _, d := range p.AllLog(id) {
					if d.ID == again.ID && len(d.Attempts) > 0 && d.Status == "pending" {
						return true
					}
				}
				return false
			})
			check("while it is retrying")

			// Another event of the webhook is not held back.
			p.must(http.StatusAccepted, "POST", admin(second.ID), adminHdr(), nil)
			n++

			// Delivered: the first event may be redelivered again, on either
			// route (3 and 4 of the hour's 4).
			holding.Store(false)
			p.LogDone(id, n)
			p.must(http.StatusAccepted, "POST", admin(first.ID), adminHdr(), nil)
			n++
			p.LogDone(id, n)
			p.must(http.StatusAccepted, "POST", mine(again.ID), keyHdr(p.key), nil)
			n++
			p.LogDone(id, n)

			// The fifth in an hour: 429 on both routes, nothing queued.
			for _, r := range []struct {
				path string
				hdr  map[string]string
			}{{mine(second.ID), keyHdr(p.key)}, {admin(second.ID), adminHdr()}} {
				resp := p.do("POST", r.path, r.hdr, nil)
				if resp.Status != http.StatusTooManyRequests {
					t.Fatalf("fifth redelivery in an hour (%s): %d %s, want 429", r.path, resp.Status, resp.Raw)
				}
				retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if err != nil || retry < 3000 || retry > 3600 {
					t.Errorf("Retry-After %q, want about an hour", resp.Header.Get("Retry-After"))
				}
				msg := fmt.Sprintf("At most 4 redeliveries per tenant per hour: try again in %d s", retry)
				if diff := cmp.Diff(map[string]any{"error": "Too Many Requests", "code": float64(429), "details": []any{}, "message": msg}, resp.Obj(t)); diff != "" {
					t.Errorf("429 envelope (-want +got):\n%s", diff)
				}
			}
			if l := p.AllLog(id); len(l) != n {
				t.Fatalf("refused redeliveries queued: %d deliveries, want %d", len(l), n)
			}

			// The limit is the tenant's: another one still redelivers.
			q := newPartner(t, srv, "beta")
			qid, _ := q.ActiveHook(map[string]any{"url": rcv.URL("/")})
			q.Lock(lockID + 1)
			qwant, _ := q.Expected(lockID + 1)
			ql := q.LogDone(qid, len(qwant))
			q.must(http.StatusAccepted, "POST", fmt.Sprintf("/webhooks/%s/deliveries/%d/redeliver", qid, ql[0].ID), keyHdr(q.key), nil)
			q.LogDone(qid, len(qwant)+1)
		})
	}
}
