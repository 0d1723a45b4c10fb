package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/testenv"
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
	events := testenv.OpenStream(t, base+"/users/"+uid+"/notifications/stream", testenv.Bearer(jwt))
	// 8. ring
	st, body = kc.do("POST", "/locks/123/RingDoorbell", map[string]any{"visitorName": "Courier", "message": "Parcel"})
	ringID, _ := body["ringId"].(string)
	if st != 200 || body["notified"] != float64(1) || ringID == "" {
		t.Fatalf("ring: %d %v", st, body)
	}
	if ev := events.Next(t, 10*time.Second); ev.Event != "DoorbellRang" || ev.Data["ringId"] != ringID || ev.Data["visitorName"] != "Courier" {
		t.Fatalf("stream: %+v", ev)
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
