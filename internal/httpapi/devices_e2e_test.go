package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// End-to-end tests of the device commands: a real server with its
// embedded MQTT broker, a simulated lock logged in with the password the
// API issued, and the commands and action reads over real HTTP.

// e2eLock is the lock of every device test.
const e2eLock = 1001

// e2eWait bounds every wait on a condition.
const e2eWait = 20 * time.Second

// devEnv is a server with the device layer, org-a's key, lock 1001 of
// org-a and its password credentials.
type devEnv struct {
	srv   *testenv.Server
	key   string
	creds sim.Credentials
	lines *simLines
	// peers are the other nodes sharing e's database and broker: their
	// gateways answer some of the lock's requests.
	peers []*testenv.Server
}

// simLines collects what a sim lock prints.
type simLines struct {
	mu  sync.Mutex
	all []string
}

func (l *simLines) add(s string) { l.mu.Lock(); l.all = append(l.all, s); l.mu.Unlock() }

func (l *simLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func (l *simLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func newDevEnv(t *testing.T, b testenv.Backend, opt testenv.Options) *devEnv {
	t.Helper()
	opt.Devices = true
	srv := testenv.NewServer(t, b, opt)
	e := &devEnv{srv: srv, key: srv.Tenant(t, "org-a", false), lines: &simLines{}}
	api := &sim.API{Base: srv.URL, Key: e.key}
	ctx := context.Background()
	if created, err := api.EnsureLock(ctx, e2eLock); err != nil || !created {
		t.Fatalf("create lock %d: created %v, %v", e2eLock, created, err)
	}
	var err error
	if e.creds, err = api.Credentials(ctx, e2eLock, "password"); err != nil {
		t.Fatal(err)
	}
	return e
}

// newSim returns a sim lock of e's credentials on e's broker, not
// connected; it is closed at the end of the test.
func (e *devEnv) newSim(t *testing.T, cfg sim.Config) *sim.Lock {
	t.Helper()
	cfg.Thing, cfg.Print = e.creds.ThingName, e.lines.add
	cfg.Broker, cfg.Username, cfg.Password = "tcp://"+e.srv.MQTTAddr, e.creds.Username, e.creds.Password
	l, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// connect starts l and waits until the server holds its first report
// (so it is connected and subscribed).
func (e *devEnv) connect(t *testing.T, l *sim.Lock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	handled := func() int64 {
		n := e.srv.Gateway.Stats().Handled
		for _, o := range e.peers {
			n += o.Gateway.Stats().Handled
		}
		return n
	}
	before := handled()
	if err := l.Start(ctx); err != nil {
		t.Fatalf("start the sim lock: %v", err)
	}
	e.waitShadow(t, "the first report", func(d shadowSections) bool { return d.Reported["layout"] == float64(1) })
	// And its gets at connect (the classic shadow and every key page) are
	// answered: a later get would deliver the test's actions.
	for deadline := time.Now().Add(e2eWait); handled() < before+2+lock.KeyPages; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the lock's requests at connect: %d answered, want %d", handled()-before, 2+lock.KeyPages)
		}
	}
}

// shadowSections is the stored classic shadow's two sections.
type shadowSections struct {
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
}

// shadow is the lock's classic shadow.
func (e *devEnv) shadow(t *testing.T) shadowSections {
	t.Helper()
	return e.shadowOf(t, "")
}

// shadowOf is the lock's shadow name ("": classic, or a key page).
func (e *devEnv) shadowOf(t *testing.T, name string) shadowSections {
	t.Helper()
	raw, found, err := e.srv.Store.Shadow(context.Background(), e.creds.ThingName, name)
	if err != nil {
		t.Fatal(err)
	}
	var d shadowSections
	if found {
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (e *devEnv) waitShadow(t *testing.T, what string, ok func(shadowSections) bool) shadowSections {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		d := e.shadow(t)
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in the shadow within %v; shadow %+v; lock printed:\n%s", what, e2eWait, d, e.lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sectionOf(m map[string]any, name string) map[string]any {
	s, _ := m[name].(map[string]any)
	return s
}

// command posts a device command as org-a and requires 200.
func (e *devEnv) command(t *testing.T, name string, body map[string]any) map[string]any {
	t.Helper()
	return wireOK(t, e.srv, wireReq{Method: "POST", Path: fmt.Sprintf("/locks/%d/%s", e2eLock, name), Key: e.key, Body: body}, http.StatusOK)
}

// action reads action rid with ?wait= (none when "").
func (e *devEnv) action(t *testing.T, rid, wait string) map[string]any {
	t.Helper()
	p := fmt.Sprintf("/locks/%d/actions/%s", e2eLock, rid)
	if wait != "" {
		p += "?wait=" + wait
	}
	return wireOK(t, e.srv, wireReq{Method: "GET", Path: p, Key: e.key}, http.StatusOK)
}

// waitAction waits (GET ?wait=10s, again until e2eWait) until action rid
// leaves the open statuses, and requires status want.
func (e *devEnv) waitAction(t *testing.T, rid, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		a := e.action(t, rid, "10s")
		switch a["status"] {
		case "pending", "queued", "delivered":
			if time.Now().After(deadline) {
				t.Fatalf("action %s still %v after %v; lock printed:\n%s", rid, a["status"], e2eWait, e.lines)
			}
			continue
		}
		if a["status"] != want {
			t.Fatalf("action %s: %v, want %s; lock printed:\n%s", rid, a, want, e.lines)
		}
		return a
	}
}

// events returns every event of the lock (all pages), oldest first, each
// as {type, data}.
func (e *devEnv) events(t *testing.T) []map[string]any {
	t.Helper()
	var all []map[string]any
	for page := 1; ; page++ {
		got := wireOK(t, e.srv, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/%d/events?page=%d", e2eLock, page), Key: e.key}, http.StatusOK)
		evs, _ := got["events"].([]any)
		for _, ev := range evs {
			m, _ := ev.(map[string]any)
			all = append(all, m)
		}
		if total, _ := got["totalPages"].(float64); float64(page) >= total {
			return all
		}
	}
}

// trail is the events of request rid: the command's type, then the
// status of each LockActionUpdated ("LockOpenRequested", "pending", ...).
func (e *devEnv) trail(t *testing.T, rid string) []string {
	t.Helper()
	var out []string
	for _, ev := range e.events(t) {
		data, _ := ev["event"].(map[string]any)
		if data["requestId"] != rid {
			continue
		}
		if ev["type"] == "LockActionUpdated" {
			out = append(out, fmt.Sprint(data["status"]))
		} else {
			out = append(out, fmt.Sprint(ev["type"]))
		}
	}
	return out
}

// countType is how many events of type typ the lock has.
func (e *devEnv) countType(t *testing.T, typ string) int {
	t.Helper()
	n := 0
	for _, ev := range e.events(t) {
		if ev["type"] == typ {
			n++
		}
	}
	return n
}

// detailKeys is the keyUuids GET details lists.
func (e *devEnv) detailKeys(t *testing.T) []string {
	t.Helper()
	got := wireOK(t, e.srv, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/%d/details", e2eLock), Key: e.key}, http.StatusOK)
	keys := []string{}
	ks, _ := got["keys"].([]any)
	for _, k := range ks {
		m, _ := k.(map[string]any)
		keys = append(keys, fmt.Sprint(m["uuid"]))
	}
	return keys
}

func (e *devEnv) version(t *testing.T) float64 {
	t.Helper()
	v, _ := wireOK(t, e.srv, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/%d/basic-info", e2eLock), Key: e.key}, http.StatusOK)["version"].(float64)
	return v
}

// checkAnswer requires a device command's envelope: success, the event
// type, requestId rid ("" : any non-empty) and offline.
func checkAnswer(t *testing.T, got map[string]any, typ, rid string, offline bool) string {
	t.Helper()
	ev, _ := got["event"].(map[string]any)
	id, _ := got["requestId"].(string)
	if got["success"] != true || ev["type"] != typ || got["offline"] != offline || id == "" || (rid != "" && id != rid) {
		t.Fatalf("answer %v: want success, a %s event, requestId %q and offline %v", got, typ, rid, offline)
	}
	return id
}

func forBackends(t *testing.T, f func(t *testing.T, b testenv.Backend)) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) { f(t, b) })
	}
}

// TestDeviceOpenLockE2E: an OpenLock with the lock connected is pending,
// then succeeded; the lock's events tell it in order; the open request
// is in desired while the lock acts and leaves it with the result.
func TestDeviceOpenLockE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		e.connect(t, e.newSim(t, sim.Config{Delay: time.Second}))
		got := e.command(t, "OpenLock", map[string]any{"requestId": "open-e2e-1", "reason": "e2e"})
		checkAnswer(t, got, "LockOpenRequested", "open-e2e-1", false)
		if a := e.action(t, "open-e2e-1", ""); a["status"] != "pending" {
			t.Errorf("action right after the command: %v, want pending", a)
		}
		if sectionOf(e.shadow(t).Desired, "open")["open-e2e-1"] == nil {
			t.Errorf("desired.open has no open-e2e-1 while the lock acts: %v", e.shadow(t).Desired)
		}
		a := e.waitAction(t, "open-e2e-1", "succeeded")
		if a["action"] != "OpenLock" || a["lockId"] != float64(e2eLock) || a["error"] != nil {
			t.Errorf("action %v", a)
		}
		if diff := cmp.Diff([]string{"LockOpenRequested", "pending", "succeeded"}, e.trail(t, "open-e2e-1")); diff != "" {
			t.Errorf("events of open-e2e-1 (-want +got):\n%s", diff)
		}
		d := e.shadow(t)
		if sectionOf(d.Desired, "open")["open-e2e-1"] != nil {
			t.Errorf("desired.open still holds open-e2e-1 after its result: %v", d.Desired)
		}
		// spkey took the recorded result out of reported too, in the
		// same update: the lock reports nothing more about it.
		if _, ok := sectionOf(d.Reported, "open")["open-e2e-1"]; ok {
			t.Errorf("reported.open still holds open-e2e-1 after spkey recorded it: %v", d.Reported)
		}
		// (The lock reports the result, then drops it from reported once
		// the request left desired: the lines say what it did.)
		if n := e.lines.count("open open-e2e-1 succeeded"); n != 1 {
			t.Errorf("the lock opened %d times for open-e2e-1; printed:\n%s", n, e.lines)
		}
	})
}

// TestDeviceOpenLockFailsE2E: a lock failing every request fails the
// action with its error text.
func TestDeviceOpenLockFailsE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		e.connect(t, e.newSim(t, sim.Config{FailRate: 1}))
		rid := checkAnswer(t, e.command(t, "OpenLock", map[string]any{}), "LockOpenRequested", "", false)
		a := e.waitAction(t, rid, "failed")
		if a["error"] != sim.FailureMessage {
			t.Errorf("action %v: want error %q", a, sim.FailureMessage)
		}
		if diff := cmp.Diff([]string{"LockOpenRequested", "pending", "failed"}, e.trail(t, rid)); diff != "" {
			t.Errorf("events of %s (-want +got):\n%s", rid, diff)
		}
		if sectionOf(e.shadow(t).Desired, "open")[rid] != nil {
			t.Errorf("desired.open still holds the failed %s", rid)
		}
	})
}

// TestDeviceOfflineE2E: an OpenLock for an offline lock is queued; the
// lock coming online fetches it (delivered) and opens (succeeded).
func TestDeviceOfflineE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		l := e.newSim(t, sim.Config{Delay: 200 * time.Millisecond})
		checkAnswer(t, e.command(t, "OpenLock", map[string]any{"requestId": "client-req-3"}), "LockOpenRequested", "client-req-3", true)
		if a := e.action(t, "client-req-3", ""); a["status"] != "queued" {
			t.Fatalf("action of an offline lock: %v, want queued", a)
		}
		e.connect(t, l)
		e.waitAction(t, "client-req-3", "succeeded")
		if diff := cmp.Diff([]string{"LockOpenRequested", "queued", "delivered", "succeeded"}, e.trail(t, "client-req-3")); diff != "" {
			t.Errorf("events of client-req-3 (-want +got):\n%s", diff)
		}
	})
}

// TestDeviceExpiryE2E: an open the lock does not answer in time expires
// and leaves desired: the lock connecting later does not open.
func TestDeviceExpiryE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{ActionTimeout: 2 * time.Second})
		l := e.newSim(t, sim.Config{})
		asked := time.Now()
		checkAnswer(t, e.command(t, "OpenLock", map[string]any{"requestId": "late-1"}), "LockOpenRequested", "late-1", true)
		a := e.waitAction(t, "late-1", "expired")
		if took := time.Since(asked); took < 2*time.Second {
			t.Errorf("expired after %v, before its 2s timeout", took)
		}
		if a["expiresAt"] != nil {
			t.Logf("expired action keeps expiresAt %v", a["expiresAt"])
		}
		if sectionOf(e.shadow(t).Desired, "open")["late-1"] != nil {
			t.Fatalf("desired.open still holds the expired late-1: %v", e.shadow(t).Desired)
		}
		gets := e.lines.count("read (get)")
		e.connect(t, l)
		// A later open goes through the same lock after its catch-up get:
		// once it is reported, the lock has had every chance to act on
		// late-1.
		checkAnswer(t, e.command(t, "OpenLock", map[string]any{"requestId": "next-1"}), "LockOpenRequested", "next-1", false)
		e.waitAction(t, "next-1", "succeeded")
		if e.lines.count("read (get)") <= gets {
			t.Errorf("the lock read no shadow at its connection; printed:\n%s", e.lines)
		}
		if r := sectionOf(e.shadow(t).Reported, "open"); r["late-1"] != nil {
			t.Errorf("reported.open %v holds the expired late-1", r)
		}
		if e.lines.count("open next-1 succeeded") != 1 || e.lines.count("open late-1") != 0 {
			t.Errorf("the lock acted on the expired late-1:\n%s", e.lines)
		}
		if diff := cmp.Diff([]string{"LockOpenRequested", "queued", "expired"}, e.trail(t, "late-1")); diff != "" {
			t.Errorf("events of late-1 (-want +got):\n%s", diff)
		}
	})
}

// TestDeviceKeysE2E: AddKey then RemoveKey on a connected lock both
// succeed, and details follow.
func TestDeviceKeysE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		e.connect(t, e.newSim(t, sim.Config{}))
		const k = "wallet-key-e2e"
		rid := checkAnswer(t, e.command(t, "AddKey", map[string]any{"keyUuid": k, "keyIndexNumber": 4}), "KeyAdded", "", false)
		if a := e.waitAction(t, rid, "succeeded"); a["action"] != "AddKey" || a["keyUuid"] != k {
			t.Errorf("AddKey action %v", a)
		}
		if diff := cmp.Diff([]string{k}, e.detailKeys(t)); diff != "" {
			t.Errorf("details keys after AddKey (-want +got):\n%s", diff)
		}
		page := lock.KeyPage(k)
		if d := e.shadowOf(t, page); sectionOf(d.Reported, "keys")[k] == nil || sectionOf(d.Desired, "keys")[k] == nil {
			t.Errorf("key page %s does not hold %s in desired and reported: %+v", page, k, d)
		}
		rid = checkAnswer(t, e.command(t, "RemoveKey", map[string]any{"keyUuid": k, "requestId": "rm-1"}), "KeyRemoved", "rm-1", false)
		if a := e.waitAction(t, rid, "succeeded"); a["action"] != "RemoveKey" || a["keyUuid"] != k {
			t.Errorf("RemoveKey action %v", a)
		}
		if diff := cmp.Diff([]string{}, e.detailKeys(t)); diff != "" {
			t.Errorf("details keys after RemoveKey (-want +got):\n%s", diff)
		}
		if d := e.shadowOf(t, page); sectionOf(d.Reported, "keys")[k] != nil || sectionOf(d.Desired, "keys")[k] != nil {
			t.Errorf("key page %s still holds %s: %+v", page, k, d)
		}
	})
}

// samePageKeys returns n keyUuids of 128 characters that all live in
// one key page, and that page.
func samePageKeys(n int) ([]string, string) {
	page := lock.KeyPage(strings.Repeat("x", lock.MaxKeyUUIDLen))
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("k%06d-", i)
		k += strings.Repeat("x", lock.MaxKeyUUIDLen-len(k))
		if lock.KeyPage(k) == page {
			keys = append(keys, k)
		}
	}
	return keys, page
}

// TestDeviceShadowRefusesE2E: keys of one key page are added until the
// page's size limit refuses the desired state: that AddKey answers 502
// and records nothing.
func TestDeviceShadowRefusesE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		const most = 60 // below lock.MaxOpenActions: the lock is offline
		keys, page := samePageKeys(most)
		key := func(i int) string { return keys[i] }
		for i := 0; ; i++ {
			if i >= most {
				t.Fatalf("%d keys of 128 characters in page %s and no refusal", i, page)
			}
			path := fmt.Sprintf("/locks/%d/AddKey", e2eLock)
			req := wireReq{Method: "POST", Path: path, Key: e.key, Body: map[string]any{"keyUuid": key(i)}}
			before, ver, keys, classic, paged := wireSnapshot(t, e.srv), e.version(t), e.detailKeys(t), e.shadow(t), e.shadowOf(t, page)
			resp := wireDo(t, e.srv, req)
			if resp.Status == http.StatusOK {
				continue
			}
			if resp.Status != http.StatusBadGateway || i < 10 {
				t.Fatalf("AddKey %d: %d %s; want 200 until the shadow is full, then 502", i, resp.Status, resp.Raw)
			}
			body := resp.Obj(t)
			msg, _ := body["message"].(string)
			if body["error"] != "Bad Gateway" || body["code"] != float64(502) || body["success"] != false || !strings.Contains(msg, "refused") {
				t.Errorf("502 envelope %s", resp.Raw)
			}
			wireUnchanged(t, e.srv, before)
			if v := e.version(t); v != ver {
				t.Errorf("lock version %v after the refusal, was %v", v, ver)
			}
			if diff := cmp.Diff(keys, e.detailKeys(t)); diff != "" {
				t.Errorf("details keys changed by the refusal (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(classic, e.shadow(t)); diff != "" {
				t.Errorf("classic shadow changed by the refusal (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(paged, e.shadowOf(t, page)); diff != "" {
				t.Errorf("key page %s changed by the refusal (-before +after):\n%s", page, diff)
			}
			if n := len(sectionOf(paged.Desired, "keys")); n != i {
				t.Errorf("key page %s holds %d desired keys, want %d", page, n, i)
			}
			if len(keys) != i {
				t.Errorf("%d keys before the refusal, want %d", len(keys), i)
			}
			t.Logf("page %s refused key %d: %s", page, i, msg)
			// The refused key leaves no action behind.
			resp = wireDo(t, e.srv, wireReq{Method: "POST", Path: path, Key: e.key, Body: map[string]any{"keyUuid": key(i), "requestId": "after-refusal"}})
			if resp.Status != http.StatusBadGateway {
				t.Errorf("the same AddKey again: %d %s, want 502", resp.Status, resp.Raw)
			}
			if r := wireDo(t, e.srv, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/%d/actions/after-refusal", e2eLock), Key: e.key}); r.Status != http.StatusNotFound {
				t.Errorf("action of a refused command: %d %s, want 404", r.Status, r.Raw)
			}
			// Another page still takes keys.
			other := "other-page-key"
			for i := 0; lock.KeyPage(other) == page; i++ {
				other = fmt.Sprintf("other-page-key-%d", i)
			}
			wireOK(t, e.srv, wireReq{Method: "POST", Path: path, Key: e.key, Body: map[string]any{"keyUuid": other}}, http.StatusOK)
			return
		}
	})
}

// TestDeviceRestartE2E: an OpenLock queued for an offline lock survives a
// restart of the server on the same database: the lock connecting to the
// new server opens.
func TestDeviceRestartE2E(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spkey.db")
	open := func() *testenv.Server {
		st, err := server.OpenStore(ctx, server.StoreConfig{SQLite: path}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{Devices: true, Store: st})
		t.Cleanup(func() { srv.Stop(); _ = st.Close() })
		return srv
	}
	first := open()
	e := &devEnv{srv: first, key: first.Tenant(t, "org-a", false), lines: &simLines{}}
	api := &sim.API{Base: first.URL, Key: e.key}
	if created, err := api.EnsureLock(ctx, e2eLock); err != nil || !created {
		t.Fatalf("create lock: %v %v", created, err)
	}
	var err error
	if e.creds, err = api.Credentials(ctx, e2eLock, "password"); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, e.command(t, "OpenLock", map[string]any{"requestId": "across-restart"}), "LockOpenRequested", "across-restart", true)
	if a := e.action(t, "across-restart", ""); a["status"] != "queued" {
		t.Fatalf("action before the restart: %v", a)
	}
	first.Stop()
	if err := first.Store.Close(); err != nil {
		t.Fatalf("close the first store: %v", err)
	}
	e.srv = open()
	if a := e.action(t, "across-restart", ""); a["status"] != "queued" {
		t.Fatalf("action after the restart: %v, want queued", a)
	}
	e.connect(t, e.newSim(t, sim.Config{}))
	e.waitAction(t, "across-restart", "succeeded")
	if diff := cmp.Diff([]string{"LockOpenRequested", "queued", "delivered", "succeeded"}, e.trail(t, "across-restart")); diff != "" {
		t.Errorf("events of across-restart (-want +got):\n%s", diff)
	}
}

// TestDeviceActionRouteE2E: who may read an action, and the bounds of
// ?wait=.
func TestDeviceActionRouteE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		keyB := e.srv.Tenant(t, "org-b", false)
		checkAnswer(t, e.command(t, "OpenLock", map[string]any{"requestId": "q-1"}), "LockOpenRequested", "q-1", true)
		path := fmt.Sprintf("/locks/%d/actions/", e2eLock)
		before := wireSnapshot(t, e.srv)
		if r := wireDo(t, e.srv, wireReq{Method: "GET", Path: path + "q-1", Key: keyB}); r.Status != http.StatusForbidden {
			t.Errorf("another tenant's key: %d %s, want 403", r.Status, r.Raw)
		}
		if r := wireDo(t, e.srv, wireReq{Method: "GET", Path: path + "q-1"}); r.Status != http.StatusUnauthorized {
			t.Errorf("no credentials: %d %s, want 401", r.Status, r.Raw)
		}
		if r := wireDo(t, e.srv, wireReq{Method: "GET", Path: path + "no-such-request", Key: e.key}); r.Status != http.StatusNotFound {
			t.Errorf("unknown requestId: %d %s, want 404", r.Status, r.Raw)
		}
		if r := wireDo(t, e.srv, wireReq{Method: "GET", Path: "/locks/4242/actions/q-1", Key: e.key}); r.Status != http.StatusNotFound {
			t.Errorf("unknown lock: %d %s, want 404", r.Status, r.Raw)
		}
		for _, w := range []string{"soon", "-1s", "1x", "-3"} {
			r := wireDo(t, e.srv, wireReq{Method: "GET", Path: path + "q-1?wait=" + w, Key: e.key})
			if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Raw), "wait") {
				t.Errorf("wait=%s: %d %s, want 400 naming wait", w, r.Status, r.Raw)
			}
		}
		start := time.Now()
		a := e.action(t, "q-1", "1s")
		if took := time.Since(start); a["status"] != "queued" || took < time.Second || took > 10*time.Second {
			t.Errorf("wait=1s on a queued action: %v after %v, want queued after about 1s", a["status"], took)
		}
		start = time.Now()
		if a := e.action(t, "q-1", "2"); a["status"] != "queued" || time.Since(start) < 2*time.Second {
			t.Errorf("wait=2 (seconds): %v after %v", a["status"], time.Since(start))
		}
		wireUnchanged(t, e.srv, before)
	})
}

// TestDeviceIdempotentOpenE2E: an OpenLock retried with its
// Idempotency-Key opens once and answers the same requestId, replayed.
func TestDeviceIdempotentOpenE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		e.connect(t, e.newSim(t, sim.Config{}))
		req := wireReq{Method: "POST", Path: fmt.Sprintf("/locks/%d/OpenLock", e2eLock), Key: e.key,
			Header: map[string]string{"Idempotency-Key": "open-once"}, Body: map[string]any{"reason": "retry"}}
		r1 := wireDo(t, e.srv, req)
		if r1.Status != http.StatusOK || r1.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first call: %d Idempotent-Replayed=%q %s", r1.Status, r1.Header.Get("Idempotent-Replayed"), r1.Raw)
		}
		rid := checkAnswer(t, r1.Obj(t), "LockOpenRequested", "", false)
		e.waitAction(t, rid, "succeeded")
		r2 := wireDo(t, e.srv, req)
		if r2.Status != http.StatusOK || r2.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry: %d Idempotent-Replayed=%q, want 200 and true", r2.Status, r2.Header.Get("Idempotent-Replayed"))
		}
		if diff := cmp.Diff(r1.JSON, r2.JSON); diff != "" {
			t.Errorf("replayed answer differs (-first +retry):\n%s", diff)
		}
		if n := e.countType(t, "LockOpenRequested"); n != 1 {
			t.Errorf("%d LockOpenRequested events, want 1", n)
		}
		if diff := cmp.Diff([]string{"LockOpenRequested", "pending", "succeeded"}, e.trail(t, rid)); diff != "" {
			t.Errorf("events of %s (-want +got):\n%s", rid, diff)
		}
	})
}
