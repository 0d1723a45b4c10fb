package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// End-to-end tests of BulkAddKeys: a real server with its broker, a
// simulated lock connected, the run followed through the admin workflow
// routes over real HTTP.

// bulkWait bounds the wait for a run to end.
const bulkWait = 60 * time.Second

// bulkEnv is a devEnv whose admin calls carry X-Admin-API-Key and an
// admin JWT (AdminEmailDomain example.com).
type bulkEnv struct {
	*devEnv
	adminJWT string
}

func newBulkEnv(t *testing.T, b testenv.Backend, opt testenv.Options) *bulkEnv {
	t.Helper()
	opt.AdminEmailDomain = "example.com"
	e := newDevEnv(t, b, opt)
	return &bulkEnv{devEnv: e, adminJWT: e.srv.Token(t, app.NewUUID(), "ops@example.com")}
}

// admin sends an admin request and requires status.
func (e *bulkEnv) admin(t *testing.T, method, path string, status int) map[string]any {
	t.Helper()
	return wireOK(t, e.srv, wireReq{Method: method, Path: path, JWT: e.adminJWT, Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}, status)
}

// runs is GET /admin/workflows' total.
func (e *bulkEnv) runs(t *testing.T) float64 {
	t.Helper()
	n, ok := e.admin(t, "GET", "/admin/workflows", http.StatusOK)["total"].(float64)
	if !ok {
		t.Fatal("GET /admin/workflows: no total")
	}
	return n
}

// run is GET /admin/workflows/{id}.
func (e *bulkEnv) run(t *testing.T, id string) map[string]any {
	t.Helper()
	return e.admin(t, "GET", "/admin/workflows/"+id, http.StatusOK)
}

// waitRun polls run id until it leaves queued and running, within
// bulkWait, and returns it.
func (e *bulkEnv) waitRun(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(bulkWait)
	for {
		r := e.run(t, id)
		if s := r["status"]; s != "queued" && s != "running" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %v (step %v of %v) after %v", id, r["status"], r["step"], r["steps"], bulkWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bulk posts BulkAddKeys as org-a and returns the run's instanceId.
func (e *bulkEnv) bulk(t *testing.T, keys []map[string]any) string {
	t.Helper()
	got := e.command(t, "BulkAddKeys", map[string]any{"keys": keys})
	id, _ := got["instanceId"].(string)
	if got["success"] != true || got["lockId"] != float64(e2eLock) || id == "" {
		t.Fatalf("BulkAddKeys answer %v", got)
	}
	return id
}

// bulkKeys makes n keys "<prefix>-0000"... with slots from slot0 on.
func bulkKeys(prefix string, n, slot0 int) ([]map[string]any, []string) {
	keys, ids := make([]map[string]any, n), make([]string, n)
	for i := range keys {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
		keys[i] = map[string]any{"keyUuid": ids[i], "keyIndexNumber": slot0 + i}
	}
	return keys, ids
}

// keyAdded counts the lock's KeyAdded events by keyUuid.
func (e *bulkEnv) keyAdded(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, ev := range e.events(t) {
		if ev["type"] == "KeyAdded" {
			data, _ := ev["event"].(map[string]any)
			n[fmt.Sprint(data["keyUuid"])]++
		}
	}
	return n
}

// waitReported waits until the sim lock reports every key of ids in its
// key page.
func (e *bulkEnv) waitReported(t *testing.T, ids []string) {
	t.Helper()
	pages := map[string][]string{}
	for _, k := range ids {
		pages[lock.KeyPage(k)] = append(pages[lock.KeyPage(k)], k)
	}
	deadline := time.Now().Add(e2eWait)
	for page, keys := range pages {
		for {
			reported := sectionOf(e.shadowOf(t, page).Reported, "keys")
			var missing []string
			for _, k := range keys {
				if reported[k] == nil {
					missing = append(missing, k)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("page %s: the lock does not report %d keys within %v: %v", page, len(missing), e2eWait, missing)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestBulkAddKeysE2E: 200 keys to a connected lock: the run completes
// with added=200, details lists every key, the lock reports each in its
// page, and each has exactly one KeyAdded.
func TestBulkAddKeysE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newBulkEnv(t, b, testenv.Options{})
		e.connect(t, e.newSim(t, sim.Config{}))
		keys, ids := bulkKeys("bulk", 200, 1)
		id := e.bulk(t, keys)
		r := e.waitRun(t, id)
		res, _ := r["result"].(map[string]any)
		if r["status"] != "complete" || res["added"] != float64(200) || res["unchanged"] != float64(0) || res["failed"] != float64(0) ||
			r["step"] != float64(200) || r["steps"] != float64(200) || r["workflowName"] != app.BulkAddKeysWorkflow {
			t.Fatalf("run %v", r)
		}
		have := map[string]int{}
		for _, k := range e.detailKeys(t) {
			have[k]++
		}
		if len(have) != 200 {
			t.Errorf("details lists %d keys, want 200", len(have))
		}
		added := e.keyAdded(t)
		for _, k := range ids {
			if have[k] != 1 {
				t.Errorf("details lists key %s %d times", k, have[k])
			}
			if added[k] != 1 {
				t.Errorf("key %s has %d KeyAdded events, want 1", k, added[k])
			}
		}
		if len(added) != 200 {
			t.Errorf("KeyAdded for %d keys, want 200", len(added))
		}
		e.waitReported(t, ids)
	})
}

// TestBulkAddKeysBadInput: a bad request is refused with 400 and starts
// no run.
func TestBulkAddKeysBadInput(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newBulkEnv(t, b, testenv.Options{})
		many, _ := bulkKeys("many", 1001, 1)
		for _, c := range []struct {
			name string
			keys any
			msg  string
		}{
			{"no keys", []map[string]any{}, "keys"},
			{"1001 keys", many, "1000"},
			{"a duplicate keyUuid", []map[string]any{{"keyUuid": "dup-1"}, {"keyUuid": "dup-2"}, {"keyUuid": "dup-1"}}, "dup-1"},
			{"a bad userId", []map[string]any{{"keyUuid": "u-1"}, {"keyUuid": "u-2", "userId": "not-a-uuid"}}, "userId"},
		} {
			t.Run(c.name, func(t *testing.T) {
				before, state := e.runs(t), wireSnapshot(t, e.srv)
				resp := wireDo(t, e.srv, wireReq{Method: "POST", Path: fmt.Sprintf("/locks/%d/BulkAddKeys", e2eLock), Key: e.key, Body: map[string]any{"keys": c.keys}})
				if resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Raw), c.msg) {
					t.Errorf("status %d %s, want 400 naming %q", resp.Status, resp.Raw, c.msg)
				}
				if after := e.runs(t); after != before {
					t.Errorf("runs %v before, %v after a refused request", before, after)
				}
				wireUnchanged(t, e.srv, state)
			})
		}
	})
}

// TestBulkAddKeysConflict: a key already on the lock with another slot
// fails with its message in result.errors; the others are added and the
// run completes.
func TestBulkAddKeysConflict(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newBulkEnv(t, b, testenv.Options{})
		e.command(t, "AddKey", map[string]any{"keyUuid": "taken", "keyIndexNumber": 90})
		id := e.bulk(t, []map[string]any{{"keyUuid": "c-1", "keyIndexNumber": 1}, {"keyUuid": "taken", "keyIndexNumber": 91}, {"keyUuid": "c-2", "keyIndexNumber": 2}})
		r := e.waitRun(t, id)
		res, _ := r["result"].(map[string]any)
		errs, _ := res["errors"].([]any)
		if r["status"] != "complete" || res["added"] != float64(2) || res["failed"] != float64(1) || len(errs) != 1 {
			t.Fatalf("run %v", r)
		}
		fail, _ := errs[0].(map[string]any)
		if fail["keyUuid"] != "taken" || !strings.Contains(fmt.Sprint(fail["error"]), "already on lock") {
			t.Errorf("result.errors %v: want taken's conflict", errs)
		}
		added := e.keyAdded(t)
		if added["c-1"] != 1 || added["c-2"] != 1 || added["taken"] != 1 || len(added) != 3 {
			t.Errorf("KeyAdded by key: %v", added)
		}
	})
}

// TestBulkAddKeysTerminate: a run terminated between two keys adds no
// key after the terminate answered; terminating it again, or a finished
// run, answers 200 with the status unchanged.
func TestBulkAddKeysTerminate(t *testing.T) {
	const interval = 400 * time.Millisecond
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newBulkEnv(t, b, testenv.Options{BulkStepInterval: interval})
		keys, _ := bulkKeys("term", 30, 1)
		id := e.bulk(t, keys)
		// Terminate right after a step is recorded: the runner is then
		// in its pause, so no key is in flight.
		deadline := time.Now().Add(bulkWait)
		for last := -1.0; ; {
			r := e.run(t, id)
			step, _ := r["step"].(float64)
			if last >= 0 && step > last && step >= 3 {
				break
			}
			last = step
			if time.Now().After(deadline) || r["status"] == "complete" {
				t.Fatalf("run %v: no step recorded in time", r)
			}
			time.Sleep(10 * time.Millisecond)
		}
		got := e.admin(t, "POST", "/admin/workflows/"+id+"/terminate", http.StatusOK)
		if got["success"] != true || got["status"] != "terminated" || got["instanceId"] != id {
			t.Fatalf("terminate: %v", got)
		}
		atTerminate := len(e.keyAdded(t))
		time.Sleep(4 * interval)
		r := e.run(t, id)
		after := e.keyAdded(t)
		if len(after) != atTerminate {
			t.Errorf("%d keys when the terminate answered, %d %v later", atTerminate, len(after), 4*interval)
		}
		if r["status"] != "terminated" || len(after) >= len(keys) || r["step"] != float64(len(after)) {
			t.Errorf("run %v with %d keys added: want terminated with fewer than %d keys, one per step", r, len(after), len(keys))
		}
		again := e.admin(t, "POST", "/admin/workflows/"+id+"/terminate", http.StatusOK)
		if again["status"] != "terminated" {
			t.Errorf("terminate again: %v", again)
		}

		// A finished run stays complete.
		done := e.bulk(t, []map[string]any{{"keyUuid": "done-1"}})
		if r := e.waitRun(t, done); r["status"] != "complete" {
			t.Fatalf("run %v", r)
		}
		got = e.admin(t, "POST", "/admin/workflows/"+done+"/terminate", http.StatusOK)
		if got["success"] != true || got["status"] != "complete" {
			t.Errorf("terminate a finished run: %v", got)
		}
		if r := e.run(t, done); r["status"] != "complete" {
			t.Errorf("finished run after terminate: %v", r)
		}
		e.admin(t, "POST", "/admin/workflows/"+app.NewUUID()+"/terminate", http.StatusNotFound)
	})
}

// TestWorkflowCanaryE2E: a canary of 3 steps and 0 seconds completes with
// a progress entry per step.
func TestWorkflowCanaryE2E(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newBulkEnv(t, b, testenv.Options{})
		got := e.admin(t, "POST", "/admin/workflows/canary?seconds=0&steps=3", http.StatusOK)
		id, _ := got["instanceId"].(string)
		if got["success"] != true || got["steps"] != float64(3) || got["seconds"] != float64(0) || id == "" {
			t.Fatalf("canary: %v", got)
		}
		r := e.waitRun(t, id)
		progress, _ := r["progress"].([]any)
		if r["status"] != "complete" || r["step"] != float64(3) || len(progress) < 3 {
			t.Fatalf("canary run %v", r)
		}
		var steps int
		for _, p := range progress {
			if m, _ := p.(map[string]any); strings.HasPrefix(fmt.Sprint(m["message"]), "step ") {
				steps++
			}
		}
		if steps != 3 {
			t.Errorf("%d step entries in %v, want 3", steps, progress)
		}
	})
}

// TestBulkAddKeysNodeTakeover: two nodes on one PostgreSQL database; a
// run of 300 keys started on node A, A stopped mid-run; node B takes the
// run over once A's lease ends and finishes it, every key added once.
func TestBulkAddKeysNodeTakeover(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	const n, lease = 300, time.Second
	url := testenv.PostgresURL(t)
	node := func(interval time.Duration) *testenv.Server {
		st, err := server.OpenStore(context.Background(), server.StoreConfig{DB: url}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return testenv.NewServer(t, testenv.Postgres, testenv.Options{Store: st, WorkflowLease: lease, BulkStepInterval: interval})
	}
	admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
	runOn := func(srv *testenv.Server, id string) map[string]any {
		t.Helper()
		return wireOK(t, srv, wireReq{Method: "GET", Path: "/admin/workflows/" + id, Header: admin}, http.StatusOK)
	}
	a := node(20 * time.Millisecond)
	key := a.Tenant(t, "acme", false)
	wireOK(t, a, wireReq{Method: "POST", Path: "/locks/7/CreateLock", Key: key, Body: map[string]any{"index": 1, "uuid": "7a7a7a7a-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, http.StatusCreated)
	keys, ids := bulkKeys("node", n, 1)
	got := wireOK(t, a, wireReq{Method: "POST", Path: "/locks/7/BulkAddKeys", Key: key, Body: map[string]any{"keys": keys}}, http.StatusOK)
	id, _ := got["instanceId"].(string)
	if id == "" {
		t.Fatalf("BulkAddKeys: %v", got)
	}
	// B starts once A holds the run (it has recorded steps), so A works
	// it until stopped; B's runner keeps looking meanwhile.
	waitStep := func(srv *testenv.Server, min float64) float64 {
		t.Helper()
		deadline := time.Now().Add(bulkWait)
		for {
			r := runOn(srv, id)
			if s, _ := r["step"].(float64); s >= min {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("run at step %v, not %v, after %v", r["step"], min, bulkWait)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitStep(a, 10)
	b := node(0)
	waitStep(a, 60)
	a.Stop()
	stoppedAt, _ := runOn(b, id)["step"].(float64)
	if stoppedAt >= n {
		t.Fatalf("run done (step %v) before node A stopped", stoppedAt)
	}
	t.Logf("node A stopped at step %v of %d", stoppedAt, n)
	deadline := time.Now().Add(bulkWait)
	var r map[string]any
	for {
		r = runOn(b, id)
		if r["status"] != "queued" && r["status"] != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %v at step %v, %v after node A stopped", r["status"], r["step"], bulkWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, _ := r["result"].(map[string]any)
	added, _ := res["added"].(float64)
	unchanged, _ := res["unchanged"].(float64)
	if r["status"] != "complete" || r["step"] != float64(n) || res["failed"] != float64(0) || added+unchanged != n || unchanged > 1 {
		t.Fatalf("run after node A stopped: status %v step %v result %v", r["status"], r["step"], res)
	}
	det := wireOK(t, b, wireReq{Method: "GET", Path: "/locks/7/details", Key: key}, http.StatusOK)
	onLock := map[string]int{}
	dk, _ := det["keys"].([]any)
	for _, k := range dk {
		m, _ := k.(map[string]any)
		onLock[fmt.Sprint(m["uuid"])]++
	}
	events := map[string]int{}
	for page := 1; ; page++ {
		got := wireOK(t, b, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/7/events?page=%d", page), Key: key}, http.StatusOK)
		evs, _ := got["events"].([]any)
		for _, ev := range evs {
			m, _ := ev.(map[string]any)
			if m["type"] == "KeyAdded" {
				data, _ := m["event"].(map[string]any)
				events[fmt.Sprint(data["keyUuid"])]++
			}
		}
		if total, _ := got["totalPages"].(float64); float64(page) >= total {
			break
		}
	}
	if len(onLock) != n || len(events) != n {
		t.Errorf("%d keys on the lock and KeyAdded for %d keys, want %d", len(onLock), len(events), n)
	}
	for _, k := range ids {
		if onLock[k] != 1 || events[k] != 1 {
			t.Errorf("key %s: on the lock %d times, %d KeyAdded events; want 1 and 1", k, onLock[k], events[k])
		}
	}
}
