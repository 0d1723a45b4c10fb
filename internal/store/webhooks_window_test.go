package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestFanOutWindow: no webhook ever has more than the window of undone
// deliveries, however many events come while its receiver is dead; once
// its queue drains, every event it missed is queued, and in the end each
// webhook has had every matching event exactly once, in event order,
// whatever the batch sizes and the order deliveries finish in. A webhook
// that keeps up is never held back by one that does not.
func TestFanOutWindow(t *testing.T) {
	const window = 4
	for _, b := range testenv.Backends(t) {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed-%d", b, seed), func(t *testing.T) {
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(seed, 7))
				w := newHookWorld(t, b)
				w.tenant("acme")
				w.tenant("beta")
				live := w.hook("acme", []string{"*"}, true)
				dead := w.hook("acme", []string{"*"}, true)
				added := w.hook("acme", []string{"ResidentAdded"}, true)
				other := w.hook("beta", []string{"*"}, true)

				want := map[string][]string{}
				version := map[int64]int{}
				record := func(org string, id int64, typ string) {
					version[id]++
					k := fmt.Sprintf("lock/%d v%d %s", id, version[id], typ)
					hooks := map[string][]string{"acme": {live, dead}, "beta": {other}}[org]
					if typ == "ResidentAdded" && org == "acme" {
						hooks = append(hooks, added)
					}
					for _, h := range hooks {
						want[h] = append(want[h], k)
					}
				}
				newLock := func(org string, id int64) {
					w.lock(org, id)
					version[id] = 1 // LockCreated, before the lock is the tenant's: not sent
					record(org, id, "OrganizationSet")
				}
				toggle := func(org string, id int64) {
					typ := "ResidentAdded"
					if w.on[id] {
						typ = "ResidentRemoved"
					}
					w.toggle(org, id)
					record(org, id, typ)
				}
				for id := int64(1); id <= 3; id++ {
					newLock("acme", id)
				}
				newLock("beta", 9)

				// deliver finishes up to n claimable deliveries, none of
				// the targets in skip.
				deliver := func(n int, skip ...string) int {
					t.Helper()
					cs, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, n, store.ClaimOptions{Ordered: true, Exclude: skip})
					w.must("claim", err)
					for _, c := range cs {
						w.must("finish", w.st.Finish(ctx, c, "node", store.Outcome{Status: store.StatusDelivered, At: w.clock()}))
					}
					return len(cs)
				}
				pending := func(id string) int {
					t.Helper()
					ds, err := w.st.WebhookDeliveries(ctx, id, 0, 1000, store.StatusPending)
					w.must("deliveries", err)
					return len(ds)
				}
				parked := 0
				for step := range 120 {
					switch r := rng.IntN(10); {
					case r < 5:
						toggle("acme", int64(1+rng.IntN(3)))
					case r < 6:
						toggle("beta", 9)
					case r < 8:
						_, _, p, err := w.st.FanOutWebhooks(ctx, w.clock(), 1+rng.IntN(5), window, rng.IntN(3) > 0)
						w.must("fan out", err)
						parked = max(parked, p)
					default:
						deliver(1+rng.IntN(6), dead) // the dead receiver answers nothing
					}
					for _, h := range []string{live, dead, added, other} {
						if n := pending(h); n > window {
							t.Fatalf("step %d: webhook %s has %d undone deliveries, window %d", step, h[:8], n, window)
						}
					}
				}
				if parked == 0 {
					t.Fatal("no webhook was ever parked: the test did not test the window")
				}
				// The live webhooks are not held back by the dead one:
				// with the dead receiver still dead, they get everything.
				for i := 0; ; i++ {
					_, q, _, err := w.st.FanOutWebhooks(ctx, w.clock(), 5, window, true)
					w.must("fan out", err)
					if d := deliver(100, dead); q == 0 && d == 0 {
						break
					}
					if i > 1000 {
						t.Fatal("the live webhooks never caught up")
					}
				}
				for _, h := range []string{live, added, other} {
					if diff := cmp.Diff(want[h], keys(w.rows(h))); diff != "" {
						t.Errorf("webhook %s beside a dead one (-want +got):\n%s", h[:8], diff)
					}
				}
				if got := len(w.rows(dead)); got > window || got == len(want[dead]) {
					t.Fatalf("the dead webhook has %d rows queued of %d events, window %d", got, len(want[dead]), window)
				}
				// The receiver comes back: everything it missed arrives,
				// once each, in order.
				for i := 0; ; i++ {
					_, q, p, err := w.st.FanOutWebhooks(ctx, w.clock(), 5, window, true)
					w.must("fan out", err)
					if d := deliver(100); q == 0 && p == 0 && d == 0 {
						break
					}
					if pending(dead) > window {
						t.Fatalf("dead webhook over its window while catching up: %d", pending(dead))
					}
					if i > 1000 {
						t.Fatalf("the dead webhook never caught up: queued %d parked %d pending %d", q, p, pending(dead))
					}
				}
				for _, h := range []string{live, dead, added, other} {
					if diff := cmp.Diff(want[h], keys(w.rows(h))); diff != "" {
						t.Errorf("webhook %s (-want +got):\n%s", h[:8], diff)
					}
					for _, d := range w.rows(h) {
						if d.Status != store.StatusDelivered {
							t.Errorf("webhook %s: delivery %d is %s", h[:8], d.ID, d.Status)
						}
					}
				}
			})
		}
	}
}

// TestFanOutWindowDelete: deleting a parked webhook forgets what it was
// parked with; the others go on.
func TestFanOutWindowDelete(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			w.tenant("acme")
			dead := w.hook("acme", []string{"*"}, true)
			w.lock("acme", 1)
			for range 5 {
				w.toggle("acme", 1)
			}
			_, q, p, err := w.st.FanOutWebhooks(ctx, w.clock(), 100, 2, true)
			w.must("fan out", err)
			if q != 2 || p != 1 {
				t.Fatalf("fan-out with a window of 2: queued %d, parked %d; want 2, 1", q, p)
			}
			_, err = w.svc.DeleteWebhook(ctx, app.Call{P: hookAdmin}, "acme", dead)
			w.must("delete", err)
			w.toggle("acme", 1)
			_, q, p, err = w.st.FanOutWebhooks(ctx, w.clock(), 100, 2, true)
			w.must("fan out", err)
			if q != 0 || p != 0 {
				t.Fatalf("after the delete: queued %d, parked %d; want 0, 0", q, p)
			}
			for _, d := range w.rows(dead) {
				if d.Status != store.StatusSkipped {
					t.Errorf("delivery %d of the deleted webhook is %s", d.ID, d.Status)
				}
			}
		})
	}
}

// TestClaimPerTarget: a claim with PerTarget takes at most that many rows
// of one target, the oldest, and still fills up from other targets.
func TestClaimPerTarget(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			w.tenant("acme")
			h1 := w.hook("acme", []string{"*"}, true)
			h2 := w.hook("acme", []string{"*"}, true)
			for id := int64(1); id <= 6; id++ {
				w.lock("acme", id)
			}
			w.fanOut(100)
			claim := func(node string, opt store.ClaimOptions) map[string][]int64 {
				t.Helper()
				cs, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, node, w.clock(), time.Minute, 10, opt)
				w.must("claim", err)
				per := map[string][]int64{}
				for _, c := range cs {
					per[c.Target] = append(per[c.Target], c.ID)
				}
				return per
			}
			got := claim("node-a", store.ClaimOptions{Ordered: true, PerTarget: 2})
			if len(got[h1]) != 2 || len(got[h2]) != 2 || len(got) != 2 {
				t.Fatalf("claim of 10 with PerTarget 2 from 6 heads of each of 2 webhooks: %v", got)
			}
			rows := map[string][]int64{}
			for _, h := range []string{h1, h2} {
				for _, d := range w.rows(h) {
					rows[h] = append(rows[h], d.ID)
				}
				if diff := cmp.Diff(rows[h][:2], got[h]); diff != "" {
					t.Errorf("webhook %s: not its oldest rows (-want +got):\n%s", h[:8], diff)
				}
			}
			// Without a cap the rest goes in one claim.
			rest := claim("node-b", store.ClaimOptions{Ordered: true})
			if n := len(rest[h1]) + len(rest[h2]); n != 8 {
				t.Errorf("uncapped claim took %d of the 8 rows left: %v", n, rest)
			}
		})
	}
}
