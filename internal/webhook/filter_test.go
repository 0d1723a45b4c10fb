package webhook_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestOutboundAuth: apiKeyHeader sends the configured header and value,
// bearerToken an Authorization: Bearer header, on the verification POST
// and on every event; neither leaks into the other.
func TestOutboundAuth(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			keyed, bearer := newReceiver(t, false), newReceiver(t, false)
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{}))
			p := newPartner(t, srv, "acme")
			keyedID, _ := p.ActiveHook(map[string]any{"url": keyed.URL("/k"), "authType": "apiKeyHeader", "authHeader": "X-Partner-Token", "authValue": "tok-123"})
			bearerID, _ := p.ActiveHook(map[string]any{"url": bearer.URL("/b"), "authType": "bearerToken", "authValue": "bearer-456"})
			for id, typ := range map[string]string{keyedID: "apiKeyHeader", bearerID: "bearerToken"} {
				if got := p.Hook(id).AuthType; got != typ {
					t.Errorf("webhook %s authType %q, want %q", id, got, typ)
				}
			}
			p.Lock(1)
			p.Toggle(1)
			want, _ := p.Expected(1)
			for _, r := range []*receiver{keyed, bearer} {
				eventually(t, wait, "the events at "+r.URL(""), func() bool { return len(r.Delivered()) == len(want) })
			}
			for _, q := range keyed.Requests() {
				if got := q.Header.Values("X-Partner-Token"); !slices.Equal(got, []string{"tok-123"}) || q.Header.Get("Authorization") != "" {
					t.Errorf("apiKeyHeader request %s: X-Partner-Token %q, Authorization %q", q.ID(), got, q.Header.Get("Authorization"))
				}
			}
			for _, q := range bearer.Requests() {
				if got := q.Header.Values("Authorization"); !slices.Equal(got, []string{"Bearer bearer-456"}) || q.Header.Get("X-Partner-Token") != "" {
					t.Errorf("bearerToken request %s: Authorization %q", q.ID(), got)
				}
			}
			if len(keyed.Verifications()) != 1 || len(bearer.Verifications()) != 1 {
				t.Errorf("verifications: %d and %d, want one each", len(keyed.Verifications()), len(bearer.Verifications()))
			}
		})
	}
}

// TestEventFilter: a webhook subscribed to some types gets only those;
// after PUT events ["*"] it gets every type.
func TestEventFilter(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			only, created, all := newReceiver(t, false), newReceiver(t, false), newReceiver(t, false)
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{}))
			p := newPartner(t, srv, "acme")
			onlyID, _ := p.ActiveHook(map[string]any{"url": only.URL("/"), "events": []string{"ResidentAdded"}})
			createdID, _ := p.ActiveHook(map[string]any{"url": created.URL("/"), "events": []string{"LockCreated"}})
			allID, _ := p.ActiveHook(map[string]any{"url": all.URL("/"), "events": []string{"*"}})
			p.Lock(1)
			p.Toggle(1) // ResidentAdded
			p.Toggle(1) // ResidentRemoved
			p.Toggle(1) // ResidentAdded
			want, types := p.Expected(1)
			// The ["*"] webhook's log complete means the fan-out is over
			// for every webhook.
			p.LogDone(allID, len(want))
			var added, lockCreated []string
			for i, typ := range types {
				switch typ {
				case lock.TypeResidentAdded:
					added = append(added, want[i])
				case lock.TypeLockCreated:
					lockCreated = append(lockCreated, want[i])
				}
			}
			if len(added) != 2 {
				t.Fatalf("events of lock 1: %v", types)
			}
			eventually(t, wait, "the ResidentAdded events", func() bool { return len(only.Delivered()) == len(added) })
			if diff := cmp.Diff(added, ids(only.Events())); diff != "" {
				t.Errorf("filtered webhook got (-want +got):\n%s", diff)
			}
			if n := len(p.AllLog(onlyID)); n != len(added) {
				t.Errorf("filtered webhook has %d deliveries, want %d", n, len(added))
			}
			eventually(t, wait, "the LockCreated events", func() bool { return len(created.Delivered()) == len(lockCreated) })
			if diff := cmp.Diff(lockCreated, ids(created.Events()), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("LockCreated webhook got (-want +got):\n%s", diff)
			}

			p.must(http.StatusOK, "PUT", "/tenants/acme/webhooks/"+onlyID, adminHdr(), map[string]any{"events": []string{"*"}})
			if got := p.Hook(onlyID).Events; !slices.Equal(got, []string{"*"}) {
				t.Errorf("events after PUT: %v", got)
			}
			p.Toggle(1) // ResidentRemoved
			p.Lock(2)   // (LockCreated,) OrganizationSet
			later1, _ := p.Expected(1)
			later2, _ := p.Expected(2)
			later := append(later1[len(want):], later2...)
			eventually(t, wait, "every later event", func() bool { return len(only.Delivered()) == len(added)+len(later) })
			// Two locks: in order per lock, in any order between them.
			checkOrder(t, only.Events(), true)
			if diff := cmp.Diff(sorted(later), sorted(ids(only.Events())[len(added):])); diff != "" {
				t.Errorf("after PUT [\"*\"] (-want +got):\n%s", diff)
			}

			// Upstream's rule (spkey-api.md 3.7): a lock's events carry the
			// partner's id only once the lock is the org's. A lock created
			// with the key records LockCreated (no org yet), then
			// OrganizationSet: the LockCreated webhook gets nothing of it.
			recs, err := srv.Store.Stream(context.Background(), lock.AggregateType, "2", 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Type != lock.TypeLockCreated || recs[0].OrgID != "" {
				t.Fatalf("first event of lock 2: %+v", recs)
			}
			// The ["*"] webhook got lock 2's events: the fan-out is over.
			if n := len(created.Delivered()); n != len(lockCreated) {
				t.Errorf("LockCreated webhook got %d events, want %d", n, len(lockCreated))
			}
			if n := len(p.AllLog(createdID)); n != len(lockCreated) {
				t.Errorf("LockCreated webhook has %d deliveries, want %d", n, len(lockCreated))
			}
		})
	}
}
