package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// hookWorld is a store with tenants, webhooks and lock events recorded
// through the service at times the test sets; no dispatcher runs, so the
// test moves the partner queue itself.
type hookWorld struct {
	t   *testing.T
	st  *store.Store
	svc *app.Service

	mu  sync.Mutex
	now time.Time

	residents map[string]string // org -> a user id
	on        map[int64]bool
}

func newHookWorld(t *testing.T, b testenv.Backend) *hookWorld {
	return hookWorldOn(t, testenv.OpenStore(t, b))
}

// hookWorldOn is newHookWorld on an open, migrated store.
func hookWorldOn(t *testing.T, st *store.Store) *hookWorld {
	w := &hookWorld{t: t, st: st, now: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), residents: map[string]string{}, on: map[int64]bool{}}
	w.svc = app.New(w.st, app.Options{Now: w.clock, Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
	return w
}

func (w *hookWorld) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// at moves the clock.
func (w *hookWorld) at(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = t
}

func (w *hookWorld) must(what string, err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatalf("%s: %v", what, err)
	}
}

var hookAdmin = app.Principal{Admin: true, Email: "ops@example.com"}

func keyOf(org string) app.Principal { return app.Principal{Kind: app.TenantCaller, OrgID: org} }

// tenant registers org with a key and a user to use as resident.
func (w *hookWorld) tenant(org string) {
	w.t.Helper()
	ctx := context.Background()
	_, err := w.svc.RegisterTenant(ctx, app.Call{P: hookAdmin}, org, org, "")
	w.must("register "+org, err)
	_, err = w.svc.IssueKey(ctx, hookAdmin, app.IssueKeyInput{OrgID: org}, false)
	w.must("issue key", err)
	u, err := w.svc.FindOrCreate(ctx, keyOf(org), false, app.FindInput{Email: "resident@" + org + ".example"})
	w.must("resident", err)
	w.residents[org] = u.UserID
}

// hook creates a webhook of org with events; verified makes it active.
func (w *hookWorld) hook(org string, events []string, verified bool) string {
	w.t.Helper()
	ctx := context.Background()
	r, err := w.svc.CreateWebhook(ctx, app.Call{P: hookAdmin}, org, app.WebhookInput{URL: "http://127.0.0.1:9/" + org, Events: events})
	w.must("create webhook", err)
	if verified {
		w.must("verify", w.svc.RecordVerification(ctx, org, r.WebhookID, 1, 204, ""))
	}
	return r.WebhookID
}

// lock creates lock id for org (LockCreated, OrganizationSet).
func (w *hookWorld) lock(org string, id int64) {
	w.t.Helper()
	_, err := w.svc.CreateLock(context.Background(), app.Call{P: keyOf(org)}, id, app.CreateLockInput{Index: 1, UUID: fmt.Sprintf("%08d-1111-4111-8111-111111111111", id)})
	w.must("create lock", err)
}

// toggle adds org's resident to lock id, or removes them when present.
func (w *hookWorld) toggle(org string, id int64) {
	w.t.Helper()
	ctx := context.Background()
	u := w.residents[org]
	var err error
	if w.on[id] {
		_, err = w.svc.RemoveResident(ctx, app.Call{P: keyOf(org)}, id, app.ResidentInput{UserID: &u})
	} else {
		_, err = w.svc.AddResident(ctx, app.Call{P: keyOf(org)}, id, app.ResidentInput{Name: "Resident", UserID: &u})
	}
	w.must("toggle resident", err)
	w.on[id] = !w.on[id]
}

// fanOut runs the fan-out in batches of limit until the partner queue is
// empty and returns the totals.
func (w *hookWorld) fanOut(limit int) (handled, queued int) {
	return w.fanOutWindow(limit, 0)
}

// fanOutWindow is fanOut with each webhook's window of undone deliveries.
func (w *hookWorld) fanOutWindow(limit, window int) (handled, queued int) {
	w.t.Helper()
	ctx := context.Background()
	for {
		h, q, _, err := w.st.FanOutWebhooks(ctx, w.clock(), limit, window, true)
		w.must("fan out", err)
		if h > limit {
			w.t.Fatalf("fan-out handled %d rows, limit %d", h, limit)
		}
		handled, queued = handled+h, queued+q
		if h == 0 {
			left, err := w.st.Outbox(ctx, es.ConsumerWebhooks, 1)
			w.must("outbox", err)
			if len(left) > 0 {
				w.t.Fatalf("fan-out handled nothing with partner rows queued: %+v", left)
			}
			return handled, queued
		}
	}
}

// rows returns the deliveries of webhook id, oldest first.
func (w *hookWorld) rows(id string) []store.DeliveryRow {
	w.t.Helper()
	d, err := w.st.WebhookDeliveries(context.Background(), id, 0, 1000, "")
	w.must("deliveries", err)
	slices.Reverse(d)
	return d
}

// keys names deliveries as "type/id vN" for comparisons.
func keys(ds []store.DeliveryRow) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%s/%s v%d %s", d.AggregateType, d.AggID, d.Version, d.EventType)
	}
	return out
}

func claimKeys(cs []store.Claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s/%s v%d", c.Target[:8], c.AggregateType, c.AggregateID, c.Version)
	}
	slices.Sort(out)
	return out
}
