package main

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestBulkAddKeysSurvivesSIGKILL kills `spkey serve` with SIGKILL in the
// middle of a BulkAddKeys run of 500 keys and restarts it on the same
// data: the restarted process takes the run over once its lease ends and
// finishes it, and every key is on the lock exactly once with exactly one
// KeyAdded, on every backend.
func TestBulkAddKeysSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	const n = 500
	bin := buildBinary(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			args := []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--workflow-lease", "2s", "--bulk-step-interval", "10ms"}
			if b == testenv.Postgres {
				args = append(args, "--db", testenv.PostgresURL(t))
			}
			admin := "bulk-crash-admin-key-0123"
			env := []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error"}
			cmd, base := startBinary(t, bin, args, env)
			kc := setupLock(t, base, admin)
			keys := make([]map[string]any, n)
			for i := range keys {
				keys[i] = map[string]any{"keyUuid": fmt.Sprintf("crash-key-%04d", i), "keyIndexNumber": i + 1}
			}
			st, got := kc.do("POST", "/locks/7/BulkAddKeys", map[string]any{"keys": keys})
			id, _ := got["instanceId"].(string)
			if st != 200 || got["success"] != true || id == "" {
				t.Fatalf("BulkAddKeys: %d %v", st, got)
			}
			ac := client{t: t, base: base}.with("X-Admin-API-Key", admin)
			// Kill the process while the run is well under way.
			deadline := time.Now().Add(60 * time.Second)
			var step float64
			for {
				st, r := ac.do("GET", "/admin/workflows/"+id, nil)
				if st != 200 {
					t.Fatalf("GET the run: %d %v", st, r)
				}
				step, _ = r["step"].(float64)
				if step >= 100 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("run at step %v after 60s: %v", step, r["status"])
				}
				time.Sleep(5 * time.Millisecond)
			}
			if step > 400 {
				t.Fatalf("run at step %v when first seen past 100: too fast to kill mid-run", step)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			t.Logf("killed at step %v of %d", step, n)

			_, base2 := startBinary(t, bin, args, env)
			ac, kc = client{t: t, base: base2, hdr: ac.hdr}, client{t: t, base: base2, hdr: kc.hdr}
			deadline = time.Now().Add(90 * time.Second)
			var r map[string]any
			for {
				_, r = ac.do("GET", "/admin/workflows/"+id, nil)
				if r["status"] != "queued" && r["status"] != "running" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("run still %v at step %v 90s after the restart", r["status"], r["step"])
				}
				time.Sleep(50 * time.Millisecond)
			}
			res, _ := r["result"].(map[string]any)
			added, _ := res["added"].(float64)
			unchanged, _ := res["unchanged"].(float64)
			// A key added just before the kill, its step not yet
			// recorded, is found on the lock when its step runs again.
			if r["status"] != "complete" || r["step"] != float64(n) || res["failed"] != float64(0) || added+unchanged != n || unchanged > 1 {
				t.Fatalf("run after the restart: status %v step %v result %v", r["status"], r["step"], res)
			}

			st, det := kc.do("GET", "/locks/7/details", nil)
			if st != 200 {
				t.Fatalf("details: %d %v", st, det)
			}
			onLock := map[string]int{}
			dk, _ := det["keys"].([]any)
			for _, k := range dk {
				m, _ := k.(map[string]any)
				onLock[fmt.Sprint(m["uuid"])]++
			}
			events := map[string]int{}
			for page := 1; ; page++ {
				st, got := kc.do("GET", fmt.Sprintf("/locks/7/events?page=%d", page), nil)
				if st != 200 {
					t.Fatalf("events page %d: %d %v", page, st, got)
				}
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
			for _, k := range keys {
				u := k["keyUuid"].(string)
				if onLock[u] != 1 || events[u] != 1 {
					t.Errorf("key %s: on the lock %d times, %d KeyAdded events; want 1 and 1", u, onLock[u], events[u])
				}
			}
		})
	}
}

// TestConfigWorkflowFlags: --workflow-lease and --bulk-step-interval (and
// their SPKEY_* twins) reach the config; a lease out of 1s..1h, or a
// pause that is negative or not shorter than the lease, is refused.
func TestConfigWorkflowFlags(t *testing.T) {
	c, _, err := parse(serveCommand, []string{"--workflow-lease", "3s"}, cmdline.Env([]string{"SPKEY_BULK_STEP_INTERVAL=250ms"}), io.Discard, io.Discard)
	if err != nil || c.WorkflowLease != 3*time.Second || c.BulkStepInterval != 250*time.Millisecond {
		t.Fatalf("parse: %v, lease %v, interval %v", err, c.WorkflowLease, c.BulkStepInterval)
	}
	if c, _, err := parse(serveCommand, nil, nil, io.Discard, io.Discard); err != nil || c.WorkflowLease != app.DefaultWorkflowLease || c.BulkStepInterval != 0 {
		t.Fatalf("defaults: %v, lease %v, interval %v", err, c.WorkflowLease, c.BulkStepInterval)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--workflow-lease", "500ms"}, "--workflow-lease must be between 1s and 1h"},
		{[]string{"--workflow-lease", "2h"}, "--workflow-lease must be between 1s and 1h"},
		{[]string{"--bulk-step-interval", "-1s"}, "--bulk-step-interval must be at least 0 and less than --workflow-lease (15s)"},
		{[]string{"--workflow-lease", "2s", "--bulk-step-interval", "2s"}, "--bulk-step-interval must be at least 0 and less than --workflow-lease (2s)"},
	} {
		if err := startErr(t, c.args, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}
