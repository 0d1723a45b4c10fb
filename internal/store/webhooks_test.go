package store_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestFanOutWebhooks: the partner queue becomes one delivery per event and
// matching subscription of the event's tenant, in version order per
// aggregate, whatever the batch size; filters hold, disabled webhooks get
// nothing, pending ones get their rows (held by the dispatcher), other
// tenants' webhooks nothing, and tenant events never.
func TestFanOutWebhooks(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			w := newHookWorld(t, b)
			w.tenant("acme")
			w.tenant("beta")
			all := w.hook("acme", []string{"*"}, true)
			added := w.hook("acme", []string{"ResidentAdded"}, false)
			gone := w.hook("acme", []string{"*"}, true)
			w.must("disable", w.svc.DisableWebhook(context.Background(), "acme", gone, 410, "gone", 0))
			other := w.hook("beta", []string{"*"}, true)

			w.lock("acme", 1)
			w.lock("beta", 2)
			w.toggle("acme", 1)
			w.lock("acme", 3)
			w.toggle("beta", 2)
			w.toggle("acme", 1)
			w.toggle("acme", 3)
			_, err := w.svc.UpdateWebhook(context.Background(), app.Call{P: hookAdmin}, "acme", all, app.WebhookInput{RotateSecret: true})
			w.must("rotate", err)
			w.toggle("acme", 1)

			handled, queued := w.fanOut(3)
			if handled == 0 {
				t.Fatal("nothing to fan out")
			}
			left, err := w.st.Outbox(context.Background(), es.ConsumerWebhooks, 10)
			w.must("outbox", err)
			if len(left) != 0 {
				t.Errorf("partner rows left: %+v", left)
			}
			wantAll := []string{
				"lock/1 v2 OrganizationSet", "lock/1 v3 ResidentAdded", "lock/3 v2 OrganizationSet",
				"lock/1 v4 ResidentRemoved", "lock/3 v3 ResidentAdded", "lock/1 v5 ResidentAdded",
			}
			if diff := cmp.Diff(wantAll, keys(w.rows(all))); diff != "" {
				t.Errorf("[\"*\"] webhook (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"lock/1 v3 ResidentAdded", "lock/3 v3 ResidentAdded", "lock/1 v5 ResidentAdded"}, keys(w.rows(added))); diff != "" {
				t.Errorf("pending ResidentAdded webhook (-want +got):\n%s", diff)
			}
			if got := w.rows(gone); len(got) != 0 {
				t.Errorf("disabled webhook got %v", keys(got))
			}
			if diff := cmp.Diff([]string{"lock/2 v2 OrganizationSet", "lock/2 v3 ResidentAdded"}, keys(w.rows(other))); diff != "" {
				t.Errorf("other tenant's webhook (-want +got):\n%s", diff)
			}
			if queued != 6+3+2 {
				t.Errorf("queued %d deliveries, want 11", queued)
			}
			for _, d := range append(w.rows(all), w.rows(other)...) {
				if d.Status != store.StatusPending || d.Attempts != 0 || d.AggregateType == tenant.AggregateType {
					t.Errorf("delivery %+v", d)
				}
			}
			if h, q := w.fanOut(3); h != 0 || q != 0 {
				t.Errorf("second fan-out handled %d, queued %d", h, q)
			}
		})
	}
}

// TestClaimOrdered: with Ordered only the oldest undone row of each target
// and aggregate can be claimed; a leased or retrying row holds the next
// one back, a finished one (delivered or failed) lets it go; Exclude
// leaves a target's rows alone; an unordered claim ignores the order.
func TestClaimOrdered(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			w.tenant("acme")
			h1 := w.hook("acme", []string{"*"}, true)
			h2 := w.hook("acme", []string{"ResidentAdded"}, true)
			w.lock("acme", 1)
			w.lock("acme", 2)
			w.toggle("acme", 1)
			w.toggle("acme", 1)
			w.toggle("acme", 1)
			w.fanOut(100)
			now := w.clock()
			ordered := store.ClaimOptions{Ordered: true}
			claim := func(node string, at time.Time, opt store.ClaimOptions) []store.Claim {
				t.Helper()
				cs, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, node, at, time.Minute, 100, opt)
				w.must("claim", err)
				return cs
			}
			n1, n2 := h1[:8], h2[:8]

			heads := claim("node-a", now, ordered)
			want := []string{n1 + " lock/1 v2", n1 + " lock/2 v2", n2 + " lock/1 v3"}
			slices.Sort(want)
			if diff := cmp.Diff(want, claimKeys(heads)); diff != "" {
				t.Fatalf("ordered claim (-want +got):\n%s", diff)
			}
			// Leased rows hold the rest back.
			if got := claim("node-b", now, ordered); len(got) != 0 {
				t.Errorf("claimed behind leased rows: %v", claimKeys(got))
			}
			// h2's head's lease runs out (leases run on the database's
			// clock on PostgreSQL: a later now alone would not end it).
			for _, c := range heads {
				if c.Target == h2 {
					w.must("end lease", store.EndLeases(w.st, c.ID))
				}
			}
			excluded := claim("node-b", now.Add(2*time.Minute), store.ClaimOptions{Ordered: true, Exclude: []string{h1}})
			if diff := cmp.Diff([]string{n2 + " lock/1 v3"}, claimKeys(excluded)); diff != "" {
				t.Errorf("claim excluding %s after the leases ran out (-want +got):\n%s", n1, diff)
			}
			byKey := map[string]store.Claim{}
			for _, c := range heads {
				byKey[claimKeys([]store.Claim{c})[0]] = c
			}
			finish := func(c store.Claim, node string, o store.Outcome) {
				t.Helper()
				w.must("finish", w.st.Finish(ctx, c, node, o))
			}
			// lock/1 v2 of h1 is retried later: v3 stays behind it.
			finish(byKey[n1+" lock/1 v2"], "node-a", store.Outcome{Status: store.OutcomeRetry, At: now, NextAttempt: now.Add(time.Hour)})
			if got := claim("node-a", now, ordered); len(got) != 0 {
				t.Errorf("claimed behind a retrying row: %v", claimKeys(got))
			}
			// Unordered claims do not care.
			unordered := claim("node-c", now, store.ClaimOptions{Exclude: []string{h2}})
			if !slices.Contains(claimKeys(unordered), n1+" lock/1 v3") {
				t.Errorf("unordered claim: %v", claimKeys(unordered))
			}
			for _, c := range unordered {
				w.must("end lease", store.EndLeases(w.st, c.ID))
			}
			for _, d := range w.rows(h1) {
				if d.Version == 2 && d.AggID == "1" {
					c := store.Claim{OutboxRow: es.OutboxRow{ID: d.ID, Target: h1}}
					// The retrying row: due at its time, then failed for good.
					got := claim("node-d", now.Add(time.Hour+2*time.Minute), store.ClaimOptions{Ordered: true, Exclude: []string{h2}})
					if !slices.Contains(claimKeys(got), n1+" lock/1 v2") {
						t.Fatalf("retrying row not due: %v", claimKeys(got))
					}
					finish(c, "node-d", store.Outcome{Status: store.StatusFailed, At: now.Add(time.Hour + 2*time.Minute), Error: "HTTP 400"})
				}
			}
			got := claim("node-e", now.Add(3*time.Hour), store.ClaimOptions{Ordered: true, Exclude: []string{h2}})
			if !slices.Contains(claimKeys(got), n1+" lock/1 v3") || slices.Contains(claimKeys(got), n1+" lock/1 v4") {
				t.Errorf("after the failed row: %v, want lock/1 v3 (not v4)", claimKeys(got))
			}
		})
	}
}

// TestWebhookRowsMaintenance: Redeliver queues one delivery again as a new
// row; a replay queues the tenant's matching events since a time, in order,
// in chunks, never tenant events, says when there are more than the limit,
// is refused while the webhook's last one has undone rows and beyond the
// tenant's rate;
// DropWebhookRows ends a webhook's undone rows (not the one named, nor
// those in flight, nor other webhooks'); ReleaseWebhookRows makes deferred, never tried rows
// due at once.
func TestWebhookRowsMaintenance(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			t0 := w.clock()
			w.tenant("acme")
			w.tenant("beta")
			h := w.hook("acme", []string{"*"}, false) // pending: its deliveries are held
			filtered := w.hook("acme", []string{"ResidentRemoved"}, true)
			hb := w.hook("beta", []string{"*"}, true)
			everything := w.hook("acme", []string{"*"}, true)
			over := w.hook("acme", []string{"*"}, true)
			w.lock("acme", 1) // t0: v1, v2
			w.at(t0.Add(time.Minute))
			w.toggle("acme", 1) // v3 added
			w.lock("beta", 9)
			w.at(t0.Add(2 * time.Minute))
			w.toggle("acme", 1) // v4 removed
			w.at(t0.Add(3 * time.Minute))
			w.toggle("acme", 1) // v5 added
			w.fanOut(100)
			rows := w.rows(h)
			if len(rows) != 4 {
				t.Fatalf("deliveries: %v", keys(rows))
			}

			// Redeliver.
			var again int64
			w.must("redeliver", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				var err error
				again, err = tx.Redeliver(ctx, rows[1], w.clock(), 0)
				return err
			}))
			d, found, err := w.st.Delivery(ctx, again)
			w.must("delivery", err)
			if !found || d.ID <= rows[len(rows)-1].ID || d.EventSeq != rows[1].EventSeq || d.Target != h || d.Version != rows[1].Version || d.Status != store.StatusPending || d.Attempts != 0 {
				t.Errorf("redelivery %+v of %+v", d, rows[1])
			}

			// Replay since t0+1m: v3, v4, v5 for ["*"]; v4 for the filter.
			// A replay is recorded, then queued a chunk (here 2 rows) per
			// step; each webhook replays once (another one is refused
			// while its rows are undone), so "everything" and "over the
			// limit" use webhooks of their own, dropped afterwards.
			replay := func(id string, events []string, since time.Time, limit int) (int64, []string) {
				t.Helper()
				before := len(w.rows(id))
				var n int64
				w.must("replay", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					var err error
					n, err = tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: id, OrgID: "acme", Events: events}, Since: since, Now: w.clock(), Max: limit})
					return err
				}))
				for steps := 0; ; steps++ {
					rp, err := w.st.ReplayStep(ctx, w.clock(), 2, 0)
					w.must("replay step", err)
					if !rp.More {
						break
					}
					if steps > 10 {
						t.Fatal("the replay never ends")
					}
				}
				return n, keys(w.rows(id)[before:])
			}
			n, got := replay(h, []string{"*"}, t0.Add(time.Minute), 100)
			if diff := cmp.Diff([]string{"lock/1 v3 ResidentAdded", "lock/1 v4 ResidentRemoved", "lock/1 v5 ResidentAdded"}, got); diff != "" || n != 3 {
				t.Errorf("replay since t0+1m: %d (-want +got):\n%s", n, diff)
			}
			if n, got := replay(filtered, []string{"ResidentRemoved"}, t0, 100); n != 1 || !slices.Equal(got, []string{"lock/1 v4 ResidentRemoved"}) {
				t.Errorf("filtered replay: %d %v", n, got)
			}
			w.must("replay again", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				_, err := tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: h, OrgID: "acme", Events: []string{"*"}}, Since: t0, Now: w.clock(), Max: 100})
				if !errors.Is(err, store.ErrReplayRunning) {
					t.Errorf("a second replay while the first one's rows are undone: %v, want ErrReplayRunning", err)
				}
				return nil
			}))
			// The tenant's own events since t0 (webhooks, keys) are not
			// replayed: the whole history of lock 1 for the partner is 4.
			if n, got := replay(everything, []string{"*"}, t0.Add(-time.Hour), 100); n != 4 || len(got) != 4 {
				t.Errorf("replay of everything queued %d %v, want 4", n, got)
			}
			if n, got := replay(over, []string{"*"}, t0, 2); n != 3 || len(got) != 0 {
				t.Errorf("replay over the limit answered %d and queued %v, want limit+1 = 3 so that the caller can tell, and nothing queued", n, got)
			}
			// Three replays of acme recorded so far (the one over the limit
			// was not): a limit of 3 per hour refuses the fourth until the
			// first leaves the window.
			w.must("rate", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				_, err := tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: over, OrgID: "acme", Events: []string{"*"}}, Since: t0, Now: w.clock(), Max: 100, PerWindow: 3})
				var limited *store.RateLimitedError
				if !errors.As(err, &limited) || !limited.RetryAt.Equal(w.clock().Add(store.RateWindow)) {
					t.Errorf("fourth replay in an hour with a limit of 3: %v, want a limit until %s", err, w.clock().Add(store.RateWindow))
				}
				return nil
			}))
			w.must("drop", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				for _, id := range []string{everything, over} {
					if _, err := tx.DropWebhookRows(ctx, id, "webhook deleted", w.clock(), 0); err != nil {
						return err
					}
				}
				return nil
			}))

			// A deferred delivery of an active webhook is due at once (the
			// verification that made it active came first).
			cb, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 100, store.ClaimOptions{Ordered: true, Exclude: []string{h, filtered}})
			w.must("claim", err)
			if len(cb) != 1 || cb[0].Target != hb {
				t.Fatalf("claimed %+v, want beta's head", cb)
			}
			w.must("defer", w.st.Defer(ctx, cb[0], "node", w.clock().Add(time.Hour)))
			again2, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 100, store.ClaimOptions{Ordered: true, Exclude: []string{h, filtered}})
			w.must("claim", err)
			if len(again2) != 1 || again2[0].ID != cb[0].ID {
				t.Errorf("deferred delivery of an active webhook: claimed %+v, want row %d at once", again2, cb[0].ID)
			}

			// Defer the pending webhook's head, retry the active one's:
			// release frees the deferred one only.
			cs, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 100, store.ClaimOptions{Ordered: true, Exclude: []string{hb}})
			w.must("claim", err)
			if len(cs) != 2 || cs[0].Target != h || cs[1].Target != filtered { // the heads of lock 1 for h and for filtered
				t.Fatalf("claimed %+v", cs)
			}
			later := w.clock().Add(time.Hour)
			w.must("defer", w.st.Defer(ctx, cs[0], "node", later))
			w.must("retry", w.st.Finish(ctx, cs[1], "node", store.Outcome{Status: store.OutcomeRetry, At: w.clock(), NextAttempt: later}))
			if got, _ := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 100, store.ClaimOptions{Ordered: true, Exclude: []string{hb}}); len(got) != 0 {
				t.Fatalf("claimed deferred rows: %+v", got)
			}
			w.must("release", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				if err := tx.ReleaseWebhookRows(ctx, cs[0].Target); err != nil {
					return err
				}
				return tx.ReleaseWebhookRows(ctx, cs[1].Target)
			}))
			got2, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 100, store.ClaimOptions{Ordered: true, Exclude: []string{hb}})
			w.must("claim", err)
			if len(got2) != 1 || got2[0].ID != cs[0].ID {
				t.Errorf("after release claimed %+v, want only the deferred row %d (the retrying one keeps its time)", got2, cs[0].ID)
			}

			// Drop: every undone row of h but the one named; nothing else.
			undone := func(id string) (n int) {
				for _, d := range w.rows(id) {
					if d.Status == store.StatusPending {
						n++
					}
				}
				return n
			}
			verifies := func() int {
				rows, err := w.st.Outbox(ctx, es.ConsumerWebhookVerify, 100)
				w.must("outbox", err)
				return len(rows)
			}
			// Another row of h is being attempted by another node.
			busy, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node-2", w.clock(), time.Minute, 1, store.ClaimOptions{Exclude: []string{filtered, hb}})
			w.must("claim", err)
			if len(busy) != 1 || busy[0].ID == got2[0].ID {
				t.Fatalf("claimed %+v", busy)
			}
			pendingH, pendingB, pendingV := undone(h), undone(hb), verifies()
			var dropped int64
			w.must("drop", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				var err error
				dropped, err = tx.DropWebhookRows(ctx, h, "webhook deleted", w.clock(), got2[0].ID)
				return err
			}))
			// h's undone deliveries but the two in flight, and its
			// verification request.
			if dropped != int64(pendingH-2+1) || undone(h) != 2 || undone(hb) != pendingB || pendingB == 0 || verifies() != pendingV-1 {
				t.Errorf("dropped %d of %d deliveries (left %d) and 1 verification (%d -> %d); other webhook %d -> %d",
					dropped, pendingH, undone(h), pendingV, verifies(), pendingB, undone(hb))
			}
			if err := w.st.Finish(ctx, busy[0], "node-2", store.Outcome{Status: store.StatusDelivered, At: w.clock(), StatusCode: 200}); err != nil {
				t.Errorf("the row in flight elsewhere cannot finish: %v", err)
			}
			for _, d := range w.rows(h) {
				if d.Status == store.StatusSkipped && (d.LastError != "webhook deleted" || d.DoneAt == "") {
					t.Errorf("dropped row %+v", d)
				}
			}
			if err := w.st.Finish(ctx, got2[0], "node", store.Outcome{Status: store.StatusDelivered, At: w.clock()}); err != nil {
				t.Errorf("the row left alone cannot finish: %v", err)
			}
		})
	}
}

// TestFanOutLockPerSchema (PostgreSQL): the fan-out's one-node-at-a-time
// lock keeps out another node on the same schema, not a deployment (or a
// test run) in another schema of the same database.
func TestFanOutLockPerSchema(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("PostgreSQL not configured")
	}
	ctx := context.Background()
	here, elsewhere := testenv.PostgresURL(t), testenv.PostgresURL(t)
	st, err := store.OpenPostgres(ctx, here, testenv.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st.SetRouter(server.Routing(st, testenv.Discard()))
	w := hookWorldOn(t, st)
	w.tenant("acme")
	w.hook("acme", []string{"*"}, true)
	w.lock("acme", 1)

	// hold takes the fan-out lock the way a node on the schema of url
	// does, until the returned function is called.
	hold := func(url string) func() {
		t.Helper()
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7331001, hashtext(current_schema()))`); err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback(); db.Close() }
	}
	release := hold(here)
	if h, _, _, err := st.FanOutWebhooks(ctx, w.clock(), 100, 0, true); err != nil || h != 0 {
		t.Errorf("fan-out while another node of this schema holds the lock: handled %d, %v", h, err)
	}
	release()
	release = hold(elsewhere)
	defer release()
	if h, q, _, err := st.FanOutWebhooks(ctx, w.clock(), 100, 0, true); err != nil || h == 0 || q == 0 {
		t.Errorf("fan-out while a node of another schema holds its lock: handled %d, queued %d, %v", h, q, err)
	}
}
