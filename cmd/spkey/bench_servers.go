package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// httpTarget is an http.Server on a loopback port.
type httpTarget struct {
	base string
	srv  *http.Server
}

// listen serves h on 127.0.0.1:0 with serve.go's timeouts.
func listen(h http.Handler) (*httpTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &httpTarget{base: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (t *httpTarget) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.srv.Shutdown(ctx); err != nil {
		_ = t.srv.Close()
	}
}

// bareBody is the fixed answer of the HTTP ceiling: 100 bytes of JSON.
var bareBody = func() []byte {
	b := []byte(`{"success":true,"message":"spkey bench bare handler","pad":"`)
	for len(b) < 98 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}()

// bareServer is scenario (a): a net/http handler that does nothing but
// answer bareBody.
type bareServer struct {
	*httpTarget
	url string
}

func startBare() (*bareServer, error) {
	length := strconv.Itoa(len(bareBody))
	t, err := listen(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(bareBody)
	}))
	if err != nil {
		return nil, err
	}
	return &bareServer{httpTarget: t, url: t.base + "/bare"}, nil
}

func (b *bareServer) get() *http.Request { return newRequest(http.MethodGet, b.url, nil, nil) }

func (b *bareServer) close() { b.shutdown() }

// spkeyServer is a real spkey assembled as serve.go does it: the store
// (SQLite at the default durability, WAL and synchronous=FULL, unless
// given), the notification engine with its hub, app, the partner webhook
// dispatcher registered on the engine, verifier, httpapi and an
// http.Server on a loopback port.
type spkeyServer struct {
	*httpTarget
	st     *store.Store
	svc    *app.Service
	apiKey string
	json   http.Header // Content-Type and X-API-Key of the tenant
	stop   func()      // stops the engine and waits for it
	// closeStore closes the store (and drops a PostgreSQL schema).
	closeStore func()

	residentsLock int64 // the lock of scenario (b), with two residents
	residentsURL  string
	users         []string // users[i] is the resident of lock i+1 in scenario (c)
}

// requestLog is the servers' logger: request lines are formatted as in
// production and thrown away, so the cost of building them counts and the
// terminal's does not.
func requestLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startSpkey(ctx context.Context, dir string) (*spkeyServer, error) {
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "spkey.db"), store.SQLiteOptions{}, requestLog())
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	s, err := startSpkeyOn(ctx, st, dir, "bench", webhook.Config{})
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// startSpkeyOn serves spkey over st (migrated; close closes it, unless
// closeStore is replaced) with its JWT key in dir, as node, its partner
// deliveries tuned by wcfg. Webhook URLs may be http and on loopback, as
// the bench's receivers are.
func startSpkeyOn(ctx context.Context, st *store.Store, dir, node string, wcfg webhook.Config) (*spkeyServer, error) {
	log := requestLog()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(dir, "jwt-signing-key.pem")})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	appends := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_appends_total", Help: "Events appended to the event store."})
	conflicts := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_conflicts_total", Help: "Appends refused with a version conflict (retried)."})
	batches := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spkey_store_batch_size", Help: "Commands committed together by the SQLite writer (group commit).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}})
	reg.MustRegister(appends, conflicts, batches)
	st.SetHooks(store.Hooks{Appended: func(n int) { appends.Add(float64(n)) }, Conflict: conflicts.Inc, Batch: func(n int) { batches.Observe(float64(n)) }})
	hub := notify.NewHub()
	engine := notify.New(st, hub, notify.Config{Node: node, Observe: notifyMetrics(reg)}, log)
	safety := netsafe.Policy{AllowHTTP: true, AllowPrivate: true}
	svc := app.New(st, app.Options{Queued: engine.Queued, Safety: safety, Waker: app.WakerOf(hub.Subscribe)}, log)
	wcfg.Safety = safety
	webhook.New(st, svc, wcfg, log).Register(engine)
	streamStop := make(chan struct{})
	h := httpapi.New(httpapi.Config{Version: version, AdminAPIKey: app.RandomAlnum(32), CORSOrigins: map[string]bool{},
		StreamStop: streamStop}, svc, verifier, st, reg, log)
	t, err := listen(h)
	if err != nil {
		return nil, err
	}
	t.srv.RegisterOnShutdown(func() { close(streamStop) })
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = engine.Run(ectx) }()
	return &spkeyServer{httpTarget: t, st: st, svc: svc, stop: func() { cancel(); <-done }, closeStore: func() { _ = st.Close() }}, nil
}

// close stops the HTTP server, then the engine, then closes the store.
func (s *spkeyServer) close() {
	s.shutdown()
	s.stop()
	s.closeStore()
}

// call sends one setup request and fails unless it answers 2xx.
func (s *spkeyServer) call(client *http.Client, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return httpDo(client, newRequest(method, s.base+path, b, s.json))
}

// benchTenant is a tenant seeded on a server: its key's headers and the
// resident user of each of its locks.
type benchTenant struct {
	s         *spkeyServer
	org       string
	json      http.Header // Content-Type and X-API-Key of the tenant
	firstLock int         // users[i] belongs to lock firstLock+i
	users     []string
}

// seedTenant registers org (in-process, as `spkey tenant create` does)
// and, through the HTTP API with its key, creates locks firstLock,
// firstLock+1, ... (locks of them) and one user per lock.
func (s *spkeyServer) seedTenant(ctx context.Context, org string, firstLock, locks, conns int) (benchTenant, error) {
	admin := app.Principal{Admin: true, Email: "bench"}
	if _, err := s.svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register " + org}, org, "Bench "+org, ""); err != nil {
		return benchTenant{}, fmt.Errorf("bench: register tenant: %w", err)
	}
	k, err := s.svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: org}, false)
	if err != nil {
		return benchTenant{}, fmt.Errorf("bench: issue key: %w", err)
	}
	t := benchTenant{s: s, org: org, json: http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {k.APIKey}}, firstLock: firstLock, users: make([]string, locks)}
	for i := range t.users {
		t.users[i] = app.NewUUID()
	}
	client := newLoadClient(conns)
	defer client.CloseIdleConnections()
	call := func(path string, body any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		return httpDo(client, newRequest(http.MethodPost, s.base+path, b, t.json))
	}
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			for i := w; i < locks && errs[w] == nil && ctx.Err() == nil; i += conns {
				id := strconv.Itoa(firstLock + i)
				errs[w] = call("/locks/"+id+"/CreateLock", map[string]any{"index": 1, "uuid": app.NewUUID(), "serialNumber": "BENCH-" + id})
				if errs[w] == nil {
					u := t.users[i]
					errs[w] = call("/users/"+u+"/CreateUser", map[string]any{"userId": u, "email": "bench-" + id + "@example.com"})
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return benchTenant{}, fmt.Errorf("bench: seed %s: %w", org, err)
	}
	return t, nil
}

// seed registers a tenant and creates locks 1..locks with one user each
// for scenario (c) (seedTenant), plus a lock with two residents for
// scenario (b).
func (s *spkeyServer) seed(ctx context.Context, locks, conns int) error {
	t, err := s.seedTenant(ctx, "bench-org", 1, locks, conns)
	if err != nil {
		return err
	}
	s.apiKey, s.json, s.users = t.json.Get("X-Api-Key"), t.json, t.users
	client := newLoadClient(conns)
	defer client.CloseIdleConnections()

	s.residentsLock = int64(locks + 1)
	id := strconv.FormatInt(s.residentsLock, 10)
	if err := s.call(client, http.MethodPost, "/locks/"+id+"/CreateLock", map[string]any{"index": 1, "uuid": app.NewUUID()}); err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	for _, name := range []string{"Alice", "Bob"} {
		u := app.NewUUID()
		if err := s.call(client, http.MethodPost, "/users/"+u+"/CreateUser", map[string]any{"userId": u, "email": strings.ToLower(name) + "@example.com"}); err != nil {
			return fmt.Errorf("bench: seed: %w", err)
		}
		if err := s.call(client, http.MethodPost, "/locks/"+id+"/AddResident", map[string]any{"name": name, "userId": u}); err != nil {
			return fmt.Errorf("bench: seed: %w", err)
		}
	}
	s.residentsURL = s.base + "/locks/" + id + "/residents"
	// Check the answer once, so that (b) measures what it claims to.
	resp, err := client.Get(s.residentsURL)
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Residents []json.RawMessage `json:"residents"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Residents) != 2 {
		return fmt.Errorf("bench: seed: residents of lock %s: status %d, %d residents, %v", id, resp.StatusCode, len(out.Residents), err)
	}
	return nil
}

// residentsReq is scenario (b): the public residents list, anonymous.
func (s *spkeyServer) residentsReq() *http.Request {
	return newRequest(http.MethodGet, s.residentsURL, nil, nil)
}

// residentToggler drives scenario (c): lock i+1 alternates between adding
// users[i] as a resident and removing it, so every request succeeds. It
// remembers where each lock stands across rounds.
type residentToggler struct {
	json     http.Header
	present  []bool // present[i]: users[i] is on lock i+1 now
	add, rm  [][]byte
	addURL   []string
	rmURL    []string
	cursor   []int // closed loop: per worker, how many of its locks it visited
	mu       sync.Mutex
	rrCursor int // constant rate: the next lock
}

func newResidentToggler(s *spkeyServer, locks, workers int) *residentToggler {
	return newTenantToggler(benchTenant{s: s, json: s.json, firstLock: 1, users: s.users}, locks, workers)
}

// newTenantToggler is newResidentToggler over tenant t's locks: its lock
// firstLock+i toggles users[i].
func newTenantToggler(t benchTenant, locks, workers int) *residentToggler {
	g := &residentToggler{json: t.json, cursor: make([]int, workers), present: make([]bool, locks), add: make([][]byte, locks), rm: make([][]byte, locks), addURL: make([]string, locks), rmURL: make([]string, locks)}
	for i := range locks {
		id := strconv.Itoa(t.firstLock + i)
		g.add[i] = []byte(`{"name":"Resident ` + id + `","userId":"` + t.users[i] + `"}`)
		g.rm[i] = []byte(`{"userId":"` + t.users[i] + `"}`)
		g.addURL[i] = t.s.base + "/locks/" + id + "/AddResident"
		g.rmURL[i] = t.s.base + "/locks/" + id + "/RemoveResident"
	}
	return g
}

// flip returns the request that moves lock i to its other state.
func (t *residentToggler) flip(i int) (url string, body []byte) {
	if t.present[i] {
		url, body = t.rmURL[i], t.rm[i]
	} else {
		url, body = t.addURL[i], t.add[i]
	}
	t.present[i] = !t.present[i]
	return url, body
}

// next is the closed loop's request for worker w of workers: the worker
// owns the locks i with i%workers == w and walks them round robin, so no
// two requests for one lock are ever in flight together.
func (t *residentToggler) next(w int) *http.Request {
	workers := len(t.cursor)
	owned := (len(t.present) - w + workers - 1) / workers
	i := w + (t.cursor[w]%owned)*workers
	t.cursor[w]++
	url, body := t.flip(i)
	return newRequest(http.MethodPost, url, body, t.json)
}

// targeter is the constant-rate run's: all locks round robin. At 1,000
// locks and 1,000 req/s a lock comes round once a second, far longer than
// one request takes, so its add and remove never overlap.
func (t *residentToggler) targeter() vegeta.Targeter {
	return func(tgt *vegeta.Target) error {
		t.mu.Lock()
		i := t.rrCursor % len(t.present)
		t.rrCursor++
		url, body := t.flip(i)
		t.mu.Unlock()
		*tgt = vegeta.Target{Method: http.MethodPost, URL: url, Body: body, Header: t.json}
		return nil
	}
}
