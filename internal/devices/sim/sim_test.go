package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const wait = 20 * time.Second

// env is a real spkey server with its device layer, a tenant and one
// simulated lock created and credentialed through the API.
type env struct {
	srv   *testenv.Server
	lock  *sim.Lock
	thing string
	lines *lines
}

// lines collects what a Lock prints.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.all = append(l.all, s); l.mu.Unlock() }

func (l *lines) count(sub string) int {
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

func (l *lines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.all {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// newEnv starts a server, creates lock 1001 with a tenant key, fetches its
// password (or certificate) through the API and starts a sim lock with
// cfg's tuning.
func newEnv(t *testing.T, b testenv.Backend, cfg sim.Config, certificate bool) *env {
	t.Helper()
	ctx := context.Background()
	srv := testenv.NewServer(t, b, testenv.Options{Devices: true})
	api := &sim.API{Base: srv.URL, Key: srv.Tenant(t, "org-a", false)}
	created, err := api.EnsureLock(ctx, 1001)
	if err != nil || !created {
		t.Fatalf("create lock 1001: created %v, %v", created, err)
	}
	if again, err := api.EnsureLock(ctx, 1001); err != nil || again {
		t.Fatalf("create lock 1001 again: created %v, %v; want an existing lock left alone", again, err)
	}
	kind := "password"
	if certificate {
		kind = "certificate"
	}
	creds, err := api.Credentials(ctx, 1001, kind)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, thing: creds.ThingName, lines: &lines{}}
	cfg.Thing, cfg.Print = creds.ThingName, e.lines.add
	if certificate {
		if cfg.TLS, err = creds.TLS("127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		cfg.Broker = "ssl://" + creds.MQTTSEndpoint
	} else {
		cfg.Broker, cfg.Username, cfg.Password = "tcp://"+creds.MQTTEndpoint, creds.Username, creds.Password
	}
	if e.lock, err = sim.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.lock.Close)
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := e.lock.Start(sctx); err != nil {
		t.Fatalf("start the sim lock: %v", err)
	}
	// Online: its first report is in the shadow.
	e.waitReported(t, "the first report", func(r map[string]any) bool { return r["layout"] == float64(1) && r["lock"] == "locked" })
	return e
}

// shadowDoc is the stored shadow's two sections.
type shadowDoc struct {
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
}

func (e *env) shadow(t *testing.T) shadowDoc {
	t.Helper()
	read := func(name string) shadowDoc {
		raw, found, err := e.srv.Store.Shadow(context.Background(), e.thing, name)
		if err != nil {
			t.Fatal(err)
		}
		var d shadowDoc
		if found {
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	// The classic shadow, with the keys of every key page merged in.
	d := read("")
	for i := range lock.KeyPages {
		page := read(fmt.Sprintf("%s%02d", lock.KeyPagePrefix, i))
		for _, sec := range []struct{ from, to *map[string]any }{{&page.Desired, &d.Desired}, {&page.Reported, &d.Reported}} {
			keys := section(*sec.from, "keys")
			if len(keys) == 0 {
				continue
			}
			if *sec.to == nil {
				*sec.to = map[string]any{}
			}
			all := section(*sec.to, "keys")
			if all == nil {
				all = map[string]any{}
				(*sec.to)["keys"] = all
			}
			for k, v := range keys {
				all[k] = v
			}
		}
	}
	return d
}

// waitReported waits until ok holds for the shadow's reported section.
func (e *env) waitReported(t *testing.T, what string, ok func(reported map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		r := e.shadow(t).Reported
		if r != nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reported within %v; reported %v; lock printed %v", what, wait, r, e.lines.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// desire writes desired (a JSON object) into the lock's shadows as spkey's
// commands do: the keys into their key pages (lock.KeyPage), the rest into
// the classic shadow, with UpdateDesired in one store transaction, the
// deltas published after the commit.
func (e *env) desire(t *testing.T, desired string) {
	t.Helper()
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(desired), &all); err != nil {
		t.Fatal(err)
	}
	patches := map[string]map[string]any{}
	if raw, ok := all["keys"]; ok {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
		for k, v := range keys {
			p := lock.KeyPage(k)
			if patches[p] == nil {
				patches[p] = map[string]any{"layout": 1, "keys": map[string]any{}}
			}
			patches[p]["keys"].(map[string]any)[k] = v
		}
		delete(all, "keys")
	}
	if len(all) > 0 {
		classic := map[string]any{}
		for k, v := range all {
			classic[k] = v
		}
		patches[""] = classic
	}
	var afters []func()
	err := e.srv.Store.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		afters = nil
		for name, patch := range patches {
			b, err := json.Marshal(patch)
			if err != nil {
				return err
			}
			after, err := e.srv.Gateway.UpdateDesired(ctx, tx, e.thing, name, b, "", time.Now().Unix())
			if err != nil {
				return err
			}
			afters = append(afters, after)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("update desired: %v", err)
	}
	for _, a := range afters {
		a()
	}
}

func section(r map[string]any, name string) map[string]any {
	m, _ := r[name].(map[string]any)
	return m
}

// TestLockKeys: a key written into desired is reported with the same
// fields and values; one removed from desired is removed from reported.
func TestLockKeys(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t, b, sim.Config{}, false)
			at := time.Now().Unix()
			e.desire(t, fmt.Sprintf(`{"layout":1,"keys":{"6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40":{"at":%d,"index":3},"wallet-key-7":{"at":%d}}}`, at, at+1))
			want := map[string]any{
				"6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40": map[string]any{"at": float64(at), "index": float64(3)},
				"wallet-key-7":                         map[string]any{"at": float64(at + 1)},
			}
			r := e.waitReported(t, "the desired keys", func(r map[string]any) bool { return len(section(r, "keys")) == 2 })
			if diff := cmp.Diff(want, section(r, "keys")); diff != "" {
				t.Errorf("reported keys (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(section(e.shadow(t).Desired, "keys"), section(r, "keys")); diff != "" {
				t.Errorf("reported keys differ from desired (-desired +reported):\n%s", diff)
			}

			e.desire(t, `{"keys":{"wallet-key-7":null}}`)
			r = e.waitReported(t, "the removal", func(r map[string]any) bool { return len(section(r, "keys")) == 1 })
			delete(want, "wallet-key-7")
			if diff := cmp.Diff(want, section(r, "keys")); diff != "" {
				t.Errorf("reported keys after the removal (-want +got):\n%s", diff)
			}
			if !e.lines.has("key wallet-key-7 removed") {
				t.Errorf("no line for the removal in %v", e.lines.all)
			}
		})
	}
}

// TestLockRequests: an open and a writeKey request are reported
// succeeded, with their desired fields, after the delay; a doorbell press
// is reported with its pressId.
func TestLockRequests(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t, b, sim.Config{Delay: 50 * time.Millisecond}, false)
			at := time.Now().Unix()
			e.desire(t, fmt.Sprintf(`{"open":{"r-1":{"at":%d}},"writeKey":{"w-1":{"at":%d,"keyUuid":"wallet-key-7"}}}`, at, at))
			r := e.waitReported(t, "the results", func(r map[string]any) bool {
				return section(r, "open")["r-1"] != nil && section(r, "writeKey")["w-1"] != nil
			})
			want := map[string]any{
				"open":     map[string]any{"r-1": map[string]any{"at": float64(at), "result": "succeeded"}},
				"writeKey": map[string]any{"w-1": map[string]any{"at": float64(at), "keyUuid": "wallet-key-7", "result": "succeeded"}},
			}
			if diff := cmp.Diff(want, map[string]any{"open": r["open"], "writeKey": r["writeKey"]}); diff != "" {
				t.Errorf("reported results (-want +got):\n%s", diff)
			}
			for _, l := range []string{"lock-1001: open r-1 succeeded", "lock-1001: writeKey w-1 (key wallet-key-7) succeeded"} {
				if !e.lines.has(l) {
					t.Errorf("no line %q in %v", l, e.lines.all)
				}
			}

			id, err := e.lock.Press()
			if err != nil {
				t.Fatal(err)
			}
			e.waitReported(t, "the press", func(r map[string]any) bool { return section(r, "doorbell")["pressId"] == id })
			next, err := e.lock.Press()
			if err != nil || next == id {
				t.Errorf("second press: id %q (first %q), %v; want a new pressId", next, id, err)
			}
		})
	}
}

// TestLockFailRate: with fail rate 1 every request fails with the
// simulator's error, over TLS with a certificate from the API.
func TestLockFailRate(t *testing.T) {
	e := newEnv(t, testenv.SQLite, sim.Config{FailRate: 1}, true)
	at := time.Now().Unix()
	e.desire(t, fmt.Sprintf(`{"open":{"r-2":{"at":%d}}}`, at))
	r := e.waitReported(t, "the failure", func(r map[string]any) bool { return section(r, "open")["r-2"] != nil })
	want := map[string]any{"at": float64(at), "result": "failed", "error": sim.FailureMessage}
	if diff := cmp.Diff(want, section(r, "open")["r-2"]); diff != "" {
		t.Errorf("reported open r-2 (-want +got):\n%s", diff)
	}
}

// TestLockOfflineCatchesUp: what spkey desires while the lock is offline
// is applied and reported once it is online again (its get at connect).
func TestLockOfflineCatchesUp(t *testing.T) {
	e := newEnv(t, testenv.SQLite, sim.Config{}, false)
	e.lock.Offline()
	if e.lock.Connected() {
		t.Fatal("connected after Offline")
	}
	at := time.Now().Unix()
	e.desire(t, fmt.Sprintf(`{"layout":1,"keys":{"k-offline":{"at":%d,"index":9}},"open":{"r-3":{"at":%d}}}`, at, at))
	if r := e.shadow(t).Reported; section(r, "keys")["k-offline"] != nil || section(r, "open")["r-3"] != nil {
		t.Fatalf("reported %v while the lock was offline", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	gets := e.lines.count("read (get)")
	if err := e.lock.Online(ctx); err != nil {
		t.Fatal(err)
	}
	r := e.waitReported(t, "the catch-up", func(r map[string]any) bool {
		return section(r, "keys")["k-offline"] != nil && section(r, "open")["r-3"] != nil
	})
	if diff := cmp.Diff(map[string]any{"at": float64(at), "index": float64(9)}, section(r, "keys")["k-offline"]); diff != "" {
		t.Errorf("reported key (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"at": float64(at), "result": "succeeded"}, section(r, "open")["r-3"]); diff != "" {
		t.Errorf("reported open (-want +got):\n%s", diff)
	}
	// The lock asked for the whole document when it came back.
	for deadline := time.Now().Add(wait); e.lines.count("read (get)") <= gets; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no get answered after the reconnect; lock printed %v", e.lines.all)
		}
	}
}
