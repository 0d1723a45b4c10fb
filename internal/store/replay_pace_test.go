package store_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestReplayStepPacing: a replay step queues a chunk only while the
// webhook has fewer than half its window undone, and never more than
// fills the window; a replay that waits stays open (a second replay of
// the webhook is refused) and does not hold up a later replay of another
// webhook that has room; deleting a webhook ends its waiting replay; once
// the deliveries are done the replay goes on and queues every event once,
// in order.
func TestReplayStepPacing(t *testing.T) {
	const window, chunk = 4, 3
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			w := newHookWorld(t, b)
			w.tenant("acme")
			w.lock("acme", 1) // v1, v2 (OrganizationSet: the first of the partner's)
			for range 9 {
				w.toggle("acme", 1) // v3..v11
			}
			w.fanOut(100) // to no one: the webhooks come later
			h := w.hook("acme", []string{"*"}, true)
			other := w.hook("acme", []string{"*"}, true)
			var want []string
			for v := 2; v <= 11; v++ { // v1 (LockCreated) is before the lock is the partner's
				want = append(want, "lock/1 v"+strconv.Itoa(v))
			}

			start := func(id string) {
				t.Helper()
				w.must("replay", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					n, err := tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: id, OrgID: "acme", Events: []string{"*"}},
						Since: w.clock().Add(-time.Hour), Now: w.clock(), Max: 100})
					if err == nil && n != 10 {
						t.Errorf("replay of %s counts %d events, want 10", id, n)
					}
					return err
				}))
			}
			step := func() store.ReplayProgress {
				t.Helper()
				rp, err := w.st.ReplayStep(ctx, w.clock(), chunk, window)
				w.must("replay step", err)
				for _, id := range []string{h, other} {
					if n := undone(t, w, id); n > window {
						t.Fatalf("webhook %s has %d undone deliveries, window %d", id, n, window)
					}
				}
				return rp
			}
			open := func(want int) {
				t.Helper()
				n, err := w.st.OpenReplays(ctx)
				w.must("open replays", err)
				if n != want {
					t.Fatalf("%d open replays, want %d", n, want)
				}
			}

			start(h)
			if rp := step(); rp.Queued != chunk || !rp.More || !slices.Equal(rp.Open, []string{h}) {
				t.Fatalf("first step: %+v, want %d queued and the replay open", rp, chunk)
			}
			// 3 undone, half the window is 2: the replay waits, open.
			if rp := step(); rp.Queued != 0 || rp.More || !slices.Equal(rp.Open, []string{h}) {
				t.Fatalf("step with no room: %+v, want nothing queued, no more, the replay open", rp)
			}
			open(1)
			w.must("replay again", w.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				_, err := tx.StartReplay(ctx, store.ReplayRequest{Webhook: store.WebhookRow{ID: h, OrgID: "acme", Events: []string{"*"}}, Since: w.clock(), Now: w.clock(), Max: 100})
				if !errors.Is(err, store.ErrReplayRunning) {
					t.Errorf("a replay while one waits for room: %v, want ErrReplayRunning", err)
				}
				return nil
			}))

			// A later replay of another webhook is not held up by it.
			start(other)
			if rp := step(); rp.Queued != chunk || !slices.Equal(rp.Open, []string{h, other}) {
				t.Fatalf("step with the other webhook's replay: %+v, want %d queued, both open", rp, chunk)
			}
			if rp := step(); rp.Queued != 0 || rp.More {
				t.Fatalf("step with no room anywhere: %+v", rp)
			}
			// Deleting the other webhook ends its waiting replay.
			_, err := w.svc.DeleteWebhook(ctx, app.Call{P: hookAdmin}, "acme", other)
			w.must("delete webhook", err)
			open(1)

			// Deliver h's rows one at a time, stepping after each: the
			// replay goes on whenever there is room, to its end.
			for steps := 0; ; steps++ {
				if steps > 50 {
					t.Fatal("the replay never ends")
				}
				cs, err := w.st.ClaimWith(ctx, es.ConsumerWebhookSend, "node", w.clock(), time.Minute, 1, store.ClaimOptions{Ordered: true})
				w.must("claim", err)
				if len(cs) == 0 {
					rp := step()
					if rp.Queued == 0 && len(rp.Open) == 0 {
						break
					}
					continue
				}
				w.must("finish", w.st.Finish(ctx, cs[0], "node", store.Outcome{Status: store.StatusDelivered, At: w.clock(), StatusCode: 200}))
				step()
			}
			open(0)
			var got []string
			for _, k := range keys(w.rows(h)) {
				got = append(got, strings.Join(strings.Fields(k)[:2], " ")) // without the type
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("replayed deliveries (-want +got):\n%s", diff)
			}
		})
	}
}

// undone counts webhook id's undone deliveries.
func undone(t *testing.T, w *hookWorld, id string) int {
	t.Helper()
	d, err := w.st.WebhookDeliveries(context.Background(), id, 0, 1000, store.StatusPending)
	w.must("undone deliveries", err)
	return len(d)
}
