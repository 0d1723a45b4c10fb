package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestLeaseOnDatabaseClock (PostgreSQL): leases are set and compared on
// the database's clock. A node whose clock runs ten minutes ahead neither
// claims a row another node holds for a minute, nor drops it as not in
// flight; the holder finishes it. With a skew the other way, a node's
// lease still ends a minute after the database's now.
func TestLeaseOnDatabaseClock(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("PostgreSQL not configured")
	}
	ctx := context.Background()
	w := newHookWorld(t, testenv.Postgres)
	w.tenant("acme")
	h := w.hook("acme", []string{"*"}, true)
	w.lock("acme", 1)
	w.fanOut(100)
	real := time.Now()
	held, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node-a", real, time.Minute, 1, store.ClaimOptions{Ordered: true})
	w.must("claim", err)
	if len(held) != 1 || held[0].Target != h {
		t.Fatalf("claimed %+v", held)
	}
	ahead := real.Add(10 * time.Minute)
	if got, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node-b", ahead, time.Minute, 10, store.ClaimOptions{}); err != nil || slices.ContainsFunc(got, func(c store.Claim) bool { return c.ID == held[0].ID }) {
		t.Fatalf("a node ten minutes ahead claimed a row held until a minute from now: %+v %v", got, err)
	}
	w.must("drop", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := tx.DropWebhookRows(ctx, h, "webhook deleted", ahead, 0)
		return err
	}))
	if err := w.st.Finish(ctx, held[0], "node-a", store.Outcome{Status: store.StatusDelivered, At: real, StatusCode: 200}); err != nil {
		t.Fatalf("the holder lost its lease to a skewed clock: %v", err)
	}
	d, _, err := w.st.Delivery(ctx, held[0].ID)
	w.must("delivery", err)
	if d.Status != store.StatusDelivered {
		t.Errorf("held row %+v, want delivered", d)
	}

	// A node ten minutes behind: its lease is a minute of database time,
	// not already over (it would be, on its own clock, to everyone else).
	w.toggle("acme", 1)
	w.fanOut(100)
	behind, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node-c", real.Add(-10*time.Minute), time.Minute, 1, store.ClaimOptions{Ordered: true})
	w.must("claim", err)
	if len(behind) != 1 {
		t.Fatalf("claimed %+v", behind)
	}
	if got, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node-d", time.Now(), time.Minute, 10, store.ClaimOptions{}); err != nil || slices.ContainsFunc(got, func(c store.Claim) bool { return c.ID == behind[0].ID }) {
		t.Fatalf("a row leased by a node whose clock is behind was claimed again at once: %+v %v", got, err)
	}
}
