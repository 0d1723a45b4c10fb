package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// openStream connects to a user's notification stream with a JWT or an
// API key (and Last-Event-ID, when not empty).
func openStream(t testing.TB, srv *testenv.Server, userID, jwt, key, lastID string) *testenv.Stream {
	t.Helper()
	h := http.Header{}
	if jwt != "" {
		h = testenv.Bearer(jwt)
	}
	if key != "" {
		h.Set("X-API-Key", key)
	}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	return testenv.OpenStream(t, srv.URL+"/users/"+userID+"/notifications/stream", h)
}

// doorbellSetup: tenant acme with lock 7 and residents Alice (e-mail) and
// Bob (phone); returns the key, the two user ids and their tokens.
func doorbellSetup(t *testing.T, srv *testenv.Server) (key, alice, bob, aliceJWT, bobJWT string) {
	t.Helper()
	key = srv.Tenant(t, "acme", false)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/CreateLock", Key: key, Body: map[string]any{"index": 1, "uuid": "7a7a7a7a-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, http.StatusCreated)
	alice, _ = wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=alice@example.com", Key: key}, http.StatusOK)["uuid"].(string)
	bob, _ = wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48600700800", Key: key}, http.StatusOK)["uuid"].(string)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/AddResident", Key: key, Body: map[string]any{"name": "Alice", "email": "alice@example.com"}}, http.StatusOK)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/AddResident", Key: key, Body: map[string]any{"name": "Bob", "userId": bob}}, http.StatusOK)
	return key, alice, bob, srv.Token(t, alice, "alice@example.com"), srv.Token(t, bob, "")
}

// TestDoorbellOverHTTP: a ring reaches both residents' live streams, an
// answer reaches both, a late answer is refused, a stream resumed with
// Last-Event-ID misses nothing, and the histories show it all.
func TestDoorbellOverHTTP(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			key, alice, bob, aliceJWT, bobJWT := doorbellSetup(t, srv)
			as := openStream(t, srv, alice, aliceJWT, "", "")
			bs := openStream(t, srv, bob, "", key, "") // the org's key may stream too

			rang := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key,
				Body: map[string]any{"visitorName": "Courier", "message": "Parcel for flat 4", "source": "panel"}}, http.StatusOK)
			ringID, _ := rang["ringId"].(string)
			if rang["success"] != true || rang["aggregateId"] != ringID || rang["notified"] != float64(2) || rang["lockId"] != float64(7) {
				t.Fatalf("ring answer: %v", rang)
			}
			ev, _ := rang["event"].(map[string]any)
			if data, _ := ev["data"].(map[string]any); ev["type"] != "DoorbellRang" || data["ringId"] != ringID || data["source"] != "panel" || data["orgId"] != "acme" {
				t.Fatalf("ring event: %v", ev)
			}
			for _, s := range []*testenv.Stream{as, bs} {
				e := s.Next(t, 5*time.Second)
				if e.Event != "DoorbellRang" || e.ID != "1" || e.Data["ringId"] != ringID || e.Data["visitorName"] != "Courier" || e.Data["type"] != "DoorbellRang" ||
					e.Data["notified"] != float64(2) || e.Data["residents"] != nil {
					t.Fatalf("stream event: %+v", e)
				}
			}

			// Answering: bad ring ids, a stranger, the org key, then Alice.
			strangerJWT := srv.Token(t, "5e5e5e5e-2b1f-4e6d-9c8b-7a6f5e4d3c2b", "")
			for _, c := range []struct {
				name   string
				req    wireReq
				status int
				msg    string
			}{
				{"unknown ring", wireReq{Method: "POST", Path: "/doorbell/rings/00000000-2b1f-4e6d-9c8b-7a6f5e4d3c2b/answer", JWT: aliceJWT}, 404, "Ring 00000000-2b1f-4e6d-9c8b-7a6f5e4d3c2b not found"},
				{"malformed ring id", wireReq{Method: "POST", Path: "/doorbell/rings/nope/answer", JWT: aliceJWT}, 400, "ringId must be a UUID in lower-case canonical form (8-4-4-4-12 hex digits, e.g. 3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b)"},
				{"non-resident", wireReq{Method: "POST", Path: "/doorbell/rings/" + ringID + "/answer", JWT: strangerJWT}, 403, "Only a resident this ring notified may answer it"},
				{"unknown lock ring", wireReq{Method: "POST", Path: "/locks/999/RingDoorbell", Key: key}, 404, "Lock 999 not found"},
				{"oversized message", wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"message": strings.Repeat("x", 281)}}, 400, ""},
				{"resident of another lock", wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"residentUserId": "5e5e5e5e-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, 400, "residentUserId is not a resident of this lock"},
				{"bad source", wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"source": "Bad Source!"}}, 400, ""},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := wireSnapshot(t, srv)
					resp := wireDo(t, srv, c.req)
					got := resp.Obj(t)
					if resp.Status != c.status || got["success"] != false || got["code"] != float64(c.status) || (c.msg != "" && got["message"] != c.msg) {
						t.Fatalf("status %d body %s; want %d %q", resp.Status, resp.Raw, c.status, c.msg)
					}
					wireUnchanged(t, srv, before)
				})
			}
			ans := wireOK(t, srv, wireReq{Method: "POST", Path: "/doorbell/rings/" + ringID + "/answer", JWT: aliceJWT}, http.StatusOK)
			if e, _ := ans["event"].(map[string]any); e["type"] != "DoorbellAnswered" || ans["aggregateId"] != ringID || ans["version"] != float64(2) {
				t.Fatalf("answer: %v", ans)
			}
			late := wireDo(t, srv, wireReq{Method: "POST", Path: "/doorbell/rings/" + ringID + "/decline", JWT: bobJWT})
			if late.Status != http.StatusConflict {
				t.Fatalf("late decline: %d %s", late.Status, late.Raw)
			}
			for _, s := range []*testenv.Stream{as, bs} {
				e := s.Next(t, 5*time.Second)
				if e.Event != "DoorbellAnswered" || e.ID != "2" || e.Data["userId"] != alice || e.Data["name"] != "Alice" {
					t.Fatalf("answer on stream: %+v", e)
				}
			}
			as.Quiet(t, 300*time.Millisecond)

			// Bob leaves; two rings meanwhile; he resumes from id 2.
			bs.Close()
			second := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key}, http.StatusOK)["ringId"]
			third := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"residentUserId": bob}}, http.StatusOK)
			if third["notified"] != float64(1) {
				t.Fatalf("one-resident ring notified %v", third["notified"])
			}
			if e := as.Next(t, 5*time.Second); e.Data["ringId"] != second {
				t.Fatalf("alice got %+v, want ring %v only", e, second)
			}
			resumed := openStream(t, srv, bob, bobJWT, "", "2")
			for i, want := range []any{second, third["ringId"]} {
				e := resumed.Next(t, 5*time.Second)
				if e.Data["ringId"] != want || e.ID != []string{"3", "4"}[i] {
					t.Fatalf("resumed event %d: %+v, want ring %v", i, e, want)
				}
			}
			as.Quiet(t, 200*time.Millisecond)

			// Histories: the lock's (newest first, per-channel state) and Bob's.
			deadline := time.Now().Add(10 * time.Second)
			for {
				rings := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/7/doorbell/rings?limit=2", Key: key}, http.StatusOK)
				list, _ := rings["rings"].([]any)
				first, _ := list[0].(map[string]any)
				res, _ := first["residents"].([]any)
				r0, _ := res[0].(map[string]any)
				ds, _ := r0["deliveries"].([]any)
				d0, _ := ds[0].(map[string]any)
				if len(list) != 2 || first["ringId"] != third["ringId"] || len(res) != 1 || rings["nextCursor"] == nil || len(ds) != 1 {
					t.Fatalf("lock rings page: %v", rings)
				}
				if d0["channel"] == "live" && d0["status"] == "delivered" && d0["attempts"] == float64(1) {
					cursor := rings["nextCursor"].(string)
					older := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/7/doorbell/rings?limit=2&cursor=" + cursor, Key: key}, http.StatusOK)
					ol, _ := older["rings"].([]any)
					o0, _ := ol[0].(map[string]any)
					ab, _ := o0["answeredBy"].(map[string]any)
					if len(ol) != 1 || o0["ringId"] != ringID || o0["status"] != "answered" || ab["name"] != "Alice" || older["nextCursor"] != nil {
						t.Fatalf("second page: %v", older)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("delivery state never became delivered: %v", d0)
				}
				time.Sleep(50 * time.Millisecond)
			}
			mine := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + bob + "/notifications", JWT: bobJWT}, http.StatusOK)
			if n, _ := mine["notifications"].([]any); len(n) != 3 {
				t.Fatalf("bob's notifications: %v", mine)
			}
			bad := wireDo(t, srv, wireReq{Method: "GET", Path: "/users/" + bob + "/notifications?cursor=abc", JWT: bobJWT})
			if bad.Status != 400 {
				t.Fatalf("bad cursor: %d %s", bad.Status, bad.Raw)
			}
			for _, q := range []wireReq{
				{Method: "GET", Path: "/users/" + bob + "/notifications/stream", JWT: bobJWT, Header: map[string]string{"Last-Event-ID": "abc"}},
				{Method: "GET", Path: "/users/" + bob + "/notifications/stream?after=-1", JWT: bobJWT},
				{Method: "GET", Path: "/users/" + bob + "/notifications?limit=1000", JWT: bobJWT},
				{Method: "GET", Path: "/locks/7/doorbell/rings?cursor=0", Key: key},
			} {
				if r := wireDo(t, srv, q); r.Status != 400 || r.Obj(t)["code"] != float64(400) {
					t.Errorf("%s %s: %d %s, want 400", q.Method, q.Path, r.Status, r.Raw)
				}
			}
			if r := wireDo(t, srv, wireReq{Method: "GET", Path: "/users/00000000-2b1f-4e6d-9c8b-7a6f5e4d3c2b/notifications/stream", Key: key}); r.Status != 403 && r.Status != 404 {
				t.Errorf("stream of an unknown user: %d %s", r.Status, r.Raw)
			}
			if r := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/999/doorbell/rings", Key: key}); r.Status != 404 {
				t.Fatalf("unknown lock history: %d", r.Status)
			}
			// The lock owner's JWT may ring; a resident who is not the owner may not.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/SetOwner", Key: key, Body: map[string]any{"userId": alice}}, http.StatusOK)
			if r := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", JWT: aliceJWT}, http.StatusOK); r["notified"] != float64(2) {
				t.Fatalf("owner's ring: %v", r)
			}
			if r := wireDo(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", JWT: bobJWT}); r.Status != http.StatusForbidden {
				t.Fatalf("a resident who does not own the lock rang it: %d %s", r.Status, r.Raw)
			}
			// A lock without residents still rings: nobody is told.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/8/CreateLock", Key: key, Body: map[string]any{"index": 1, "uuid": "8a8a8a8a-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, http.StatusCreated)
			empty := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/8/RingDoorbell", Key: key}, http.StatusOK)
			if n, ok := empty["notified"]; !ok || n != float64(0) || empty["success"] != true {
				t.Fatalf("ring of an empty lock: %v", empty)
			}
		})
	}
}

// TestNotificationPreferencesOverHTTP: set, read back, refuse bad input
// without recording anything, and a switched-off live channel keeps rings
// off the stream.
func TestNotificationPreferencesOverHTTP(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			key, alice, _, aliceJWT, _ := doorbellSetup(t, srv)
			path := "/users/" + alice + "/SetNotificationPreferences"
			for _, c := range []struct {
				name string
				body any
			}{
				{"bad time", map[string]any{"quietHours": map[string]any{"start": "25:00", "end": "07:00", "timeZone": "UTC"}}},
				{"unknown zone", map[string]any{"quietHours": map[string]any{"start": "22:00", "end": "07:00", "timeZone": "Mars/Olympus"}}},
				{"same start and end", map[string]any{"quietHours": map[string]any{"start": "22:00", "end": "22:00", "timeZone": "UTC"}}},
				{"unknown member", map[string]any{"channels": map[string]any{"pigeon": true}}},
				{"not a bool", map[string]any{"channels": map[string]any{"email": "no"}}},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := wireSnapshot(t, srv)
					resp := wireDo(t, srv, wireReq{Method: "POST", Path: path, JWT: aliceJWT, Body: c.body})
					if resp.Status != 400 || resp.Obj(t)["success"] != false {
						t.Fatalf("%d %s", resp.Status, resp.Raw)
					}
					wireUnchanged(t, srv, before)
				})
			}
			set := wireOK(t, srv, wireReq{Method: "POST", Path: path, JWT: aliceJWT,
				Body: map[string]any{"channels": map[string]any{"live": false, "email": true}, "quietHours": map[string]any{"start": "22:00", "end": "07:00", "timeZone": "Europe/Warsaw"}}}, http.StatusOK)
			if e, _ := set["event"].(map[string]any); e["type"] != "NotificationPreferencesSet" {
				t.Fatalf("set: %v", set)
			}
			got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + alice + "/notification-preferences", Key: key}, http.StatusOK)
			want := map[string]any{"userId": alice, "channels": map[string]any{"live": false, "email": true, "hook": true},
				"quietHours": map[string]any{"start": "22:00", "end": "07:00", "timeZone": "Europe/Warsaw"}, "availableChannels": []any{"live"}}
			if js, _ := json.Marshal(got); string(js) != string(mustJSON(t, want)) {
				t.Fatalf("preferences: %s", js)
			}
			// Live off: a ring leaves Alice's stream empty.
			as := openStream(t, srv, alice, aliceJWT, "", "")
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key}, http.StatusOK)
			as.Quiet(t, 500*time.Millisecond)
			// Setting the same again records nothing.
			again := wireOK(t, srv, wireReq{Method: "POST", Path: path, JWT: aliceJWT,
				Body: map[string]any{"channels": map[string]any{"live": false}, "quietHours": map[string]any{"start": "22:00", "end": "07:00", "timeZone": "Europe/Warsaw"}}}, http.StatusOK)
			if again["event"] != nil {
				t.Fatalf("unchanged preferences recorded %v", again["event"])
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStreamOutlivesServerTimeouts: a live stream stays open past the
// server's read and write timeouts (which `spkey serve` sets for ordinary
// answers) and still delivers.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	const timeouts = 300 * time.Millisecond
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{Timeouts: timeouts})
	key, alice, _, aliceJWT, _ := doorbellSetup(t, srv)
	s := openStream(t, srv, alice, aliceJWT, "", "")
	// Both timeouts pass with the stream idle.
	s.Quiet(t, 3*timeouts)
	ring := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key}, http.StatusOK)
	if e := s.Next(t, 5*time.Second); e.Data["ringId"] != ring["ringId"] {
		t.Fatalf("event %+v, want ring %v", e, ring["ringId"])
	}
}

// TestTenantSeesOnlyItsOwnRings: a resident who lives at two tenants' locks
// has one feed; each tenant's key sees only its own rings in the stream and
// the history, while the resident's own token sees both.
func TestTenantSeesOnlyItsOwnRings(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			acme, alice, _, aliceJWT, _ := doorbellSetup(t, srv)
			beta := srv.Tenant(t, "beta", false)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/9/CreateLock", Key: beta, Body: map[string]any{"index": 1, "uuid": "9b9b9b9b-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, http.StatusCreated)
			wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=alice@example.com", Key: beta}, http.StatusOK)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/9/AddResident", Key: beta, Body: map[string]any{"name": "Alice B.", "userId": alice}}, http.StatusOK)

			acmeStream := openStream(t, srv, alice, "", acme, "")
			betaStream := openStream(t, srv, alice, "", beta, "")
			own := openStream(t, srv, alice, aliceJWT, "", "")
			atBeta := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/9/RingDoorbell", Key: beta, Body: map[string]any{"message": "beta's visitor"}}, http.StatusOK)["ringId"]
			atAcme := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: acme}, http.StatusOK)["ringId"]

			if e := acmeStream.Next(t, 5*time.Second); e.Data["ringId"] != atAcme {
				t.Fatalf("acme's key got %+v, want only acme's ring %v", e, atAcme)
			}
			if e := betaStream.Next(t, 5*time.Second); e.Data["ringId"] != atBeta {
				t.Fatalf("beta's key got %+v, want only beta's ring %v", e, atBeta)
			}
			seen := map[any]bool{}
			for range 2 {
				seen[own.Next(t, 5*time.Second).Data["ringId"]] = true
			}
			if !seen[atAcme] || !seen[atBeta] {
				t.Fatalf("the resident's own stream saw %v", seen)
			}
			acmeStream.Quiet(t, 300*time.Millisecond)
			betaStream.Quiet(t, 10*time.Millisecond)

			for key, want := range map[string]any{acme: atAcme, beta: atBeta} {
				got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + alice + "/notifications", Key: key}, http.StatusOK)
				list, _ := got["notifications"].([]any)
				if len(list) != 1 || list[0].(map[string]any)["ringId"] != want {
					t.Fatalf("history for one tenant's key: %v, want only %v", got, want)
				}
			}
			mine := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + alice + "/notifications", JWT: aliceJWT}, http.StatusOK)
			if list, _ := mine["notifications"].([]any); len(list) != 2 {
				t.Fatalf("the resident's own history: %v", mine)
			}
		})
	}
}

// TestLockRingsScope: a key holder (maybe a guest) may not read a lock's
// rings, and a tenant that takes a lock over does not see the rings rung
// while another tenant had it.
func TestLockRingsScope(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	acme, alice, bob, _, bobJWT := doorbellSetup(t, srv)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/10/CreateLock", Key: acme, Body: map[string]any{"index": 1, "uuid": "10101010-2b1f-4e6d-9c8b-7a6f5e4d3c2b",
		"keys": []any{map[string]any{"uuid": "20202020-2b1f-4e6d-9c8b-7a6f5e4d3c2b", "userId": bob}}}}, http.StatusCreated)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/10/AddResident", Key: acme, Body: map[string]any{"name": "Alice", "userId": alice}}, http.StatusOK)
	old := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/10/RingDoorbell", Key: acme, Body: map[string]any{"message": "for acme's eyes"}}, http.StatusOK)["ringId"]
	// Bob holds a key: he may read the lock's details, not its visitors.
	wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/10/details", JWT: bobJWT}, http.StatusOK)
	if r := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/10/doorbell/rings", JWT: bobJWT}); r.Status != http.StatusForbidden {
		t.Fatalf("key holder read the rings: %d %s", r.Status, r.Raw)
	}
	// Nor may he make himself the owner or move the lock to a tenant.
	for _, q := range []wireReq{
		{Method: "POST", Path: "/locks/10/SetOwner", JWT: bobJWT, Body: map[string]any{"userId": bob}},
		{Method: "POST", Path: "/locks/10/SetOrganization", JWT: bobJWT, Body: map[string]any{"orgId": "acme"}},
	} {
		before := wireSnapshot(t, srv)
		r := wireDo(t, srv, q)
		if r.Status != http.StatusForbidden || r.Obj(t)["message"] != "Only the lock owner or the lock's organization may change who owns lock 10" {
			t.Fatalf("key holder %s: %d %s", q.Path, r.Status, r.Raw)
		}
		wireUnchanged(t, srv, before)
	}
	// The lock moves to beta (a super key does it).
	beta := srv.Tenant(t, "beta", false)
	root := srv.Tenant(t, "root", true)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/10/SetOrganization", Key: root, Body: map[string]any{"orgId": "beta"}}, http.StatusOK)
	if r := wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/10/doorbell/rings", Key: acme}); r.Status != http.StatusForbidden {
		t.Fatalf("the former tenant still reads the rings: %d %s", r.Status, r.Raw)
	}
	fresh := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/10/RingDoorbell", Key: beta}, http.StatusOK)["ringId"]
	got := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/10/doorbell/rings", Key: beta}, http.StatusOK)
	if list, _ := got["rings"].([]any); len(list) != 1 || list[0].(map[string]any)["ringId"] != fresh {
		t.Fatalf("beta sees %v, want only its own ring %v", got, fresh)
	}
	all := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/10/doorbell/rings", Key: root}, http.StatusOK)
	if list, _ := all["rings"].([]any); len(list) != 2 || list[1].(map[string]any)["ringId"] != old {
		t.Fatalf("a super key sees %v, want both rings", all)
	}
}

// TestStreamEndsWhenAccessEnds: a stream opened with an API key ends soon
// after the key is rotated away, and one opened with a JWT when the token
// expires; reconnecting is then refused.
func TestStreamEndsWhenAccessEnds(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	key, alice, _, _, _ := doorbellSetup(t, srv)
	byKey := openStream(t, srv, alice, "", key, "")
	// Expired 28 s ago: still accepted within the verifier's 30 s leeway,
	// refused 2 s from now.
	short, err := srv.JWT.Mint(alice, "alice@example.com", 2*time.Second, time.Now().Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	byToken := openStream(t, srv, alice, short, "", "")
	byKey.Quiet(t, 500*time.Millisecond) // still open while the key is valid
	wireOK(t, srv, wireReq{Method: "POST", Path: "/api-keys/acme/rotate", Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}, http.StatusCreated)
	byKey.WaitEnd(t, 5*time.Second)
	if r := wireDo(t, srv, wireReq{Method: "GET", Path: "/users/" + alice + "/notifications/stream", Key: key}); r.Status != http.StatusUnauthorized {
		t.Fatalf("reconnect with the rotated key: %d", r.Status)
	}
	byToken.WaitEnd(t, 10*time.Second)
}

// TestStreamAccessTokenOnlyForStreams: ?access_token= carries a JWT to the
// live stream only; other routes ignore it, and an API key there is no
// JWT.
func TestStreamAccessTokenOnlyForStreams(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	key, alice, _, aliceJWT, _ := doorbellSetup(t, srv)
	s := testenv.OpenStream(t, srv.URL+"/users/"+alice+"/notifications/stream?access_token="+aliceJWT, nil)
	ring := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key}, http.StatusOK)["ringId"]
	if e := s.Next(t, 5*time.Second); e.Data["ringId"] != ring {
		t.Fatalf("stream with access_token got %+v", e)
	}
	for _, path := range []string{
		"/users/" + alice + "/profile?access_token=" + aliceJWT,
		"/users/" + alice + "/notifications?access_token=" + aliceJWT,
		"/users/" + alice + "/notifications/stream?access_token=" + key,
	} {
		if r := wireDo(t, srv, wireReq{Method: "GET", Path: path}); r.Status != http.StatusUnauthorized {
			t.Errorf("GET %s: %d %s, want 401", strings.Split(path, "?")[0], r.Status, r.Raw)
		}
	}
}
