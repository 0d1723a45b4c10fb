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

// TestCrashLosesNoAcknowledgedWrite kills `spkey serve` with SIGKILL in the
// middle of a stream of AddResident calls and proves that every call that
// got a 2xx is there after a restart, on every backend.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := filepath.Join(t.TempDir(), "spkey")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			data := t.TempDir()
			args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data}
			if b == testenv.Postgres {
				args = append(args, "--db", testenv.PostgresURL(t))
			}
			admin := "crash-test-admin-key-0123"
			env := []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error"}
			cmd, base := startBinary(t, bin, args, env)
			c := client{t: t, base: base}
			ac := c.with("X-Admin-API-Key", admin)
			if st, body := ac.do("POST", "/tenants/crash/register", map[string]any{"orgName": "Crash"}); st != 201 {
				t.Fatalf("register: %d %v", st, body)
			}
			_, body := ac.do("POST", "/api-keys", map[string]any{"orgId": "crash"})
			kc := c.with("X-API-Key", body["apiKey"].(string))
			if st, body := kc.do("POST", "/locks/7/CreateLock", map[string]any{"index": 1, "uuid": "11111111-2222-4333-8444-555555555555"}); st != 201 {
				t.Fatalf("create lock: %d %v", st, body)
			}

			var mu sync.Mutex
			acked := map[string]bool{}
			var wg sync.WaitGroup
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						email := fmt.Sprintf("r%d-%d@crash.example", w, i)
						st, u, err := kc.try("GET", "/users/by-email?email="+email, nil)
						if err != nil || st != 200 {
							return
						}
						st, _, err = kc.try("POST", "/locks/7/AddResident", map[string]any{"email": email, "name": email})
						if err == nil && st == 200 {
							mu.Lock()
							acked[u["uuid"].(string)] = true
							mu.Unlock()
						}
					}
				}(w)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= 40 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("only %d residents acknowledged in 30s", n)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			stop()
			wg.Wait()

			_, base2 := startBinary(t, bin, args, env)
			kc2 := client{t: t, base: base2, hdr: kc.hdr}
			st, det := kc2.do("GET", "/locks/7/details", nil)
			if st != 200 {
				t.Fatalf("details after restart: %d %v", st, det)
			}
			have := map[string]bool{}
			for _, r := range det["residents"].([]any) {
				have[r.(map[string]any)["userId"].(string)] = true
			}
			mu.Lock()
			defer mu.Unlock()
			for id := range acked {
				if !have[id] {
					t.Errorf("acknowledged resident %s lost after SIGKILL", id)
				}
			}
			t.Logf("%d acknowledged, %d present after restart", len(acked), len(have))
		})
	}
}
