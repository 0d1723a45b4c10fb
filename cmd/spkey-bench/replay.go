package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/store"
)

// The replay scenarios (j), one set per backend, on the server of the
// webhook scenarios.
func scJBaseline(backend string) string { return "j-replay-baseline-" + backend }
func scJDuring(backend string) string   { return "j-replay-during-" + backend }
func scJDeliver(backend string) string  { return "j-replay-deliver-" + backend }
func scJQueue(backend string) string    { return "j-replay-queue-" + backend }
func scJWhileQueueing(backend string) string {
	return "j-replay-during-queueing-" + backend
}
func scJWhileDelivering(backend string) string {
	return "j-replay-during-delivering-" + backend
}

// The tenant whose history is replayed, its first lock id and how many
// locks its history is spread over.
const (
	orgReplay   = "bench-replay"
	firstReplay = 300001
	replayLocks = 64
)

// replaySince is the start of every replay: before anything the bench
// records, so the whole history is queued again.
const replaySince = "2000-01-01T00:00:00Z"

// replayReceiver is the replay tenant's one webhook receiver: it answers
// verification POSTs with 204 and every delivery with 200, and records
// the first receipt of each envelope id (a retried delivery counts once)
// since the current run began (arm).
type replayReceiver struct {
	*httpTarget
	mu   sync.Mutex
	seen map[string]time.Time
}

func startReplayReceiver() (*replayReceiver, error) {
	r := &replayReceiver{seen: map[string]time.Time{}}
	t, err := listen(http.HandlerFunc(r.serve))
	if err != nil {
		return nil, err
	}
	r.httpTarget = t
	return r, nil
}

func (r *replayReceiver) serve(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	id := req.Header.Get("webhook-id")
	if strings.HasPrefix(id, "verify_") {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	at := time.Now()
	r.mu.Lock()
	if _, dup := r.seen[id]; !dup {
		r.seen[id] = at
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// arm starts a run: the receipts so far are forgotten.
func (r *replayReceiver) arm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = map[string]time.Time{}
}

// replayBench is scenario (j) on the server of wb: the replay tenant has
// a history of events and one webhook at a live receiver, created after
// the history (so that none of it was delivered before a replay), and
// replaced after each replay (runDuring).
type replayBench struct {
	wb     *whBench
	rcv    *replayReceiver
	hookID string
	header http.Header // the replay tenant's key
	// The latest during run: the other tenant's commands while the
	// replay was queued and while it was delivered; the queueing; the
	// receiver's side.
	queueing, delivering, queue, deliv result
}

// newReplayBench seeds the replay tenant on wb's server: replayLocks
// locks with a user each, then events commands of (c)'s mix, then one
// webhook subscribed to "*" at a live receiver.
func newReplayBench(ctx context.Context, wb *whBench, events, conns int) (_ *replayBench, err error) {
	rb := &replayBench{wb: wb}
	defer func() {
		if err != nil {
			rb.close()
		}
	}()
	t, err := wb.srv.seedTenant(ctx, orgReplay, firstReplay, replayLocks, conns)
	if err != nil {
		return nil, err
	}
	rb.header = t.json
	workers := min(conns, replayLocks)
	tog := newTenantToggler(t, replayLocks, workers)
	if res := countedLoop(ctx, workers, events, func(w int) error { _, err := wb.command(tog.next(w)); return err }); res.errs > 0 {
		return nil, fmt.Errorf("bench: replay history: %d of %d commands failed, first: %w", res.errs, res.n, res.firstErr)
	}
	if rb.rcv, err = startReplayReceiver(); err != nil {
		return nil, err
	}
	if err = subscribe(ctx, wb.srv, orgReplay, []*httpTarget{rb.rcv.httpTarget}); err != nil {
		return nil, err
	}
	ws, _, err := wb.srv.svc.Webhooks(ctx, app.Principal{Admin: true, Email: "bench"}, orgReplay, 0, 0)
	if err != nil {
		return nil, err
	}
	rb.hookID = ws[0].ID
	return rb, nil
}

func (rb *replayBench) close() {
	if rb.rcv != nil {
		rb.rcv.shutdown()
	}
}

// startReplay asks for a replay of the whole history over HTTP with the
// tenant's key (POST /webhooks/{id}/replay) and returns how many events
// it queues. A 409 (a replay of the webhook still running) is asked
// again until accepted; settle makes it unlikely.
func (rb *replayBench) startReplay(ctx context.Context) (int, error) {
	url := rb.wb.srv.base + "/webhooks/" + rb.hookID + "/replay"
	body := []byte(`{"since":"` + replaySince + `"}`)
	var n int
	err := waitFor(ctx, whDrainTimeout, "the previous replay to be done", func() (bool, error) {
		resp, err := rb.wb.client.Do(newRequest(http.MethodPost, url, body, rb.header))
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, err
		}
		switch resp.StatusCode {
		case http.StatusConflict:
			return false, nil
		case http.StatusAccepted:
		default:
			return false, fmt.Errorf("bench: replay: %d %s", resp.StatusCode, truncate(b, 300))
		}
		var out struct {
			Queued int `json:"queued"`
		}
		if err := json.Unmarshal(b, &out); err != nil || out.Queued == 0 {
			return false, fmt.Errorf("bench: replay: nothing queued: %s", truncate(b, 300))
		}
		n = out.Queued
		return true, nil
	})
	return n, err
}

// runBaseline is scenario (j, baseline): the none tenant's commands from
// -conns clients for d, with no replay running.
func (rb *replayBench) runBaseline(ctx context.Context, d time.Duration) (result, error) {
	if err := rb.settle(ctx); err != nil {
		return result{}, err
	}
	return rb.wb.runAPI(ctx, rb.wb.noneTog, d)
}

// runDuring is scenario (j, during): the replay tenant replays its whole
// history, and from that request the none tenant's commands run from
// -conns clients, as in the baseline, until the replay is queued in full
// (every chunk's insert; rb.queueing), then for d more while its
// deliveries go out (rb.delivering). The result is the whole window.
// The queueing itself is kept in rb.queue (rate = events queued per
// second, latency = from the request until the last chunk was queued,
// polled every 20 ms), the receiver's side in rb.deliv (rate = events
// received in the window per second of it, latencies from the replay's
// answer to each of those receipts). Unmeasured, the webhook is then
// deleted, which drops the deliveries still queued and ends the replay,
// and a new one is subscribed for the next run, as runDead does: one
// webhook takes its deliveries a few at a time (PerTarget), so waiting
// for all of them would take minutes a round.
func (rb *replayBench) runDuring(ctx context.Context, d time.Duration) (result, error) {
	if err := rb.settle(ctx); err != nil {
		return result{}, err
	}
	rb.rcv.arm()
	qctx, queued := context.WithCancel(ctx)
	defer queued()
	type started struct {
		n      int
		at     time.Time
		queued time.Time
		late   error // not queued in full in time
		err    error
	}
	began := time.Now()
	ch := make(chan started, 1)
	go func() {
		defer queued()
		var st started
		st.n, st.err = rb.startReplay(qctx)
		st.at = time.Now()
		if st.err == nil {
			// A replay paced by its deliveries may take longer: the
			// window then ends at whDrainTimeout (reported as an error of
			// the queueing, not of the run).
			wait := waitFor(qctx, whDrainTimeout, "the replay to be queued", func() (bool, error) {
				open, err := rb.wb.srv.st.OpenReplays(qctx)
				return open == 0, err
			})
			if qctx.Err() != nil {
				st.err = wait
			} else {
				st.late = wait
			}
			st.queued = time.Now()
		}
		ch <- st
	}()
	rb.queueing, _ = rb.wb.runAPI(qctx, rb.wb.noneTog, whDrainTimeout)
	st := <-ch
	if st.err != nil {
		return result{}, st.err
	}
	rb.delivering, _ = rb.wb.runAPI(ctx, rb.wb.noneTog, d)
	end := time.Now()
	rb.queue = result{n: st.n, elapsed: st.queued.Sub(began), lat: []time.Duration{st.queued.Sub(began)}}
	if st.late != nil {
		rb.queue.fail(st.late)
	}
	del := result{elapsed: end.Sub(began)}
	rb.rcv.mu.Lock()
	for _, at := range rb.rcv.seen {
		if at.Before(end) {
			del.n++
			del.lat = append(del.lat, max(0, at.Sub(st.at)))
		}
	}
	rb.rcv.mu.Unlock()
	rb.deliv = merge([]result{del}, del.elapsed)
	return merge([]result{rb.queueing, rb.delivering}, end.Sub(began)), rb.resubscribe(ctx)
}

// resubscribe deletes the replay tenant's webhook (dropping what it still
// has queued) and subscribes a new one at the same receiver.
func (rb *replayBench) resubscribe(ctx context.Context) error {
	admin := app.Principal{Admin: true, Email: "bench"}
	if _, err := rb.wb.srv.svc.DeleteWebhook(ctx, app.Call{P: admin}, orgReplay, rb.hookID); err != nil {
		return fmt.Errorf("bench: delete webhook: %w", err)
	}
	if err := subscribe(ctx, rb.wb.srv, orgReplay, []*httpTarget{rb.rcv.httpTarget}); err != nil {
		return err
	}
	ws, _, err := rb.wb.srv.svc.Webhooks(ctx, admin, orgReplay, 0, 0)
	if err != nil {
		return err
	}
	rb.hookID = ws[0].ID
	return nil
}

// settle waits until no replay is being queued and the webhook has no
// undone delivery, so that a run starts beside nothing.
func (rb *replayBench) settle(ctx context.Context) error {
	st := rb.wb.srv.st
	return waitFor(ctx, whDrainTimeout, "no replay to be running", func() (bool, error) {
		open, err := st.OpenReplays(ctx)
		if err != nil || open > 0 {
			return false, err
		}
		rows, err := st.WebhookDeliveries(ctx, rb.hookID, 0, 1, store.StatusPending)
		return len(rows) == 0, err
	})
}

// replayScenarios returns the scenarios of rb and what they measure
// besides their own results.
func replayScenarios(c benchConfig, rb *replayBench) ([]scenario, map[string]alsoMeasured) {
	b := rb.wb.backend
	return []scenario{
			{name: scJBaseline(b), run: func(ctx context.Context) (result, error) { return rb.runBaseline(ctx, c.d) }},
			{name: scJDuring(b), run: func(ctx context.Context) (result, error) { return rb.runDuring(ctx, c.d) }},
		}, map[string]alsoMeasured{
			scJDuring(b): {names: []string{scJWhileQueueing(b), scJWhileDelivering(b), scJQueue(b), scJDeliver(b)},
				results: func() []result { return []result{rb.queueing, rb.delivering, rb.queue, rb.deliv} }},
		}
}

// replayNames lists the names of the replay scenarios on backends.
func replayNames(backends ...string) []string {
	var out []string
	for _, b := range backends {
		out = append(out, scJBaseline(b), scJDuring(b), scJWhileQueueing(b), scJWhileDelivering(b), scJQueue(b), scJDeliver(b))
	}
	return out
}

// replayReport prints the replay figures: the other tenant's commands
// during a replay against the baseline of the same run.
func replayReport(w io.Writer, c benchConfig, meds map[string]med) {
	var lines []string
	for _, b := range []string{"sqlite", "postgres"} {
		base, del, q := meds[scJBaseline(b)], meds[scJDeliver(b)], meds[scJQueue(b)]
		switch {
		case q.rate > 0 && q.errs > 0:
			lines = append(lines, fmt.Sprintf("  %s: not queued in full %s after the replay request in %d round(s)", scJQueue(b), msf(q.p50), q.errs))
		case q.rate > 0:
			lines = append(lines, fmt.Sprintf("  %s = %.0f deliveries queued/s (all queued %s after the replay request)", scJQueue(b), q.rate, msf(q.p50)))
		}
		if del.rate > 0 {
			lines = append(lines, fmt.Sprintf("  %s = %.0f deliveries/s to the one webhook during the window (p50 %s, p99 %s from the replay's answer to each receipt in it)",
				scJDeliver(b), del.rate, msf(del.p50), msf(del.p99)))
		}
		for _, name := range []string{scJDuring(b), scJWhileQueueing(b), scJWhileDelivering(b)} {
			if m := meds[name]; base.rate > 0 && m.rate > 0 && base.p50 > 0 && base.p99 > 0 {
				lines = append(lines, fmt.Sprintf("  %s/%s: req/s %.3f, p50 %.2f (%s vs %s), p99 %.2f (%s vs %s)   (no floor)",
					name, scJBaseline(b), m.rate/base.rate, m.p50/base.p50, msf(m.p50), msf(base.p50), m.p99/base.p99, msf(m.p99), msf(base.p99)))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	chunk := c.replayChunk
	if chunk <= 0 {
		chunk = store.DefaultReplayChunk
	}
	fmt.Fprintf(w, "\nwebhook replay: tenant %s replays its whole history (-replay-events %d commands plus its seed) to one webhook at a live receiver,\n", orgReplay, c.replayEvents)
	fmt.Fprintf(w, "  queued %d deliveries per transaction (-replay-chunk); tenant %s sends the command mix of (c) from %d clients for -d alone (baseline),\n", chunk, orgNone, c.conns)
	fmt.Fprintf(w, "  and from the replay request until it is queued in full (during-queueing), then for -d more (during-delivering; during = both);\n")
	fmt.Fprintf(w, "  then the webhook is deleted with what it still has queued. Ratios: another tenant's commands beside a replay vs alone, same run\n")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}
