package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the sim's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// waitOutput waits until out holds sub.
func waitOutput(t *testing.T, out *syncBuffer, sub string) {
	t.Helper()
	deadline := time.Now().Add(mqttWait)
	for !strings.Contains(out.String(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; output:\n%s", sub, mqttWait, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSimCommand runs `spkey sim` against a real server: it creates its
// locks with the tenant's key, connects them with passwords from the
// credentials route, answers an open request (printing a line) and stops
// cleanly when its context ends (Ctrl-C).
func TestSimCommand(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{Devices: true})
	key := srv.Tenant(t, "org-sim", false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "--api", srv.URL, "--locks", "2", "--first-lock", "5001", "--delay", "10ms", "--battery-every", "0"},
			[]string{"SPKEY_API_KEY=" + key}, out, errOut)
	}()
	waitOutput(t, out, "sim: 2 lock(s) online (lock-5001..lock-5002)")
	for _, l := range []string{"lock-5001: lock 5001 created", "lock-5002: lock 5002 created"} {
		if !strings.Contains(out.String(), l) {
			t.Errorf("no line %q in:\n%s", l, out.String())
		}
	}

	var after func()
	err := srv.Store.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		var err error
		after, err = srv.Gateway.UpdateDesired(ctx, tx, "lock-5002", "", json.RawMessage(fmt.Sprintf(`{"open":{"r-9":{"at":%d}}}`, time.Now().Unix())), "", time.Now().Unix())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after()
	waitOutput(t, out, "lock-5002: open r-9 succeeded")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim: %v; stderr %s", err, errOut.String())
		}
	case <-time.After(mqttWait):
		t.Fatal("sim did not stop after its context ended")
	}
	if !strings.Contains(out.String(), "sim: stopped (2 locks offline)") {
		t.Errorf("no stop line in:\n%s", out.String())
	}
	if strings.Contains(out.String()+errOut.String(), key) {
		t.Error("the API key was printed")
	}
}

// TestSimHubs runs `spkey sim --hubs 2 --locks 0` with a super key: it
// provisions the hubs, connects them with passwords from the hub
// credentials route, and a hub answers a command sent through the API.
func TestSimHubs(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{Devices: true})
	key := srv.Tenant(t, "org-simhub", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "--api", srv.URL, "--locks", "0", "--hubs", "2", "--delay", "10ms"},
			[]string{"SPKEY_API_KEY=" + key}, out, errOut)
	}()
	waitOutput(t, out, "sim: 2 hub(s) online ("+SimHubID(1)+".."+SimHubID(2)+")")
	api := &sim.API{Base: srv.URL, Key: key}
	rid, err := api.HubCommand(ctx, SimHubID(2), "server_info", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, SimHubID(2)+": command server_info "+rid+" succeeded")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim: %v; stderr %s", err, errOut.String())
		}
	case <-time.After(mqttWait):
		t.Fatal("sim did not stop after its context ended")
	}
	if strings.Contains(out.String()+errOut.String(), key) {
		t.Error("the API key was printed")
	}
}

// TestSimFlagsRefused: nothing to simulate, or too many hubs, is refused
// with the usage.
func TestSimFlagsRefused(t *testing.T) {
	for _, args := range [][]string{{"--locks", "0"}, {"--hubs", "101"}, {"--hubs", "-1"}} {
		err := run(context.Background(), append([]string{"sim", "--api-key", "k"}, args...), nil, &syncBuffer{}, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), "usage: spkey sim") {
			t.Errorf("sim %v: %v, want a refusal with the usage", args, err)
		}
	}
}
