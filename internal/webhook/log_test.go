package webhook_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// TestDeliveryLog: the admin's and the partner's delivery log show every
// delivery with its attempts (status code, latency, error, time), newest
// first, in cursor pages and filtered by status; one delivery redelivered
// reaches the receiver again under the same envelope id, and a replay
// since a time re-sends exactly the events recorded since then, in order.
func TestDeliveryLog(t *testing.T) {
	const lockID = 71
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			var refused atomic.Bool
			rcv.Answer(func(_ int, q request) (int, http.Header) {
				// Version 4 is refused once: its redelivery goes through.
				if q.Env.Detail.Version == 4 && refused.CompareAndSwap(false, true) {
					return http.StatusBadRequest, nil
				}
				return http.StatusOK, nil
			})
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{}))
			p := newPartner(t, srv, "acme")
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			p.Lock(lockID)
			for range 5 {
				p.Toggle(lockID)
			}
			want, types := p.Expected(lockID)
			log := p.LogDone(id, len(want))
			if len(want) != 6 {
				t.Fatalf("lock events: %v", types)
			}

			// Newest first, one entry per event, attempts as sent.
			for i, d := range log {
				e := len(want) - 1 - i
				if d.EventID != want[e] || d.EventType != types[e] || d.AggregateType != "lock" || d.AggregateID != strconv.Itoa(lockID) || d.Version != eventVersion(t, lockID, want[e]) {
					t.Errorf("log entry %d: %+v, want event %s (%s)", i, d, want[e], types[e])
				}
				if i > 0 && d.ID >= log[i-1].ID {
					t.Errorf("log not newest first: %d after %d", d.ID, log[i-1].ID)
				}
				if len(d.Attempts) != 1 {
					t.Fatalf("entry %+v: want one attempt", d)
				}
				a := d.Attempts[0]
				if _, err := time.Parse(domain.TimeLayout, a.At); err != nil || a.LatencyMS < 0 || a.StatusCode == nil {
					t.Errorf("attempt %+v", a)
				}
				switch {
				case d.Version == 4:
					if d.Status != "failed" || *a.StatusCode != 400 || a.Outcome != "failed" || a.Error == nil || !strings.Contains(*a.Error, "400") {
						t.Errorf("refused delivery: %+v %+v", d, a)
					}
				case d.Status != "delivered" || *a.StatusCode != 200 || a.Outcome != "delivered" || a.Error != nil:
					t.Errorf("delivery: %+v %+v", d, a)
				}
			}
			var mine deliveryLog
			p.must(http.StatusOK, "GET", "/webhooks/"+id+"/deliveries?limit=100", keyHdr(p.key), nil).Into(t, &mine)
			if diff := cmp.Diff(log, mine.Deliveries); diff != "" || mine.NextCursor != nil {
				t.Errorf("partner's log differs from the admin's (-admin +partner):\n%s", diff)
			}

			// Cursor pages.
			page1 := p.Log(id, "?limit=4")
			if len(page1.Deliveries) != 4 || page1.NextCursor == nil {
				t.Fatalf("first page: %+v", page1)
			}
			var page2 deliveryLog
			p.must(http.StatusOK, "GET", "/webhooks/"+id+"/deliveries?limit=4&cursor="+*page1.NextCursor, keyHdr(p.key), nil).Into(t, &page2)
			if page2.NextCursor != nil {
				t.Errorf("last page has a cursor: %s", *page2.NextCursor)
			}
			if diff := cmp.Diff(log, append(page1.Deliveries, page2.Deliveries...)); diff != "" {
				t.Errorf("pages (-whole +pages):\n%s", diff)
			}

			// Status filter.
			failed := p.Log(id, "?status=failed").Deliveries
			if len(failed) != 1 || failed[0].Version != 4 {
				t.Errorf("failed deliveries: %+v", failed)
			}
			if n := len(p.Log(id, "?status=delivered").Deliveries); n != len(want)-1 {
				t.Errorf("%d delivered, want %d", n, len(want)-1)
			}
			if n := len(p.Log(id, "?status=pending").Deliveries); n != 0 {
				t.Errorf("%d pending, want 0", n)
			}
			if r := p.do("GET", "/tenants/acme/webhooks/"+id+"/deliveries?status=lost", adminHdr(), nil); r.Status < 400 || r.Status >= 500 {
				t.Errorf("unknown status filter: %d %s", r.Status, r.Raw)
			}

			// Redeliver: the admin one delivered event, the partner the
			// refused one.
			before := len(rcv.Delivered())
			var again deliveryEntry
			p.must(http.StatusAccepted, "POST", "/tenants/acme/webhooks/"+id+"/deliveries/"+strconv.FormatInt(log[len(log)-1].ID, 10)+"/redeliver", adminHdr(), nil).Into(t, &again)
			if again.ID <= log[0].ID || again.EventID != want[0] || again.Status != "pending" {
				t.Errorf("redelivery: %+v", again)
			}
			p.must(http.StatusAccepted, "POST", "/webhooks/"+id+"/deliveries/"+strconv.FormatInt(failed[0].ID, 10)+"/redeliver", keyHdr(p.key), nil).Into(t, &again)
			eventually(t, wait, "the redeliveries", func() bool { return len(rcv.Delivered()) == before+2 })
			if diff := cmp.Diff([]string{want[0], failed[0].EventID}, ids(rcv.Delivered()[before:])); diff != "" {
				t.Errorf("redelivered envelope ids (-want +got):\n%s", diff)
			}
			if d := p.LogDone(id, len(want)+2)[0]; d.Status != "delivered" || d.EventID != failed[0].EventID || len(d.Attempts) != 1 {
				t.Errorf("redelivery of the refused event: %+v", d)
			}
			if r := p.do("POST", "/tenants/acme/webhooks/"+id+"/deliveries/999999/redeliver", adminHdr(), nil); r.Status != http.StatusNotFound {
				t.Errorf("redeliver an unknown delivery: %d %s", r.Status, r.Raw)
			}

			// Replay since the time of the third event: exactly the events
			// recorded since, in order.
			since := log[len(log)-3].EventTime
			recs, err := srv.Store.Stream(context.Background(), lock.AggregateType, strconv.Itoa(lockID), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var replayed []string
			for _, r := range recs {
				if r.OrgID == "acme" && r.Timestamp >= since {
					replayed = append(replayed, webhook.EventID(r))
				}
			}
			if len(replayed) < 4 || len(replayed) == len(want) {
				t.Fatalf("replay since %s would send %d of %d events", since, len(replayed), len(want))
			}
			before = len(rcv.Delivered())
			got := p.must(http.StatusAccepted, "POST", "/webhooks/"+id+"/replay", keyHdr(p.key), map[string]any{"since": since}).Obj(t)
			if got["queued"] != float64(len(replayed)) {
				t.Errorf("replay answered %v, want %d queued", got, len(replayed))
			}
			eventually(t, wait, "the replayed events", func() bool { return len(rcv.Delivered()) == before+len(replayed) })
			if diff := cmp.Diff(replayed, ids(rcv.Delivered()[before:])); diff != "" {
				t.Errorf("replayed envelope ids (-want +got):\n%s", diff)
			}
			p.LogDone(id, len(want)+2+len(replayed))
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			if r := p.do("POST", "/tenants/acme/webhooks/"+id+"/replay", adminHdr(), map[string]any{"since": future}); r.Status != http.StatusBadRequest {
				t.Errorf("replay from the future: %d %s", r.Status, r.Raw)
			}
			if n := len(rcv.Events()); n != len(want)+2+len(replayed) {
				t.Errorf("receiver got %d requests in all, want %d", n, len(want)+2+len(replayed))
			}
		})
	}
}

// eventVersion returns the version of lock lockID whose envelope id is
// eid.
func eventVersion(t testing.TB, lockID int64, eid string) int64 {
	t.Helper()
	for v := int64(1); v < 100; v++ {
		if eventID(lockID, v) == eid {
			return v
		}
	}
	t.Fatalf("no version of lock %d has envelope id %s", lockID, eid)
	return 0
}
