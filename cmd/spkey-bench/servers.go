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

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// httpTarget is an http.Server of the bench's own (the bare handler, the
// webhook receivers) on a loopback port.
type httpTarget struct {
	base string
	srv  *http.Server
}

// listen serves h on 127.0.0.1:0 with serve's timeouts.
func listen(h http.Handler) (*httpTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	srv := server.HTTPServer(h, server.DefaultTimeouts)
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

// spkeyServer is a real spkey node, built by internal/server as `spkey
// serve` builds its own (the store at the default durability, SQLite WAL
// and synchronous=FULL, unless given; the outbox engine with the partner
// webhook dispatcher; app; httpapi), served on a loopback port.
type spkeyServer struct {
	base   string
	node   *server.Node
	st     *store.Store
	svc    *app.Service
	apiKey string
	json   http.Header // Content-Type and X-API-Key of the tenant
	// closeStore closes the store (and drops a PostgreSQL schema).
	closeStore func()

	residentsLock int64 // the lock of scenario (b), with two residents
	residentsURL  string
	users         []string // users[i] is the resident of lock i+1 in scenario (c)
}

// requestLog is the servers' logger: the lines serve's default access log
// writes (errors) are formatted as in production and thrown away, so the
// cost of building them counts and the terminal's does not.
func requestLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startSpkey(ctx context.Context, dir string) (*spkeyServer, error) {
	st, err := server.OpenStore(ctx, server.StoreConfig{SQLite: filepath.Join(dir, "spkey.db")}, requestLog())
	if err != nil {
		return nil, err
	}
	s, err := startSpkeyOn(ctx, st, dir, server.Config{Notify: outbox.Config{Node: "bench"}})
	if err != nil {
		st.Close()
		return nil, err
	}
	s.closeStore = func() { _ = st.Close() }
	return s, nil
}

// startSpkeyOn serves a node of cfg over st (migrated; closing it is the
// caller's: see closeStore) with its JWT key in dir. It sets cfg's store,
// verifier, logger, admin key and the URL policy: webhook URLs may be http
// and on loopback, as the bench's receivers are.
func startSpkeyOn(ctx context.Context, st *store.Store, dir string, cfg server.Config) (*spkeyServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(dir, "jwt-signing-key.pem")})
	if err != nil {
		return nil, err
	}
	cfg.Store, cfg.Verifier, cfg.Log, cfg.StoreMetrics = st, verifier, requestLog(), true
	cfg.App.Safety = netsafe.Policy{AllowHTTP: true, AllowPrivate: true}
	cfg.HTTP.Version, cfg.HTTP.AdminAPIKey, cfg.HTTP.CORSOrigins = version, app.RandomAlnum(32), map[string]bool{}
	cfg.Timeouts = server.DefaultTimeouts
	cfg.HTTP.AccessLog = httpapi.DefaultAccessLog // as spkey serve
	node := server.New(cfg)
	base, err := node.ServeOn("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := node.Start(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &spkeyServer{base: base, node: node, st: st, svc: node.Svc, closeStore: func() {}}, nil
}

// close stops the HTTP server (which ends the live streams), then the
// engine, then closes the store.
func (s *spkeyServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.node.Shutdown(ctx); err != nil {
		_ = s.node.Close()
	}
	s.node.Stop()
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
