package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestPrune: past the horizons, the retention job deletes finished
// deliveries with their attempts, Idempotency-Key records (the key is
// then new again), used portal nonces and finished replays, and keeps
// every pending row (never tried, leased, retrying), every event and the
// rows still inside their horizon; the pruned database rebuilds to the
// same read models.
func TestPrune(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			t0 := w.clock()
			w.tenant("acme")
			w.hook("acme", []string{"*"}, true)
			held := w.hook("acme", []string{"*"}, false) // pending: its rows wait
			call := app.Call{P: hookAdmin, Route: "webhooks acme", IdempotencyKey: "create-1", Input: map[string]any{"url": "one"}}
			_, err := w.svc.CreateWebhook(ctx, call, "acme", app.WebhookInput{URL: "http://127.0.0.1:9/idem", Events: []string{"LockCreated"}})
			w.must("create with key", err)
			w.lock("acme", 1)
			for range 4 {
				w.toggle("acme", 1)
			}
			w.fanOut(100)
			_, err = w.st.UseNonce(ctx, "nonce-1", t0)
			w.must("nonce", err)

			// The active webhook: two delivered, one failed for good, one retrying, one
			// leased; the pending webhook's rows never tried.
			var claims []store.Claim
			for range 5 {
				// (Unordered: the retrying row holds the lock's next one back.)
				c, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", t0, time.Hour, 1, store.ClaimOptions{Exclude: []string{held}})
				w.must("claim", err)
				if len(c) != 1 {
					t.Fatalf("claimed %+v", c)
				}
				claims = append(claims, c[0])
				switch len(claims) {
				case 1, 2:
					w.must("finish", w.st.Finish(ctx, c[0], "node", store.Outcome{Status: store.StatusDelivered, At: t0, StatusCode: 200}))
				case 3:
					w.must("finish", w.st.Finish(ctx, c[0], "node", store.Outcome{Status: store.StatusFailed, At: t0, StatusCode: 400, Error: "HTTP 400"}))
				case 4:
					w.must("finish", w.st.Finish(ctx, c[0], "node", store.Outcome{Status: store.OutcomeRetry, At: t0, NextAttempt: t0.Add(100 * 24 * time.Hour), Error: "HTTP 503"}))
				}
			}
			pendingBefore := pendingRows(t, w)
			if len(pendingBefore) < 4 {
				t.Fatalf("only %d pending rows: %v", len(pendingBefore), pendingBefore)
			}
			readModels, err := w.st.DumpReadModels(ctx)
			w.must("dump", err)
			events := dumpOf(t, w, "events")

			// Inside every horizon: nothing goes.
			w.at(t0.Add(time.Hour))
			r := store.Retention{Idempotency: 24 * time.Hour, Deliveries: 30 * 24 * time.Hour, LiveFeed: 7 * 24 * time.Hour, Nonces: 7 * 24 * time.Hour}
			if n, err := w.svc.Prune(ctx, r); err != nil || total(n) != 0 {
				t.Fatalf("pruned within the horizons: %v %v", n, err)
			}

			// 31 days on, in batches of 2 rows.
			w.at(t0.Add(31 * 24 * time.Hour))
			n, err := w.st.Prune(ctx, w.clock(), r, 2)
			w.must("prune", err)
			if n["idempotency"] != 1 || n["portal_nonces"] != 1 || n["delivery_attempts"] != 3 || n["outbox"] < 3 {
				t.Errorf("pruned %v, want the record, the nonce, 3 attempts and at least the 3 finished deliveries", n)
			}
			if diff := cmp.Diff(pendingBefore, pendingRows(t, w)); diff != "" {
				t.Errorf("pending rows changed by pruning (-before +after):\n%s", diff)
			}
			for _, c := range claims[:3] {
				if _, found, err := w.st.Delivery(ctx, c.ID); err != nil || found {
					t.Errorf("finished delivery %d still there (%v)", c.ID, err)
				}
			}
			if a, err := w.st.Attempts(ctx, claims[0].ID); err != nil || len(a) != 0 {
				t.Errorf("attempts of a pruned delivery: %+v %v", a, err)
			}
			if a, err := w.st.Attempts(ctx, claims[3].ID); err != nil || len(a) != 1 {
				t.Errorf("the retrying row's attempt: %+v %v", a, err)
			}
			if used, err := w.st.NonceUsed(ctx, "nonce-1"); err != nil || used {
				t.Errorf("nonce used 31 days ago still remembered: %v %v", used, err)
			}
			if got := dumpOf(t, w, "idempotency"); len(got) != 0 {
				t.Errorf("idempotency records left: %v", got)
			}
			if diff := cmp.Diff(events, dumpOf(t, w, "events")); diff != "" {
				t.Errorf("events changed by pruning:\n%s", diff)
			}

			// The key is new again: a different body is a new webhook, not 422.
			call.Input = map[string]any{"url": "two"}
			again, err := w.svc.CreateWebhook(ctx, call, "acme", app.WebhookInput{URL: "http://127.0.0.1:9/idem2", Events: []string{"LockCreated"}})
			if err != nil || again.Replayed || again.WebhookID == "" {
				t.Fatalf("reusing a pruned key: %+v %v", again, err)
			}
			readModels2, err := w.st.DumpReadModels(ctx)
			w.must("dump", err)

			// Rebuilt from the events, the read models are the same.
			w.must("rebuild", w.svc.Rebuild(ctx))
			rebuilt, err := w.st.DumpReadModels(ctx)
			w.must("dump", err)
			if diff := cmp.Diff(readModels2, rebuilt); diff != "" {
				t.Errorf("rebuild of the pruned database (-live +rebuilt):\n%s", diff)
			}
			if readModels == readModels2 {
				t.Error("the webhook made after pruning is not in the read models")
			}
		})
	}
}

// TestPruneLiveFeed: past the live-feed horizon, the retention job
// deletes the feed entries created before it and keeps the newer ones; a
// stream reading the feed (from the start, or resuming after the last
// entry it saw) then gets the kept entries, and a later entry is numbered
// after the user's head, never reusing a pruned entry's number.
func TestPruneLiveFeed(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			t0 := w.clock()
			w.tenant("acme")
			w.lock("acme", 1)
			w.toggle("acme", 1) // the resident, whose live stream gets the rings
			user := w.residents["acme"]
			// ring rings lock 1 at the clock's time and delivers the ring to
			// the resident's feed, as the live channel does.
			ring := func() {
				t.Helper()
				_, err := w.svc.RingDoorbell(ctx, app.Call{P: keyOf("acme")}, 1, app.RingInput{VisitorName: "Visitor"})
				w.must("ring", err)
				at := w.clock()
				cs, err := w.st.Claim(ctx, es.ConsumerDoorbellLive, "node", at, time.Minute, 10)
				w.must("claim", err)
				if len(cs) != 1 || cs[0].Target != user {
					t.Fatalf("claimed %+v, want the resident's live row", cs)
				}
				w.must("deliver", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					_, _, err := tx.DeliverLive(ctx, "node", at, time.Millisecond, []store.LiveItem{{Claim: cs[0], Kind: "DoorbellRang", Data: []byte(`{"ringId":"` + cs[0].AggregateID + `"}`)}})
					return err
				}))
			}
			// feedOf lists the numbers of the user's entries after `after`
			// that org's key reads ("": all), as a stream reads them.
			feedOf := func(org string, after int64) []int64 {
				t.Helper()
				entries, err := w.st.FeedFor(ctx, user, org, after, 100)
				w.must("read feed", err)
				var ns []int64
				for _, e := range entries {
					ns = append(ns, e.N)
				}
				return ns
			}
			feed := func(after int64) []int64 { t.Helper(); return feedOf("", after) }
			ring()
			ring() // entries 1 and 2, at t0
			w.at(t0.Add(30 * 24 * time.Hour))
			ring() // entry 3, 30 days later
			if diff := cmp.Diff([]int64{1, 2, 3}, feed(0)); diff != "" {
				t.Fatalf("feed before pruning (-want +got):\n%s", diff)
			}

			r := store.Retention{LiveFeed: 7 * 24 * time.Hour}
			// Inside the horizon of every entry: nothing goes.
			w.at(t0.Add(6 * 24 * time.Hour))
			if n, err := w.st.Prune(ctx, w.clock(), r, 1); err != nil || total(n) != 0 {
				t.Fatalf("pruned within the horizon: %v %v", n, err)
			}
			// 31 days on, in batches of 1 row: entries 1 and 2 (30 days
			// old) go, entry 3 (one day old) stays.
			w.at(t0.Add(31 * 24 * time.Hour))
			n, err := w.st.Prune(ctx, w.clock(), r, 1)
			w.must("prune", err)
			if diff := cmp.Diff(map[string]int64{"live_feed": 2}, n); diff != "" {
				t.Errorf("pruned (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int64{3}, feed(0)); diff != "" {
				t.Errorf("feed from the start after pruning (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int64{3}, feed(1)); diff != "" {
				t.Errorf("feed resumed after entry 1 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int64{3}, feedOf("acme", 0)); diff != "" {
				t.Errorf("the tenant's part of the feed after pruning (-want +got):\n%s", diff)
			}
			if head, err := w.st.FeedHead(ctx, user); err != nil || head != 3 {
				t.Errorf("feed head after pruning = %d %v, want 3", head, err)
			}

			// A stream that saw entry 3 gets the next ring as entry 4.
			ring()
			if diff := cmp.Diff([]int64{4}, feed(3)); diff != "" {
				t.Errorf("feed after entry 3, once rung again (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int64{3, 4}, feed(0)); diff != "" {
				t.Errorf("feed from the start, once rung again (-want +got):\n%s", diff)
			}
		})
	}
}

// pendingRows lists every undone outbox row (id, consumer, target, lease
// holder, attempts).
func pendingRows(t *testing.T, w *hookWorld) []string {
	t.Helper()
	var out []string
	for _, row := range dumpOf(t, w, "outbox") {
		if strings.Contains(row, "done_at=<nil>") {
			out = append(out, row)
		}
	}
	return out
}

func dumpOf(t *testing.T, w *hookWorld, table string) []string {
	t.Helper()
	rows, err := store.DumpTable(w.st, table)
	w.must("dump "+table, err)
	return rows
}

func total(n map[string]int64) (sum int64) {
	for _, v := range n {
		sum += v
	}
	return sum
}

// TestIdempotencyRecordsHoldNoSecrets: the stored answer of a webhook
// created with an Idempotency-Key holds no secret, and replaying the key
// after the secret was rotated answers without any secret; the records
// of AddResident by e-mail and UpdatePhoneNumber hold neither the address
// nor the number.
func TestIdempotencyRecordsHoldNoSecrets(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			w.tenant("acme")
			call := app.Call{P: hookAdmin, Route: "webhooks acme", IdempotencyKey: "hook-1", Input: map[string]any{"url": "x"}}
			in := app.WebhookInput{URL: "http://127.0.0.1:9/acme", Events: []string{"*"}}
			first, err := w.svc.CreateWebhook(ctx, call, "acme", in)
			w.must("create", err)
			if !strings.HasPrefix(first.Secret, "whsec_") {
				t.Fatalf("first answer has no secret: %+v", first)
			}
			_, err = w.svc.UpdateWebhook(ctx, app.Call{P: hookAdmin}, "acme", first.WebhookID, app.WebhookInput{RotateSecret: true})
			w.must("rotate", err)
			replay, err := w.svc.CreateWebhook(ctx, call, "acme", in)
			w.must("replay", err)
			if !replay.Replayed || replay.WebhookID != first.WebhookID || replay.Secret != "" {
				t.Errorf("replay after the rotation: %+v, want the same webhook and no secret", replay)
			}

			w.lock("acme", 1)
			email := "jane.doe@acme.example"
			_, err = w.svc.FindOrCreate(ctx, keyOf("acme"), false, app.FindInput{Email: email})
			w.must("user", err)
			kc := app.Call{P: keyOf("acme"), Route: "AddResident 1", IdempotencyKey: "add-1", Input: map[string]any{"email": email}}
			added, err := w.svc.AddResident(ctx, kc, 1, app.ResidentInput{Name: "Jane", Email: &email})
			w.must("add resident", err)
			if added.Email != email {
				t.Errorf("first AddResident answer: %+v, want the e-mail", added)
			}
			if again, err := w.svc.AddResident(ctx, kc, 1, app.ResidentInput{Name: "Jane", Email: &email}); err != nil || !again.Replayed || again.Email != "" {
				t.Errorf("replayed AddResident: %+v %v, want no e-mail", again, err)
			}
			u := w.residents["acme"]
			phone := "+41791234567"
			uc := app.Call{P: app.Principal{Kind: app.UserCaller, UserID: u, Phone: phone, PhoneVerified: true}, Route: "UpdatePhoneNumber " + u, IdempotencyKey: "phone-1", Input: map[string]any{"phoneNumber": phone}}
			_, err = w.svc.UpdatePhoneNumber(ctx, uc, u, &phone)
			w.must("update phone", err)

			stored := strings.Join(dumpOf(t, w, "idempotency"), "\n")
			if strings.Count(stored, "\n") != 2 {
				t.Fatalf("want 3 idempotency records, got:\n%s", stored)
			}
			ws, _, err := w.st.WebhookSecrets(ctx, first.WebhookID)
			w.must("secrets", err)
			for what, secret := range map[string]string{"first secret": first.Secret, "current secret": ws.Secret, "e-mail": email, "phone": phone, "phone digits": "791234567"} {
				if strings.Contains(stored, secret) {
					t.Errorf("an idempotency record holds the %s:\n%s", what, stored)
				}
			}
		})
	}
}
