package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// startBinary runs the built spkey binary and returns its base URL.
func startBinary(t *testing.T, bin string, args, env []string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, waitForURL(t, out)
}

// residentStream runs 4 workers that each find-or-create a user and add it
// to lock 7 until stop is closed; acked collects the user ids whose
// AddResident answered 200, and bad the answers that were neither 200 nor a
// transport error (a server going away).
type residentStream struct {
	mu    sync.Mutex
	acked map[string]bool
	bad   []string
	wg    sync.WaitGroup
	stop  context.CancelFunc
}

func startResidentStream(kc client) *residentStream {
	ctx, stop := context.WithCancel(context.Background())
	rs := &residentStream{acked: map[string]bool{}, stop: stop}
	for w := 0; w < 4; w++ {
		rs.wg.Add(1)
		go func(w int) {
			defer rs.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				email := fmt.Sprintf("r%d-%d@crash.example", w, i)
				st, u, err := kc.try("GET", "/users/by-email?email="+email, nil)
				if err != nil {
					return
				}
				if st != 200 {
					rs.note(fmt.Sprintf("by-email %d", st))
					return
				}
				st, _, err = kc.try("POST", "/locks/7/AddResident", map[string]any{"email": email, "name": email})
				if err != nil {
					return
				}
				if st != 200 {
					rs.note(fmt.Sprintf("AddResident %d", st))
					return
				}
				rs.mu.Lock()
				rs.acked[u["uuid"].(string)] = true
				rs.mu.Unlock()
			}
		}(w)
	}
	return rs
}

func (rs *residentStream) note(s string) { rs.mu.Lock(); rs.bad = append(rs.bad, s); rs.mu.Unlock() }

func (rs *residentStream) count() int { rs.mu.Lock(); defer rs.mu.Unlock(); return len(rs.acked) }

// waitFor waits until n residents are acknowledged.
func (rs *residentStream) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for rs.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d residents acknowledged in 30s", rs.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setupLock registers a tenant and creates lock 7 on a fresh server.
func setupLock(t *testing.T, base, admin string) client {
	t.Helper()
	ac := client{t: t, base: base}.with("X-Admin-API-Key", admin)
	if st, body := ac.do("POST", "/tenants/crash/register", map[string]any{"orgName": "Crash"}); st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	_, body := ac.do("POST", "/api-keys", map[string]any{"orgId": "crash"})
	kc := client{t: t, base: base}.with("X-API-Key", body["apiKey"].(string))
	if st, body := kc.do("POST", "/locks/7/CreateLock", map[string]any{"index": 1, "uuid": "11111111-2222-4333-8444-555555555555"}); st != 201 {
		t.Fatalf("create lock: %d %v", st, body)
	}
	return kc
}

// residentsOf reads lock 7's residents.
func residentsOf(t *testing.T, kc client) map[string]bool {
	t.Helper()
	st, det := kc.do("GET", "/locks/7/details", nil)
	if st != 200 {
		t.Fatalf("details after restart: %d %v", st, det)
	}
	have := map[string]bool{}
	for _, r := range det["residents"].([]any) {
		have[r.(map[string]any)["userId"].(string)] = true
	}
	return have
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spkey")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestCrashLosesNoAcknowledgedWrite kills `spkey serve` with SIGKILL in the
// middle of a stream of AddResident calls and proves that every call that
// got a 2xx is there after a restart, on every backend.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			args := []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}
			if b == testenv.Postgres {
				args = append(args, "--db", testenv.PostgresURL(t))
			}
			admin := "crash-test-admin-key-0123"
			env := []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error"}
			cmd, base := startBinary(t, bin, args, env)
			kc := setupLock(t, base, admin)
			rs := startResidentStream(kc)
			rs.waitFor(t, 40)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			rs.stop()
			rs.wg.Wait()

			_, base2 := startBinary(t, bin, args, env)
			have := residentsOf(t, client{t: t, base: base2, hdr: kc.hdr})
			for id := range rs.acked {
				if !have[id] {
					t.Errorf("acknowledged resident %s lost after SIGKILL", id)
				}
			}
			if len(rs.bad) > 0 {
				t.Errorf("answers other than 200 before the kill: %v", rs.bad)
			}
			t.Logf("%d acknowledged, %d present after restart", len(rs.acked), len(have))
		})
	}
}

// TestSIGTERMDrains stops `spkey serve` with SIGTERM under the same stream:
// the process exits 0, no request gets an error answer (requests in flight
// finish; later ones find the port closed), and every acknowledged resident
// is there after a restart.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and stops the real binary")
	}
	bin := buildBinary(t)
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}
	admin := "drain-test-admin-key-0123"
	env := []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error"}
	cmd, base := startBinary(t, bin, args, env)
	kc := setupLock(t, base, admin)
	rs := startResidentStream(kc)
	rs.waitFor(t, 40)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spkey serve after SIGTERM: %v", err)
	}
	rs.stop()
	rs.wg.Wait()
	if len(rs.bad) > 0 {
		t.Fatalf("error answers during shutdown: %v", rs.bad)
	}
	_, base2 := startBinary(t, bin, args, env)
	have := residentsOf(t, client{t: t, base: base2, hdr: kc.hdr})
	for id := range rs.acked {
		if !have[id] {
			t.Errorf("acknowledged resident %s lost after SIGTERM", id)
		}
	}
}
