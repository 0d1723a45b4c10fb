package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevicesWalkthrough runs the README's "Lock devices" walkthrough with
// the built binary: `spkey serve` with its embedded broker (on free ports)
// and `spkey sim --locks 3 --first-lock 1001 --delay 200ms` as a second
// process that finds the broker through the API, then the README's
// OpenLock and `?wait=10s` calls; Ctrl-C (SIGINT) stops the sim cleanly and
// its locks go offline.
func TestDevicesWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary twice")
	}
	bin := buildBinary(t)
	admin := "walkthrough-admin-key-123"
	serve := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(),
		"--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0", "--admin-api-key", admin)
	serve.Env = append(cleanEnv(), "SPKEY_METRICS_ADDR=127.0.0.1:0", "SPKEY_LOG_LEVEL=warn")
	serveOut, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	serve.Stderr = io.Discard
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	serveExit := waitExit(serve, nil)
	t.Cleanup(func() {
		_ = serve.Process.Kill()
		<-serveExit.done
	})
	base, mqttAddr, _ := waitForBanner(t, serveOut)
	if strings.HasSuffix(mqttAddr, ":1884") {
		t.Fatalf("the test's broker is on the default port: %s", mqttAddr)
	}

	// A tenant's key, as in the main walkthrough.
	c := client{t: t, base: base}
	ac := c.with("X-Admin-API-Key", admin)
	if st, body := ac.do("POST", "/tenants/acme/register", map[string]any{"orgName": "Acme Rentals", "ownerEmail": "ops@acme.example"}); st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	st, body := ac.do("POST", "/api-keys", map[string]any{"orgId": "acme", "orgName": "Acme Rentals"})
	key, _ := body["apiKey"].(string)
	if st != 201 || len(key) != 40 {
		t.Fatalf("api key: %d %v", st, body)
	}
	kc := c.with("X-API-Key", key)

	// spkey sim with the README's flags; the broker's address comes from
	// the credentials route, so no --mqtt-addr.
	sim := exec.Command(bin, "sim", "--api", base, "--locks", "3", "--first-lock", "1001", "--delay", "200ms")
	sim.Env = append(cleanEnv(), "SPKEY_API_KEY="+key)
	simPipe, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	simOut, simErr := &syncBuffer{}, &syncBuffer{}
	sim.Stderr = simErr
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(simPipe)
		for sc.Scan() {
			fmt.Fprintln(simOut, sc.Text())
		}
	}()
	simExit := waitExit(sim, copied)
	t.Cleanup(func() {
		_ = sim.Process.Kill()
		<-simExit.done
	})

	// The sim's locks connect: its banner, and basic-info says online.
	deadline := time.Now().Add(2 * mqttWait)
	for !strings.Contains(simOut.String(), "sim: 3 lock(s) online (lock-1001..lock-1003)") {
		select {
		case <-simExit.done:
			t.Fatalf("sim exited before its locks were online: %v\nstdout:\n%s\nstderr:\n%s", simExit.err, simOut.String(), simErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sim's locks not online within %v; stdout:\n%s\nstderr:\n%s", 2*mqttWait, simOut.String(), simErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for id := 1001; id <= 1003; id++ {
		waitOnline(t, kc, id, true)
	}

	// OpenLock, as the README shows it.
	st, body = kc.do("POST", "/locks/1001/OpenLock", map[string]any{"requestId": "door-1", "reason": "Parcel"})
	ev, _ := body["event"].(map[string]any)
	if st != 200 || body["success"] != true || body["aggregateId"] != "1001" || body["requestId"] != "door-1" ||
		body["offline"] != false || ev["type"] != "LockOpenRequested" {
		t.Fatalf("OpenLock: %d %v", st, body)
	}
	// The README's version: LockCreated, OrganizationSet (the sim creates
	// the lock with the tenant's key), LockDeviceConnected, then this
	// request's LockOpenRequested and its action's LockActionUpdated.
	if body["version"] != float64(5) {
		t.Fatalf("OpenLock version: want 5 as in the README, got %v", body)
	}

	// ?wait=10s holds the answer until the lock reports the result (the
	// sim's 200ms delay), well within the 10 seconds.
	start := time.Now()
	st, body = kc.do("GET", "/locks/1001/actions/door-1?wait=10s", nil)
	took := time.Since(start)
	if st != 200 || body["lockId"] != float64(1001) || body["requestId"] != "door-1" || body["action"] != "OpenLock" || body["status"] != "succeeded" {
		t.Fatalf("action: %d %v", st, body)
	}
	for _, f := range []string{"createdAt", "updatedAt"} {
		if s, _ := body[f].(string); s == "" {
			t.Errorf("action answer without %s: %v", f, body)
		}
	}
	if took >= 10*time.Second {
		t.Errorf("?wait=10s answered after %v: the result did not end the wait", took)
	}
	if !strings.Contains(simOut.String(), "lock-1001: open door-1 succeeded") {
		t.Errorf("the sim printed no open line; stdout:\n%s", simOut.String())
	}

	// Ctrl-C stops the sim cleanly; its locks go offline.
	if err := sim.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-simExit.done:
		if simExit.err != nil {
			t.Fatalf("sim after SIGINT: %v; stderr:\n%s", simExit.err, simErr.String())
		}
	case <-time.After(mqttWait):
		t.Fatalf("sim did not stop within %v of SIGINT; stdout:\n%s", mqttWait, simOut.String())
	}
	if !strings.Contains(simOut.String(), "sim: stopped (3 locks offline)") {
		t.Errorf("no stop line; stdout:\n%s", simOut.String())
	}
	if strings.Contains(simOut.String()+simErr.String(), key) {
		t.Error("the sim printed the API key")
	}
	for id := 1001; id <= 1003; id++ {
		waitOnline(t, kc, id, false)
	}

	// The server stops cleanly too (SIGTERM).
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-serveExit.done:
		if serveExit.err != nil {
			t.Fatalf("serve after SIGTERM: %v", serveExit.err)
		}
	case <-time.After(mqttWait):
		t.Fatalf("serve did not stop within %v of SIGTERM", mqttWait)
	}
}

// exit is a process's end: done closes when it has exited, with err
// Wait's answer.
type exit struct {
	done chan struct{}
	err  error
}

// waitExit waits for cmd (after its output copier, when given, is done).
func waitExit(cmd *exec.Cmd, copied <-chan struct{}) *exit {
	e := &exit{done: make(chan struct{})}
	go func() {
		if copied != nil {
			<-copied
		}
		e.err = cmd.Wait()
		close(e.done)
	}()
	return e
}

// waitOnline polls lock id's basic-info until its online field is want.
func waitOnline(t *testing.T, kc client, id int, want bool) {
	t.Helper()
	path := fmt.Sprintf("/locks/%d/basic-info", id)
	deadline := time.Now().Add(mqttWait)
	for {
		st, body := kc.do("GET", path, nil)
		if st == 200 && body["online"] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: online not %v within %v: %d %v", path, want, mqttWait, st, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanEnv is this process's environment without spkey's settings
// (TestMain turns the broker off through them).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPKEY_") {
			env = append(env, kv)
		}
	}
	return env
}
