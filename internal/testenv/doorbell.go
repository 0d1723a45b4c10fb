package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spkey-dev/spkey/internal/app"
)

// Doorbell is what SeedDoorbell creates: tenant "acme" (Key acts as its
// API key) owning lock DoorbellLock with residents Alice (e-mail
// alice@example.com, no phone) and Bob (phone +48123456789, no e-mail).
type Doorbell struct {
	Key        app.Principal
	Alice, Bob string
}

// DoorbellLock is the lock SeedDoorbell creates.
const DoorbellLock = 7

// SeedDoorbell creates the Doorbell fixture through svc.
func SeedDoorbell(t testing.TB, svc *app.Service) Doorbell {
	t.Helper()
	ctx := context.Background()
	if _, err := svc.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	d := Doorbell{Key: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}
	if _, err := svc.CreateLock(ctx, app.Call{P: d.Key}, DoorbellLock, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	a, err := svc.FindOrCreate(ctx, d.Key, false, app.FindInput{Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.FindOrCreate(ctx, d.Key, true, app.FindInput{Phone: "+48123456789"})
	if err != nil {
		t.Fatal(err)
	}
	d.Alice, d.Bob = a.UserID, b.UserID
	for _, r := range []struct{ id, name string }{{d.Alice, "Alice"}, {d.Bob, "Bob"}} {
		id := r.id
		if _, err := svc.AddResident(ctx, app.Call{P: d.Key}, DoorbellLock, app.ResidentInput{Name: r.name, UserID: &id}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Event is one Server-Sent Event of a live stream.
type Event struct {
	ID, Event string
	Data      map[string]any
}

// Stream is a live-stream client reading events in the background.
type Stream struct {
	events chan Event
	cancel func()
}

// OpenStream connects to a notification stream at url with header (e.g.
// Authorization, X-API-Key, Last-Event-ID), fails the test unless it starts
// as an event stream, and closes it when the test ends.
func OpenStream(t testing.TB, url string, header http.Header) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &Stream{events: make(chan Event, 256), cancel: func() { cancel(); resp.Body.Close() }}
	t.Cleanup(s.cancel)
	ready := make(chan struct{})
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev Event
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": connected":
				close(ready)
			case line == "":
				if data != "" {
					_ = json.Unmarshal([]byte(data), &ev.Data)
					s.events <- ev
				}
				ev, data = Event{}, ""
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not start")
	}
	return s
}

// Next waits for the stream's next event.
func (s *Stream) Next(t testing.TB, within time.Duration) Event {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return Event{}
}

// Quiet checks that no event arrives for d (after the events a test
// expects, to catch extras).
func (s *Stream) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case ev := <-s.events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}

// WaitEnd fails the test unless the server ends the stream within d
// (events still queued are discarded).
func (s *Stream) WaitEnd(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("the stream was still open after %s", d)
		}
	}
}

// Close disconnects.
func (s *Stream) Close() { s.cancel() }

// Bearer is the header of a JWT.
func Bearer(jwt string) http.Header { return http.Header{"Authorization": {"Bearer " + jwt}} }

// Chromium finds the browser, or skips (plain `go test`) / fails (under
// scripts/test.sh, which installs it).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SPKEY_TEST_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("SPKEY_TEST_REQUIRE_POSTGRES") == "1" {
		t.Fatal("Chromium not found: scripts/test.sh should have installed it (apt-get install chromium)")
	}
	t.Skip("Chromium not found; scripts/test.sh installs it")
	return ""
}

// Browser starts headless Chromium (root needs no sandbox) and returns a
// context for chromedp with a one-minute deadline, stopped when the test
// ends.
func Browser(t testing.TB) context.Context {
	t.Helper()
	bin := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	tctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() { cancel(); cancelB(); cancelA() })
	return tctx
}
