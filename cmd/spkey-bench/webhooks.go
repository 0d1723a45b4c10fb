package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// The partner webhook scenarios (h, i), one set per backend.
func scHDeliver(backend string) string  { return "h-webhooks-deliver-" + backend }
func scHCommands(backend string) string { return "h-webhooks-commands-" + backend }
func scHDelay(backend string) string    { return "h-webhooks-delay-" + backend }
func scINone(backend string) string     { return "i-webhooks-api-none-" + backend }
func scIDead(backend string) string     { return "i-webhooks-api-dead-" + backend }
func scILive(backend string) string     { return "i-webhooks-api-live-" + backend }
func scIBeside(backend string) string   { return "i-webhooks-api-none-beside-dead-" + backend }

const (
	// benchWebhooks is how many webhooks, each subscribed to "*" and each
	// on a receiver of its own, the tenant of (h) and of (i, dead) has.
	benchWebhooks = 10
	// whLocks is how many locks (and resident users) the command mix of
	// (h) and (i) spreads over, as (c) does over benchLocks.
	whLocks = 256
	// whTimeout is the bench's webhook request timeout (serve's default is
	// webhook.DefaultTimeout, 15 s): every attempt at the dead receiver
	// lasts this long, so a shorter one makes the dispatcher churn more.
	whTimeout = 2 * time.Second
	// floorDeadNone is the floor of API throughput with 10 webhooks at a
	// dead receiver over API throughput with none, in the same run.
	floorDeadNone = 0.90
	// How long (h) waits for deliveries before it counts the missing ones
	// as errors.
	whDrainTimeout   = 2 * time.Minute
	whReceiptTimeout = 10 * time.Second
)

// The tenants of the webhook scenarios and their first lock ids.
const (
	orgNone, orgLive, orgDead       = "bench-none", "bench-live", "bench-dead"
	firstNone, firstLive, firstDead = 1, 100001, 200001
)

// partnerEndpoints is benchWebhooks receivers, each on a loopback port of
// its own (one host per partner, as the dispatcher's connection pool sees
// real partners). They answer verification POSTs with 204. A live set
// reports each envelope's webhook-id to the current tracker and answers
// 204; a dead set reads each envelope and never answers it (until close),
// so every attempt runs into the dispatcher's timeout.
type partnerEndpoints struct {
	targets []*httpTarget
	sink    atomic.Pointer[ringTracker]
	dead    bool
	stop    chan struct{} // closed by close: held requests are aborted
	held    atomic.Int64  // requests a dead set holds now
}

func startEndpoints(dead bool) (*partnerEndpoints, error) {
	p := &partnerEndpoints{dead: dead, stop: make(chan struct{})}
	for range benchWebhooks {
		t, err := listen(http.HandlerFunc(p.serve))
		if err != nil {
			p.close()
			return nil, err
		}
		p.targets = append(p.targets, t)
	}
	return p, nil
}

func (p *partnerEndpoints) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	id := r.Header.Get("webhook-id")
	if strings.HasPrefix(id, "verify_") {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if p.dead {
		p.held.Add(1)
		defer p.held.Add(-1)
		select {
		case <-p.stop:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler) // close the connection without an answer
	}
	at := time.Now()
	if t := p.sink.Load(); t != nil {
		t.receipt(id, at)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *partnerEndpoints) close() {
	close(p.stop)
	for _, t := range p.targets {
		t.shutdown()
	}
}

// whBench runs the webhook scenarios on one backend on one server
// assembled as serve.go does it, a node serving three partners: one
// without webhooks (none), one whose 10 webhooks are at live receivers
// (live) and one whose 10 webhooks are at dead receivers during its own
// scenario (dead; see runDead). Every
// tenant has whLocks locks with a user each, for the command mix of (c).
// (One server, not one per tenant: a PostgreSQL store keeps up to 32
// connections, and the bench's other stores already hold most of a
// default server's 100.)
type whBench struct {
	backend                   string
	conns                     int
	srv                       *spkeyServer
	noneTog, liveTog, deadTog *residentToggler
	liveEP, deadEP            *partnerEndpoints
	client                    *http.Client
	commands                  result // (h): the command side of the latest run
	beside                    result // (i): none's commands beside the dead backlog, latest run
	replay                    *replayBench
}

// newWHServer starts one server of the webhook scenarios on a fresh
// database of backend.
func newWHServer(ctx context.Context, c benchConfig, backend, dir, name string) (*spkeyServer, error) {
	var t *esTarget
	var err error
	switch backend {
	case "sqlite":
		t, err = openESSQLite(ctx, filepath.Join(dir, "spkey.db"), 1)
	default:
		t, _, err = openESPostgres(ctx, c.pg, 1)
	}
	if err != nil {
		return nil, err
	}
	s, err := startSpkeyOn(ctx, t.st, dir, server.Config{Notify: outbox.Config{Node: "bench-" + name + "-" + backend},
		Webhooks: webhook.Config{Timeout: whTimeout, Window: benchWindow(), ReplayChunk: c.replayChunk}})
	if err != nil {
		t.close()
		return nil, err
	}
	s.closeStore = t.close
	return s, nil
}

// subscribe waits until every event seeded so far was fanned out (so
// that none of it is delivered), then subscribes one webhook of org per
// receiver in targets to "*" and waits until all of them are verified.
func subscribe(ctx context.Context, s *spkeyServer, org string, targets []*httpTarget) error {
	admin := app.Principal{Admin: true, Email: "bench"}
	if err := waitFor(ctx, 60*time.Second, "the seed's events to be fanned out", func() (bool, error) {
		rows, err := s.st.Outbox(ctx, es.ConsumerWebhooks, 1)
		return len(rows) == 0, err
	}); err != nil {
		return err
	}
	for _, t := range targets {
		if _, err := s.svc.CreateWebhook(ctx, app.Call{P: admin, Route: "webhooks " + org}, org, app.WebhookInput{URL: t.base + "/hook", Events: []string{tenant.AllEvents}}); err != nil {
			return fmt.Errorf("bench: create webhook: %w", err)
		}
	}
	return waitFor(ctx, 60*time.Second, "the webhooks of "+org+" to be verified", func() (bool, error) {
		ws, _, err := s.svc.Webhooks(ctx, admin, org, 0, 0)
		if err != nil {
			return false, err
		}
		for _, w := range ws {
			if w.Status != tenant.StatusActive {
				return false, nil
			}
		}
		return len(ws) == len(targets), nil
	})
}

// waitFor polls cond until it holds, fails or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: waited %s for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func newWHBench(ctx context.Context, c benchConfig, backend, dir string) (_ *whBench, err error) {
	wb := &whBench{backend: backend, conns: c.conns, client: newLoadClient(c.conns)}
	defer func() {
		if err != nil {
			wb.close()
		}
	}()
	if wb.liveEP, err = startEndpoints(false); err != nil {
		return nil, err
	}
	if wb.deadEP, err = startEndpoints(true); err != nil {
		return nil, err
	}
	if wb.srv, err = newWHServer(ctx, c, backend, dir, "webhooks"); err != nil {
		return nil, err
	}
	var none, live, dead benchTenant
	if none, err = wb.srv.seedTenant(ctx, orgNone, firstNone, whLocks, c.conns); err != nil {
		return nil, err
	}
	if live, err = wb.srv.seedTenant(ctx, orgLive, firstLive, whLocks, c.conns); err != nil {
		return nil, err
	}
	if dead, err = wb.srv.seedTenant(ctx, orgDead, firstDead, whLocks, c.conns); err != nil {
		return nil, err
	}
	if err = subscribe(ctx, wb.srv, orgLive, wb.liveEP.targets); err != nil {
		return nil, err
	}
	wb.noneTog = newTenantToggler(none, whLocks, c.conns)
	wb.liveTog = newTenantToggler(live, whLocks, c.conns)
	wb.deadTog = newTenantToggler(dead, whLocks, c.conns)
	return wb, nil
}

// close aborts the dead receivers' requests first, so that the server's
// dispatcher stops at once.
func (wb *whBench) close() {
	if wb.deadEP != nil {
		wb.deadEP.close()
	}
	if wb.srv != nil {
		wb.srv.close()
	}
	if wb.replay != nil {
		wb.replay.close()
	}
	if wb.liveEP != nil {
		wb.liveEP.close()
	}
	wb.client.CloseIdleConnections()
}

// command sends one command and returns the envelope id of the event it
// recorded (the lock's new version).
func (wb *whBench) command(req *http.Request) (string, error) {
	resp, err := wb.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, truncate(body, 300))
	}
	var out struct {
		AggregateID string `json:"aggregateId"`
		Version     int64  `json:"version"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Version == 0 {
		return "", fmt.Errorf("%s %s: no version in %s", req.Method, req.URL.Path, truncate(body, 300))
	}
	return webhook.EventID(es.Record{AggregateType: lock.AggregateType, AggregateID: out.AggregateID, Version: out.Version}), nil
}

// countedLoop is closedLoop for a fixed count: workers goroutines run op
// back to back until n operations have started.
func countedLoop(ctx context.Context, workers, n int, op func(w int) error) result {
	parts := make([]result, workers)
	var left atomic.Int64
	left.Store(int64(n))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := &parts[w]
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				t0 := time.Now()
				err := op(w)
				r.n++
				if err != nil {
					r.fail(err)
					continue
				}
				r.lat = append(r.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	return merge(parts, time.Since(start))
}

// runDeliver is scenario (h): -conns clients send n commands of the mix
// as fast as they are answered (closed loop); each records one event,
// which goes to all 10 webhooks. The result is the receivers' side: rate
// = deliveries received / (last receipt − first command), latencies from
// a command's answer to each of its 10 receipts (0 when a receipt came
// first), backlog included; errors = deliveries still missing
// whDrainTimeout after the last answer. The command side is kept in
// wb.commands.
func (wb *whBench) runDeliver(ctx context.Context, n int) (result, error) {
	tr := newRingTracker(benchWebhooks)
	wb.liveEP.sink.Store(tr)
	defer wb.liveEP.sink.Store(nil)
	start := time.Now()
	wb.commands = countedLoop(ctx, wb.conns, n, func(w int) error {
		id, err := wb.command(wb.liveTog.next(w))
		if err != nil {
			return err
		}
		tr.answer(id, time.Now())
		return nil
	})
	tr.drain(ctx, whDrainTimeout)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	del := result{n: tr.answered * benchWebhooks, elapsed: tr.last.Sub(start)}
	for id, r := range tr.rings {
		if r.answered.IsZero() {
			continue
		}
		for _, rc := range r.receipts {
			del.lat = append(del.lat, max(0, rc.Sub(r.answered)))
		}
		if miss := tr.want - len(r.receipts); miss > 0 {
			if del.firstErr == nil {
				del.firstErr = fmt.Errorf("event %s: %d of %d webhooks received it within %s", id, len(r.receipts), tr.want, whDrainTimeout)
			}
			del.errs += miss
		}
	}
	if tr.complete == 0 {
		del.elapsed = time.Since(start)
	}
	return merge([]result{del}, del.elapsed), nil
}

// runDelay is scenario (h, one at a time): one client sends a command,
// waits until all 10 webhooks received its event, and sends the next, for
// d. The rate is commands/s; the latencies are one per receipt, from the
// command's answer to the receipt (0 when the receipt came first).
func (wb *whBench) runDelay(ctx context.Context, d time.Duration) (result, error) {
	tr := newRingTracker(benchWebhooks)
	wb.liveEP.sink.Store(tr)
	defer wb.liveEP.sink.Store(nil)
	return oneAtATime(ctx, d, tr, whReceiptTimeout, "event", "webhooks", func() (string, error) { return wb.command(wb.liveTog.next(0)) })
}

// runAPI is scenario (i): the command mix from -conns clients in a closed
// loop for d with tog's tenant (as (c) does): the API's own throughput.
// The answers are decoded as in (h), and by every (i), so that the load
// generator costs the same everywhere.
func (wb *whBench) runAPI(ctx context.Context, tog *residentToggler, d time.Duration) (result, error) {
	return closedLoop(ctx, wb.conns, d, func(w int) error {
		_, err := wb.command(tog.next(w))
		return err
	}), nil
}

// runDead is scenario (i, dead): unmeasured, the dead tenant subscribes 10
// webhooks at the dead receivers (verified: the receivers answer that
// POST); then its commands run as runAPI does, for d: each event queues
// 10 deliveries whose attempts all run into the timeout. Right after, for
// d again, the none tenant's commands run beside the backlog this left
// (wb.beside). Unmeasured, the webhooks are deleted, which drops their
// queued deliveries: the other scenarios run without a dead receiver's
// backlog, and every dead run starts from none.
func (wb *whBench) runDead(ctx context.Context, d time.Duration) (result, error) {
	if err := subscribe(ctx, wb.srv, orgDead, wb.deadEP.targets); err != nil {
		return result{}, err
	}
	res, _ := wb.runAPI(ctx, wb.deadTog, d)
	wb.beside, _ = wb.runAPI(ctx, wb.noneTog, d)
	admin := app.Principal{Admin: true, Email: "bench"}
	ws, _, err := wb.srv.svc.Webhooks(ctx, admin, orgDead, 0, 0)
	if err != nil {
		return res, err
	}
	for _, w := range ws {
		if _, err := wb.srv.svc.DeleteWebhook(ctx, app.Call{P: admin}, orgDead, w.ID); err != nil {
			return res, fmt.Errorf("bench: delete webhook: %w", err)
		}
	}
	// The attempts still in flight end at their timeout.
	return res, waitFor(ctx, 2*whTimeout, "the attempts at the dead receivers to end", func() (bool, error) { return wb.deadEP.held.Load() == 0, nil })
}

// runAPILive is runAPI with the live tenant (10 webhooks at live
// receivers), then, unmeasured, waits until its deliveries are done, so
// that they do not run into the next scenario.
func (wb *whBench) runAPILive(ctx context.Context, d time.Duration) (result, error) {
	tr := newRingTracker(benchWebhooks)
	wb.liveEP.sink.Store(tr)
	defer wb.liveEP.sink.Store(nil)
	res := closedLoop(ctx, wb.conns, d, func(w int) error {
		id, err := wb.command(wb.liveTog.next(w))
		if err == nil {
			tr.answer(id, time.Now())
		}
		return err
	})
	tr.drain(ctx, whDrainTimeout)
	return res, nil
}

// webhookScenarios sets up the webhook scenarios on every backend of c and
// returns them, what they measure besides their own results and a func
// that tears them down.
func webhookScenarios(ctx context.Context, c benchConfig, dir string) ([]scenario, map[string]alsoMeasured, func(), error) {
	var benches []*whBench
	closeAll := func() {
		for _, wb := range benches {
			wb.close()
		}
	}
	var out []scenario
	also := map[string]alsoMeasured{}
	for _, b := range c.backends() {
		if !c.wants(append([]string{scHDeliver(b), scHCommands(b), scHDelay(b), scINone(b), scIDead(b), scIBeside(b), scILive(b)}, replayNames(b)...)...) {
			continue
		}
		wb, err := newWHBench(ctx, c, b, filepath.Join(dir, "webhooks-"+b))
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		benches = append(benches, wb)
		out = append(out,
			scenario{name: scHDeliver(b), run: func(ctx context.Context) (result, error) { return wb.runDeliver(ctx, c.whCommands) }},
			scenario{name: scHDelay(b), run: func(ctx context.Context) (result, error) { return wb.runDelay(ctx, c.d) }},
			scenario{name: scINone(b), run: func(ctx context.Context) (result, error) { return wb.runAPI(ctx, wb.noneTog, c.d) }},
			scenario{name: scIDead(b), run: func(ctx context.Context) (result, error) { return wb.runDead(ctx, c.d) }},
			scenario{name: scILive(b), run: func(ctx context.Context) (result, error) { return wb.runAPILive(ctx, c.d) }},
		)
		also[scHDeliver(b)] = alsoMeasured{names: []string{scHCommands(b)}, results: func() []result { return []result{wb.commands} }}
		also[scIDead(b)] = alsoMeasured{names: []string{scIBeside(b)}, results: func() []result { return []result{wb.beside} }}
		if c.wants(replayNames(b)...) {
			if wb.replay, err = newReplayBench(ctx, wb, c.replayEvents, c.conns); err != nil {
				closeAll()
				return nil, nil, nil, err
			}
			sc, jAlso := replayScenarios(c, wb.replay)
			out = append(out, sc...)
			maps.Copy(also, jAlso)
		}
	}
	return out, also, closeAll, nil
}

// backends lists the backends of the per-backend scenarios.
func (c benchConfig) backends() []string {
	var out []string
	if c.db == "sqlite" || c.db == "both" {
		out = append(out, "sqlite")
	}
	if c.db == "postgres" || c.db == "both" {
		out = append(out, "postgres")
	}
	return out
}

// webhookReport prints the webhook figures and the floor of (i).
func webhookReport(w io.Writer, c benchConfig, meds map[string]med) {
	var lines []string
	for _, b := range []string{"sqlite", "postgres"} {
		del, cmds, delay := meds[scHDeliver(b)], meds[scHCommands(b)], meds[scHDelay(b)]
		if del.rate > 0 {
			lines = append(lines, fmt.Sprintf("  %s = %.0f deliveries/s to %d webhooks (%d commands at %.0f/s; p50 %s, p99 %s from a command's answer to each receipt, backlog included; missing %d)",
				scHDeliver(b), del.rate, benchWebhooks, c.whCommands, cmds.rate, msf(del.p50), msf(del.p99), del.errs))
		}
		if delay.rate > 0 {
			lines = append(lines, fmt.Sprintf("  p50/p99(%s) = %s / %s (one command at a time, all %d receipts awaited; %.0f commands/s, errors %d)",
				scHDelay(b), msf(delay.p50), msf(delay.p99), benchWebhooks, delay.rate, delay.errs))
		}
		none, dead, live := meds[scINone(b)], meds[scIDead(b)], meds[scILive(b)]
		if none.rate > 0 && dead.rate > 0 {
			r := dead.rate / none.rate
			lines = append(lines, fmt.Sprintf("  %s/%s = %.3f   floor >= %.2f   %s   (API throughput with %d webhooks at a dead receiver vs none, same run)",
				scIDead(b), scINone(b), r, floorDeadNone, passFail(r >= floorDeadNone && dead.errs == 0 && none.errs == 0), benchWebhooks))
		}
		if beside := meds[scIBeside(b)]; none.rate > 0 && beside.rate > 0 {
			lines = append(lines, fmt.Sprintf("  %s/%s = %.3f   (no floor)   (a tenant without webhooks, right after the dead run, beside the deliveries it left queued)", scIBeside(b), scINone(b), beside.rate/none.rate))
		}
		if none.rate > 0 && live.rate > 0 {
			lines = append(lines, fmt.Sprintf("  %s/%s = %.3f   (no floor)   (API throughput with %d webhooks at live receivers vs none)", scILive(b), scINone(b), live.rate/none.rate, benchWebhooks))
		}
		if live.rate > 0 && dead.rate > 0 {
			lines = append(lines, fmt.Sprintf("  %s/%s = %.3f   (no floor)   (a dead receiver vs a live one, %d webhooks each)", scIDead(b), scILive(b), dead.rate/live.rate, benchWebhooks))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\npartner webhooks: %d webhooks subscribed to \"*\", each on a loopback receiver of its own; the command mix of (c) over %d locks;\n", benchWebhooks, whLocks)
	fmt.Fprintf(w, "  webhook timeout %s (serve's default %s); a dead receiver reads each request and never answers\n", whTimeout, webhook.DefaultTimeout)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func benchWindow() int {
	n, _ := strconv.Atoi(os.Getenv("SPKEY_BENCH_WINDOW"))
	return n
}
