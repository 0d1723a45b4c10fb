package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestRoutingErrors: unknown paths and wrong methods answer in the
// envelope, not the mux's plain text.
func TestRoutingErrors(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/no/such/route"})
	want := map[string]any{"error": "Not Found", "message": "No such route: GET /no/such/route", "code": float64(404), "details": []any{}}
	if resp.Status != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("unknown route: %d %s", resp.Status, resp.Raw)
	}
	if diff := cmp.Diff(want, resp.JSON); diff != "" {
		t.Errorf("unknown route (-want +got):\n%s", diff)
	}
	resp = wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/1/AddResident"})
	want = map[string]any{"success": false, "error": "Method Not Allowed", "message": "Method GET not allowed here; use POST", "code": float64(405), "details": []any{}}
	if resp.Status != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("wrong method: %d %v %s", resp.Status, resp.Header, resp.Raw)
	}
	if diff := cmp.Diff(want, resp.JSON); diff != "" {
		t.Errorf("wrong method (-want +got):\n%s", diff)
	}
}

// TestUserCreatedLockIsTheirs: a lock created with a JWT and no ownerId is
// owned by that user, who can then use it; another user cannot.
// TestUserCreatedLockIsTheirs runs with --allow-user-lock-create (off by
// default: TestIdentityLockProvisioning).
func TestUserCreatedLockIsTheirs(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{AllowUserLockCreate: true})
			alice := srv.Token(t, "aaaaaaaa-1111-4111-8111-111111111111", "alice@example.com")
			bob := srv.Token(t, "bbbbbbbb-2222-4222-8222-222222222222", "bob@example.com")
			out := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/9/CreateLock", JWT: alice, Body: map[string]any{"index": 1, "uuid": "11111111-2222-4333-8444-555555555555"}}, 201)
			data := out["event"].(map[string]any)["data"].(map[string]any)
			if data["ownerId"] != "aaaaaaaa-1111-4111-8111-111111111111" {
				t.Fatalf("LockCreated: %v", data)
			}
			det := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/9/details", JWT: alice}, 200)
			if det["ownerId"] != "aaaaaaaa-1111-4111-8111-111111111111" || det["orgId"] != "" {
				t.Fatalf("details: %v", det)
			}
			if st := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/9/details", JWT: bob}).Status; st != http.StatusForbidden {
				t.Fatalf("another user's JWT: %d", st)
			}
			// Creating it again answers 200 with no event for its owner.
			again := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/9/CreateLock", JWT: alice, Body: map[string]any{"index": 1, "uuid": "11111111-2222-4333-8444-555555555555"}}, 200)
			if again["event"] != nil || again["version"] != float64(1) {
				t.Fatalf("second create: %v", again)
			}
		})
	}
}
