package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// The doorbell scenarios (f, g), one set per backend.
func scFAccept(backend string) string  { return "f-doorbell-accept-" + backend }
func scFDeliver(backend string) string { return "f-doorbell-deliver-" + backend }
func scG(backend string) string        { return "g-doorbell-stream-" + backend }

// ringResidents is how many residents each lock of scenario (f) has.
const ringResidents = 10

// goalGP99 is the p99 the report holds scenario (g) to: from the
// RingDoorbell answer to the event on each of the connected streams.
const goalGP99 = 50 * time.Millisecond

// How long the doorbell scenarios wait for deliveries before they count
// the missing ones as errors.
const (
	ringDrainTimeout   = 2 * time.Minute  // (f): the whole backlog of a run
	ringReceiptTimeout = 10 * time.Second // (g): one ring's receipts
)

// ringServer is a real spkey node (startSpkeyOn) over one store, with
// room for every live stream the doorbell scenarios open, and a tenant.
type ringServer struct {
	*spkeyServer
	backend string
	jwt     *auth.Verifier
	hdr     http.Header // Content-Type and X-API-Key of the tenant
	client  *http.Client
	streams *http.Client
	nextID  atomic.Int64
}

func startRingServer(ctx context.Context, backend string, st *store.Store, dir string, conns int) (*ringServer, error) {
	sp, err := startSpkeyOn(ctx, st, dir, server.Config{Notify: outbox.Config{Node: "bench-" + backend}, HTTP: httpapi.Config{MaxStreams: 1 << 20}})
	if err != nil {
		return nil, err
	}
	s := &ringServer{spkeyServer: sp, backend: backend, jwt: sp.node.Verifier, client: newLoadClient(conns), streams: newStreamClient(64)}
	t, err := sp.seedTenant(ctx, "bench-ring-org", 1, 0, conns)
	if err != nil {
		s.close()
		return nil, err
	}
	s.hdr = t.json
	return s, nil
}

// close stops the HTTP server (which ends the live streams), then the
// engine. The store is the caller's.
func (s *ringServer) close() {
	s.spkeyServer.close()
	s.client.CloseIdleConnections()
	s.streams.CloseIdleConnections()
}

func (s *ringServer) call(method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return httpDo(s.client, newRequest(method, s.base+path, b, s.hdr))
}

// addLock creates a new lock with n new residents through the API and
// returns its id and the residents' user ids.
func (s *ringServer) addLock(n int) (int64, []string, error) {
	id := s.nextID.Add(1)
	p := "/locks/" + strconv.FormatInt(id, 10)
	if err := s.call(http.MethodPost, p+"/CreateLock", map[string]any{"index": 1, "uuid": app.NewUUID()}); err != nil {
		return 0, nil, err
	}
	users := make([]string, n)
	for i := range users {
		u := app.NewUUID()
		if err := s.call(http.MethodPost, "/users/"+u+"/CreateUser", map[string]any{"userId": u, "email": "ring-" + u[:8] + "@example.com"}); err != nil {
			return 0, nil, err
		}
		if err := s.call(http.MethodPost, p+"/AddResident", map[string]any{"name": "Resident " + strconv.Itoa(i+1), "userId": u}); err != nil {
			return 0, nil, err
		}
		users[i] = u
	}
	return id, users, nil
}

// addLocks creates locks locks with n residents each, 8 at a time.
func (s *ringServer) addLocks(ctx context.Context, locks, n int) ([]int64, []string, error) {
	ids := make([]int64, locks)
	users := make([][]string, locks)
	errs := make([]error, locks)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range locks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() == nil {
				ids[i], users[i], errs[i] = s.addLock(n)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, nil, fmt.Errorf("bench: doorbell setup: %w", err)
	}
	var all []string
	for _, u := range users {
		all = append(all, u...)
	}
	return ids, all, nil
}

// ring rings lock id and returns the ring id once the answer is read.
func (s *ringServer) ring(id int64) (string, error) {
	req := newRequest(http.MethodPost, s.base+"/locks/"+strconv.FormatInt(id, 10)+"/RingDoorbell", []byte(`{"visitorName":"Bench"}`), s.hdr)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %d %s", req.URL.Path, resp.StatusCode, truncate(body, 300))
	}
	var out struct {
		RingID string `json:"ringId"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RingID == "" {
		return "", fmt.Errorf("POST %s: no ring id in %s", req.URL.Path, truncate(body, 300))
	}
	return out.RingID, nil
}

// ringBench runs the doorbell scenarios on one backend: (f) -conns
// clients ring ringLocks locks of 10 residents each, every resident
// streaming; (g) one client rings a lock of ringStreams residents, each
// streaming, one ring at a time.
type ringBench struct {
	srv      *ringServer
	conns    int
	fLocks   []int64
	fStreams *streamSet
	gLock    int64
	gStreams *streamSet
	gWant    int
	cursor   atomic.Int64
	deliver  result // (f): the delivery side of the latest run
	closeSt  func()
}

// newRingBench sets up the doorbell scenarios over st (closed with the
// bench by closeStore).
func newRingBench(ctx context.Context, backend string, st *store.Store, closeStore func(), dir string, conns, locks, streams int) (rb *ringBench, err error) {
	srv, err := startRingServer(ctx, backend, st, dir, conns)
	if err != nil {
		closeStore()
		return nil, err
	}
	rb = &ringBench{srv: srv, conns: conns, gWant: streams, closeSt: closeStore}
	built := rb // the returns below set rb to nil
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	var fUsers []string
	if rb.fLocks, fUsers, err = srv.addLocks(ctx, locks, ringResidents); err != nil {
		return nil, err
	}
	g, gUsers, err := srv.addLocks(ctx, 1, streams)
	if err != nil {
		return nil, err
	}
	rb.gLock = g[0]
	if rb.fStreams, err = srv.openStreams(ctx, fUsers); err != nil {
		return nil, err
	}
	if rb.gStreams, err = srv.openStreams(ctx, gUsers); err != nil {
		return nil, err
	}
	return rb, nil
}

func (rb *ringBench) close() {
	if rb.fStreams != nil {
		rb.fStreams.close()
	}
	if rb.gStreams != nil {
		rb.gStreams.close()
	}
	rb.srv.close()
	rb.closeSt()
}

// runF is scenario (f): -conns clients ring the locks round robin for d
// (closed loop); the result is the accepted rings (answer latency). The
// delivery side, kept in rb.deliver, counts a ring delivered when all 10
// of its residents' streams have it: its rate is delivered rings over the
// time from the first ring to the last receipt, its latency from a ring's
// answer to its last receipt, its errors the rings still incomplete
// ringDrainTimeout after the last answer.
func (rb *ringBench) runF(ctx context.Context, d time.Duration) (result, error) {
	if err := rb.fStreams.err(); err != nil {
		return result{}, err
	}
	tr := newRingTracker(ringResidents)
	rb.fStreams.sink.Store(tr)
	defer rb.fStreams.sink.Store(nil)
	start := time.Now()
	accepted := closedLoop(ctx, rb.conns, d, func(int) error {
		i := rb.cursor.Add(1)
		id, err := rb.srv.ring(rb.fLocks[int(i)%len(rb.fLocks)])
		if err != nil {
			return err
		}
		tr.answer(id, time.Now())
		return nil
	})
	tr.drain(ctx, ringDrainTimeout)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	del := result{n: tr.answered, elapsed: tr.last.Sub(start)}
	for id, r := range tr.rings {
		if r.answered.IsZero() {
			continue
		}
		if len(r.receipts) < tr.want {
			del.fail(fmt.Errorf("ring %s: %d of %d streams received it within %s", id, len(r.receipts), tr.want, ringDrainTimeout))
			continue
		}
		del.lat = append(del.lat, max(0, r.receipts[len(r.receipts)-1].Sub(r.answered)))
	}
	if tr.complete == 0 {
		del.elapsed = time.Since(start)
	}
	rb.deliver = merge([]result{del}, del.elapsed)
	return accepted, rb.fStreams.err()
}

// runG is scenario (g): one client rings the lock of gWant residents, waits
// until every resident's stream has the ring, and rings again, for d. The
// rate is rings/s; the latencies are one per receipt, from the ring's
// answer to that stream's event (0 when the event came first); the errors
// are rings some stream did not receive within ringReceiptTimeout.
func (rb *ringBench) runG(ctx context.Context, d time.Duration) (result, error) {
	if err := rb.gStreams.err(); err != nil {
		return result{}, err
	}
	tr := newRingTracker(rb.gWant)
	rb.gStreams.sink.Store(tr)
	defer rb.gStreams.sink.Store(nil)
	res, err := oneAtATime(ctx, d, tr, ringReceiptTimeout, "ring", "streams", func() (string, error) { return rb.srv.ring(rb.gLock) })
	if err != nil {
		return res, err
	}
	return res, rb.gStreams.err()
}

// oneAtATime sends one request at a time for d (send returns the id its
// receipts are tracked under in tr), waiting each time until tr has all
// receipts of it or timeout passes (an error naming what, of how many
// of whom). The rate is requests/s; the latencies are one per receipt,
// from send's answer to the receipt (0 when the receipt came first).
func oneAtATime(ctx context.Context, d time.Duration, tr *ringTracker, timeout time.Duration, what, whom string, send func() (string, error)) (result, error) {
	res := result{lat: make([]time.Duration, 0, 1024)}
	start := time.Now()
	for ctx.Err() == nil && time.Since(start) < d {
		res.n++
		id, err := send()
		if err != nil {
			res.fail(err)
			continue
		}
		at := time.Now()
		r := tr.answer(id, at)
		select {
		case <-r.full:
		case <-time.After(timeout):
			tr.mu.Lock()
			got := len(r.receipts)
			tr.mu.Unlock()
			res.fail(fmt.Errorf("%s %s: %d of %d %s received it within %s", what, id, got, tr.want, whom, timeout))
			continue
		case <-ctx.Done():
			return res, ctx.Err()
		}
		tr.mu.Lock()
		for _, rc := range r.receipts {
			res.lat = append(res.lat, max(0, rc.Sub(at)))
		}
		tr.mu.Unlock()
	}
	res.elapsed = time.Since(start)
	return merge([]result{res}, res.elapsed), nil
}

// doorbellScenarios sets up the doorbell scenarios on every backend of c
// and returns them, what they measure besides their own results, the
// PostgreSQL server's description and a func that tears them down.
func doorbellScenarios(ctx context.Context, c benchConfig, dir string) ([]scenario, map[string]alsoMeasured, string, func(), error) {
	var benches []*ringBench
	closeAll := func() {
		for _, rb := range benches {
			rb.close()
		}
	}
	var backends []string
	if c.db == "sqlite" || c.db == "both" {
		backends = append(backends, "sqlite")
	}
	if c.db == "postgres" || c.db == "both" {
		backends = append(backends, "postgres")
	}
	backends = slices.DeleteFunc(backends, func(b string) bool { return !c.wants(scFAccept(b), scFDeliver(b), scG(b)) })
	info := ""
	for _, b := range backends {
		var st *store.Store
		var closeStore func()
		switch b {
		case "sqlite":
			t, err := openESSQLite(ctx, filepath.Join(dir, "doorbell", "spkey.db"), 1)
			if err != nil {
				closeAll()
				return nil, nil, "", nil, err
			}
			st, closeStore = t.st, t.close
		case "postgres":
			// A fresh schema, dropped at the end, as scenario (e) uses.
			t, pgInfo, err := openESPostgres(ctx, c.pg, 1)
			if err != nil {
				closeAll()
				return nil, nil, "", nil, err
			}
			st, closeStore, info = t.st, t.close, pgInfo
		}
		rb, err := newRingBench(ctx, b, st, closeStore, filepath.Join(dir, "doorbell-"+b), c.conns, c.ringLocks, c.ringStreams)
		if err != nil {
			closeAll()
			return nil, nil, "", nil, err
		}
		benches = append(benches, rb)
	}
	var out []scenario
	also := map[string]alsoMeasured{}
	for i, rb := range benches {
		b := backends[i]
		out = append(out,
			scenario{name: scFAccept(b), run: func(ctx context.Context) (result, error) { return rb.runF(ctx, c.d) }},
			scenario{name: scG(b), run: func(ctx context.Context) (result, error) { return rb.runG(ctx, c.d) }},
		)
		also[scFAccept(b)] = alsoMeasured{names: []string{scFDeliver(b)}, results: func() []result { return []result{rb.deliver} }}
	}
	return out, also, info, closeAll, nil
}

// doorbellReport prints the doorbell ratios and the goal of (g).
func doorbellReport(w io.Writer, c benchConfig, meds map[string]med) {
	for _, b := range []string{"sqlite", "postgres"} {
		acc, del, g := meds[scFAccept(b)], meds[scFDeliver(b)], meds[scG(b)]
		if acc.rate > 0 {
			fmt.Fprintf(w, "  %s/%s = %.3f   (rings delivered to all 10 residents' streams vs rings accepted; 1 = delivery keeps up)\n", scFDeliver(b), scFAccept(b), del.rate/acc.rate)
			if cw := meds[scC]; cw.rate > 0 {
				fmt.Fprintf(w, "  %s/%s = %.3f   (a ring: 1 event and 10 outbox rows, vs a resident write; c is on SQLite)\n", scFAccept(b), scC, acc.rate/cw.rate)
			}
		}
		if g.rate > 0 {
			ok := g.p99 <= goalGP99.Seconds() && g.errs == 0
			fmt.Fprintf(w, "  p99(%s) = %s (p50 %s, %d streams, %.0f rings/s one at a time, errors %d)   goal <= %s   %s\n",
				scG(b), msf(g.p99), msf(g.p50), c.ringStreams, g.rate, g.errs, ms(goalGP99), passFail(ok))
		}
	}
}
