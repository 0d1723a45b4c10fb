package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWalkthrough runs the README's walkthrough against a real `spkey
// serve` (the same run() as the binary), then stops it with a cancelled
// context as SIGTERM would.
func TestWalkthrough(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	admin := "walkthrough-admin-key-123"
	data := t.TempDir()
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data}, []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=warn"}, pw, io.Discard)
		pw.Close()
	}()
	base := waitForURL(t, pr)
	c := client{t: t, base: base}
	ac := c.with("X-Admin-API-Key", admin)

	// 1. tenant and key
	if st, body := ac.do("POST", "/tenants/acme/register", map[string]any{"orgName": "Acme Rentals", "ownerEmail": "ops@acme.example"}); st != 201 || body["aggregateId"] != "acme" {
		t.Fatalf("register: %d %v", st, body)
	}
	st, body := ac.do("POST", "/api-keys", map[string]any{"orgId": "acme", "orgName": "Acme Rentals"})
	key, _ := body["apiKey"].(string)
	if st != 201 || len(key) != 40 {
		t.Fatalf("api key: %d %v", st, body)
	}
	kc := c.with("X-API-Key", key)
	// 2. lock
	if st, body := kc.do("POST", "/locks/123/CreateLock", map[string]any{"index": 1, "uuid": "6f1c2a9e-0b7e-4d3e-9a55-2f0c5e4b1a11", "serialNumber": "SN-0001"}); st != 201 || body["aggregateId"] != "123" {
		t.Fatalf("create lock: %d %v", st, body)
	}
	// 3. organization (already set: nothing changes)
	if st, body := kc.do("POST", "/locks/123/SetOrganization", map[string]any{"orgId": "acme"}); st != 200 || body["event"] != nil {
		t.Fatalf("set organization: %d %v", st, body)
	}
	// 4. user
	st, body = kc.do("GET", "/users/by-email?email=user@example.com", nil)
	uid, _ := body["uuid"].(string)
	if st != 200 || uid == "" || body["email"] != "user@example.com" {
		t.Fatalf("by-email: %d %v", st, body)
	}
	// 5. resident
	st, body = kc.do("POST", "/locks/123/AddResident", map[string]any{"email": "user@example.com", "name": "John Doe"})
	ev, _ := body["event"].(map[string]any)
	if st != 200 || body["email"] != "user@example.com" || ev["type"] != "ResidentAdded" {
		t.Fatalf("add resident: %d %v", st, body)
	}
	// 6. public list
	st, body = c.do("GET", "/locks/123/residents", nil)
	rs, _ := body["residents"].([]any)
	if st != 200 || len(rs) != 1 {
		t.Fatalf("residents: %d %v", st, body)
	}
	r0 := rs[0].(map[string]any)
	if r0["userId"] != uid || r0["name"] != "John Doe" || r0["hasPhone"] != false || r0["email"] != nil {
		t.Fatalf("resident entry: %v", r0)
	}
	// 7. the resident's live stream, with a token from `spkey token`
	var tok strings.Builder
	if err := run(ctx, []string{"token", "--data", data, "--sub", uid, "--email", "user@example.com"}, nil, &tok, io.Discard); err != nil {
		t.Fatalf("spkey token: %v", err)
	}
	jwt := strings.TrimSpace(tok.String())
	events := streamLines(t, base+"/users/"+uid+"/notifications/stream", jwt)
	// 8. ring
	st, body = kc.do("POST", "/locks/123/RingDoorbell", map[string]any{"visitorName": "Courier", "message": "Parcel"})
	ringID, _ := body["ringId"].(string)
	if st != 200 || body["notified"] != float64(1) || ringID == "" {
		t.Fatalf("ring: %d %v", st, body)
	}
	select {
	case ev := <-events:
		if ev.event != "DoorbellRang" || ev.data["ringId"] != ringID || ev.data["visitorName"] != "Courier" {
			t.Fatalf("stream: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ring never reached the resident's stream")
	}
	// 9. answer
	uc := c.with("Authorization", "Bearer "+jwt)
	if st, body := uc.do("POST", "/doorbell/rings/"+ringID+"/answer", nil); st != 200 || body["success"] != true {
		t.Fatalf("answer: %d %v", st, body)
	}
	if st, body := uc.do("POST", "/doorbell/rings/"+ringID+"/answer", nil); st != 409 {
		t.Fatalf("second answer: %d %v", st, body)
	}
	// 10. history
	st, body = kc.do("GET", "/locks/123/doorbell/rings", nil)
	rings, _ := body["rings"].([]any)
	if st != 200 || len(rings) != 1 || rings[0].(map[string]any)["status"] != "answered" {
		t.Fatalf("rings: %d %v", st, body)
	}
	if st, _ := c.do("GET", "/healthz", nil); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v after shutdown", err)
	}
}

// TestOneServerPerSQLiteFolder: a second `spkey serve` on the same data
// folder refuses to start and says why.
func TestOneServerPerSQLiteFolder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := t.TempDir()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data}, nil, pw, io.Discard)
		pw.Close()
	}()
	waitForURL(t, pr)
	err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", data}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another spkey serve") {
		t.Fatalf("second serve on one folder: want a refusal, got %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type streamEvent struct {
	id, event string
	data      map[string]any
}

// streamLines reads a live notification stream in the background (until
// the test ends) and returns its events.
func streamLines(t *testing.T, url, jwt string) <-chan streamEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("open stream: %v %v", err, resp)
	}
	out := make(chan streamEvent, 16)
	connected := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev streamEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": connected":
				close(connected)
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			case line == "" && ev.event != "":
				out <- ev
				ev = streamEvent{}
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not start")
	}
	return out
}
