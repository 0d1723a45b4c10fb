package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// toggleMany records rounds more events on each of locks, the locks in
// parallel (each lock's commands in order), over HTTP with the partner's
// key.
func (p *partner) toggleMany(locks []int64, rounds int) {
	p.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(locks))
	for _, l := range locks {
		wg.Add(1)
		go func(l int64, on bool) {
			defer wg.Done()
			for range rounds {
				cmd := "AddResident"
				if on {
					cmd = "RemoveResident"
				}
				body, _ := json.Marshal(map[string]any{"name": "Resident", "userId": p.resident})
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s/locks/%d/%s", p.srv.URL, l, cmd), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-API-Key", p.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s on lock %d: %d", cmd, l, resp.StatusCode)
					return
				}
				on = !on
			}
		}(l, p.on[l])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		p.t.Fatal(err)
	}
	for _, l := range locks {
		if rounds%2 == 1 {
			p.on[l] = !p.on[l]
		}
	}
}

// TestReplayBounds: a replay of 408 events is queued in chunks of 100
// and delivers every event exactly once, each lock's in version order; a
// replay while the webhook still has undone replayed rows is 409 (on both
// routes) and records nothing; a tenant's replays beyond the hourly limit
// are 429 with Retry-After.
func TestReplayBounds(t *testing.T) {
	locks := []int64{501, 502, 503, 504, 505, 506, 507, 508}
	const rounds = 50 // 8 x 51 = 408 partner events (OrganizationSet and the toggles): five chunks
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			var holding atomic.Bool
			rcv.Answer(func(int, request) (int, http.Header) {
				if holding.Load() {
					return http.StatusServiceUnavailable, nil // retried: the rows stay undone
				}
				return http.StatusOK, nil
			})
			srv := testenv.NewServer(t, b, testenv.Options{ReplaysPerHour: 3, Webhooks: webhook.Config{ReplayChunk: 100}})
			p := newPartner(t, srv, "acme")
			want, perLock := history(t, p, locks, rounds)
			// The webhook comes after the events were fanned out (to no
			// one): only the replay sends them.
			eventually(t, wait, "the fan-out", func() bool {
				rows, err := srv.Store.Outbox(context.Background(), es.ConsumerWebhooks, 1)
				return err == nil && len(rows) == 0
			})
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})

			// Hold the receiver (503: retried), replay everything.
			holding.Store(true)
			since := "2000-01-01T00:00:00Z"
			got := p.must(http.StatusAccepted, "POST", "/webhooks/"+id+"/replay", keyHdr(p.key), map[string]any{"since": since}).Obj(t)
			if got["queued"] != float64(len(want)) {
				t.Fatalf("replay answered %v, want %d queued", got, len(want))
			}
			conflict := map[string]any{"error": "Conflict", "code": float64(409), "details": []any{},
				"message": "A replay of this webhook is still running: wait until its deliveries are done (see the delivery log), then replay again"}
			for _, route := range []struct {
				path string
				hdr  map[string]string
			}{{"/webhooks/" + id + "/replay", keyHdr(p.key)}, {"/tenants/acme/webhooks/" + id + "/replay", adminHdr()}} {
				r := p.do("POST", route.path, route.hdr, map[string]any{"since": since})
				if r.Status != http.StatusConflict {
					t.Fatalf("replay during a replay (%s): %d %s, want 409", route.path, r.Status, r.Raw)
				}
				if diff := cmp.Diff(conflict, r.Obj(t)); diff != "" {
					t.Errorf("409 envelope (-want +got):\n%s", diff)
				}
			}

			// Let it go: every event once more, exactly once, each lock's in
			// order, and nothing else.
			holding.Store(false)
			start := time.Now()
			eventually(t, 3*time.Minute, "the replayed deliveries", func() bool { return len(rcv.Delivered()) >= len(want) })
			t.Logf("replay delivered in %s", time.Since(start))
			replayed := rcv.Delivered()
			checkOnce(t, replayed, want)
			checkPerLock(t, perLock, replayed)
			p.LogDone(id, len(want))

			// Done: replays are allowed again, up to 3 an hour per tenant
			// (nothing since now: they queue nothing but count).
			now := time.Now().UTC().Format(time.RFC3339Nano)
			for i := 2; i <= 3; i++ {
				if got := p.must(http.StatusAccepted, "POST", "/tenants/acme/webhooks/"+id+"/replay", adminHdr(), map[string]any{"since": now}).Obj(t); got["queued"] != float64(0) {
					t.Errorf("replay %d: %v", i, got)
				}
			}
			r := p.do("POST", "/webhooks/"+id+"/replay", keyHdr(p.key), map[string]any{"since": now})
			if r.Status != http.StatusTooManyRequests {
				t.Fatalf("fourth replay in an hour: %d %s, want 429", r.Status, r.Raw)
			}
			resp := r.Obj(t)
			if resp["code"] != float64(429) || resp["error"] != "Too Many Requests" {
				t.Errorf("429 envelope: %v", resp)
			}
			retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || retry < 3000 || retry > 3600 {
				t.Errorf("Retry-After %q, want about an hour", r.Header.Get("Retry-After"))
			}
		})
	}
}

// history gives each of locks to p's tenant and toggles a resident on each
// rounds times. It returns the partner events, lock after lock, and each
// lock's in version order.
func history(t *testing.T, p *partner, locks []int64, rounds int) (want []string, perLock map[string][]string) {
	t.Helper()
	for _, l := range locks {
		p.Lock(l)
	}
	p.toggleMany(locks, rounds)
	perLock = map[string][]string{}
	for _, l := range locks {
		w, _ := p.Expected(l)
		want = append(want, w...)
		perLock[strconv.FormatInt(l, 10)] = w
	}
	if len(want) != len(locks)*(rounds+1) {
		t.Fatalf("%d partner events, want %d", len(want), len(locks)*(rounds+1))
	}
	return want, perLock
}

// checkPerLock fails unless replayed holds, for each lock, exactly the
// events of perLock in their order.
func checkPerLock(t *testing.T, perLock map[string][]string, replayed []request) {
	t.Helper()
	got := map[string][]string{}
	for _, q := range replayed {
		got[q.Env.Detail.AggregateID] = append(got[q.Env.Detail.AggregateID], q.Env.ID)
	}
	if diff := cmp.Diff(perLock, got); diff != "" {
		t.Errorf("replayed deliveries per lock, in order (-want +got):\n%s", diff)
	}
}
