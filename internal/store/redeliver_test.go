package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestRedeliverRecords: Redeliver refuses a second redelivery of an event
// to a webhook while the first is undone, and one beyond the tenant's
// limit in the last RateWindow (RetryAt: when the oldest leaves
// it), storing nothing either time; the retention job keeps a
// redelivery's record while its row is undone and for the window, and
// deletes it after.
func TestRedeliverRecords(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			t0 := w.clock()
			w.tenant("acme")
			h := w.hook("acme", []string{"*"}, true)
			w.lock("acme", 1)
			w.toggle("acme", 1)
			w.toggle("acme", 1)
			w.fanOut(100)
			rows := w.rows(h)
			if len(rows) != 3 {
				t.Fatalf("deliveries: %v", keys(rows))
			}
			redeliver := func(d store.DeliveryRow) error {
				return w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					_, err := tx.Redeliver(ctx, d, w.clock(), 2)
					return err
				})
			}
			dump := func() []string {
				return append(dumpOf(t, w, "outbox"), dumpOf(t, w, "webhook_redeliveries")...)
			}
			refused := func(what string, d store.DeliveryRow, check func(error) bool) {
				t.Helper()
				before := dump()
				if err := redeliver(d); !check(err) {
					t.Fatalf("%s: %v", what, err)
				}
				if diff := cmp.Diff(before, dump()); diff != "" {
					t.Errorf("%s stored (-before +after):\n%s", what, diff)
				}
			}

			w.must("redeliver", redeliver(rows[0]))
			refused("redeliver while undone", rows[0], func(err error) bool { return errors.Is(err, store.ErrRedeliveryPending) })
			w.at(t0.Add(time.Minute))
			w.must("redeliver another event", redeliver(rows[1]))
			w.at(t0.Add(2 * time.Minute))
			refused("third in the window", rows[2], func(err error) bool {
				var limited *store.RateLimitedError
				return errors.As(err, &limited) && limited.RetryAt.Equal(t0.Add(store.RateWindow))
			})
			w.at(t0.Add(store.RateWindow + time.Second))
			w.must("redeliver once the first left the window", redeliver(rows[2]))

			// Undone rows: their records stay, however old.
			r := store.Retention{Deliveries: time.Minute}
			w.at(t0.Add(3 * time.Hour))
			n, err := w.st.Prune(ctx, w.clock(), r, 2)
			w.must("prune", err)
			if n["webhook_redeliveries"] != 0 || len(dumpOf(t, w, "webhook_redeliveries")) != 3 {
				t.Fatalf("pruned %v; records left %v", n, dumpOf(t, w, "webhook_redeliveries"))
			}
			finishAll := func() {
				t.Helper()
				for {
					c, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Hour, 10, store.ClaimOptions{})
					w.must("claim", err)
					if len(c) == 0 {
						return
					}
					for _, c := range c {
						w.must("finish", w.st.Finish(ctx, c, "node", store.Outcome{Status: store.StatusDelivered, At: w.clock(), StatusCode: 200}))
					}
				}
			}
			// Every row delivered; a fourth, delivered too.
			finishAll()
			w.must("redeliver at 3h", redeliver(rows[0]))
			finishAll()
			// Done: the three older than the window go, the fourth stays.
			w.at(t0.Add(3*time.Hour + 30*time.Minute))
			n, err = w.st.Prune(ctx, w.clock(), r, 2)
			w.must("prune", err)
			if n["webhook_redeliveries"] != 3 || len(dumpOf(t, w, "webhook_redeliveries")) != 1 {
				t.Errorf("pruned %v; records left %v, want the one of the last hour", n, dumpOf(t, w, "webhook_redeliveries"))
			}
		})
	}
}
