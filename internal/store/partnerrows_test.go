package store_test

import (
	"context"
	"testing"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// lockRows counts the partner rows ever queued about locks.
func lockRows(t *testing.T, st *store.Store) int {
	t.Helper()
	n, err := store.RowsOf(context.Background(), st, es.ConsumerWebhooks, lock.AggregateType)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPartnerRowsOnlyWithAWebhook: an event of a tenant without a webhook
// queues no partner row; from a webhook's creation on, every event of its
// tenant does (and the fan-out delivers it), other tenants' still none;
// after the tenant's last webhook is deleted, none again.
func TestPartnerRowsOnlyWithAWebhook(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			w := newHookWorld(t, b)
			ctx := context.Background()
			w.tenant("acme")
			w.tenant("beta")
			w.lock("acme", 1)
			w.lock("beta", 2)
			w.toggle("acme", 1)
			if n := lockRows(t, w.st); n != 0 {
				t.Fatalf("%d partner rows queued for tenants without webhooks, want 0", n)
			}
			id := w.hook("acme", []string{"*"}, true)
			w.toggle("acme", 1) // v4 ResidentRemoved
			w.toggle("beta", 2)
			if n := lockRows(t, w.st); n != 1 {
				t.Fatalf("%d partner rows, want 1 (acme's event after its webhook)", n)
			}
			w.fanOut(10)
			if got := keys(w.rows(id)); len(got) != 1 || got[0] != "lock/1 v4 ResidentRemoved" {
				t.Errorf("deliveries of acme's webhook: %v, want [lock/1 v4 ResidentRemoved]", got)
			}
			if _, err := w.svc.DeleteWebhook(ctx, app.Call{P: hookAdmin}, "acme", id); err != nil {
				t.Fatal(err)
			}
			w.toggle("acme", 1)
			if n := lockRows(t, w.st); n != 1 {
				t.Errorf("%d partner rows after the webhook was deleted, want still 1", n)
			}
		})
	}
}

// TestPartnerRowsAcrossNodes: a webhook created or deleted on one node is
// seen by the very next append on the other, whose answer comes after:
// the check is in the appending transaction, not in a node's memory.
func TestPartnerRowsAcrossNodes(t *testing.T) {
	a, b, _, _ := twoNodes(t)
	wa, wb := hookWorldOn(t, a), hookWorldOn(t, b)
	wa.tenant("acme")
	wa.lock("acme", 1)
	wb.residents = wa.residents
	ctx := context.Background()
	want := 0
	for round := range 20 {
		id := wb.hook("acme", []string{"*"}, round%2 == 0)
		wa.toggle("acme", 1)
		want++
		if n := lockRows(t, a); n != want {
			t.Fatalf("round %d: %d partner rows after a webhook was created on the other node, want %d", round, n, want)
		}
		if _, err := wb.svc.DeleteWebhook(ctx, app.Call{P: hookAdmin}, "acme", id); err != nil {
			t.Fatal(err)
		}
		wa.toggle("acme", 1)
		if n := lockRows(t, a); n != want {
			t.Fatalf("round %d: %d partner rows after the webhook was deleted on the other node, want %d", round, n, want)
		}
	}
}
