package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// The wire* helpers below are shared by the HTTP tests of this package
// (seed, authz, openapi, ops): real requests on loopback, decoded answers
// and a before/after picture of what the store holds.

// wireReq is one request. Body nil sends no body; a string or []byte is
// sent verbatim; anything else is JSON-encoded.
type wireReq struct {
	Method string
	Path   string
	Body   any
	JWT    string            // sent as Authorization: Bearer <JWT>
	Key    string            // sent as X-API-Key
	Header map[string]string // sent as given, after JWT and Key
}

// wireResp is the answer to a wireReq.
type wireResp struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   any // the decoded body; nil when it is not JSON
}

// Obj returns the body as a JSON object, failing the test otherwise.
func (r wireResp) Obj(t testing.TB) map[string]any {
	t.Helper()
	m, ok := r.JSON.(map[string]any)
	if !ok {
		t.Fatalf("answer is not a JSON object: %d %s", r.Status, r.Raw)
	}
	return m
}

func wireDo(t testing.TB, srv *testenv.Server, r wireReq) wireResp {
	t.Helper()
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		body = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(context.Background(), r.Method, srv.URL+r.Path, body)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.JWT != "" {
		req.Header.Set("Authorization", "Bearer "+r.JWT)
	}
	if r.Key != "" {
		req.Header.Set("X-API-Key", r.Key)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	out := wireResp{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		out.JSON = v
	}
	return out
}

// wireOK sends r, requires status and returns the decoded object.
func wireOK(t testing.TB, srv *testenv.Server, r wireReq, status int) map[string]any {
	t.Helper()
	resp := wireDo(t, srv, r)
	if resp.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Method, r.Path, resp.Status, status, resp.Raw)
	}
	return resp.Obj(t)
}

// wireState is what a refused request must leave untouched: every
// event-derived read model and the number of stored events.
type wireState struct {
	ReadModels string
	Events     int64
}

func wireSnapshot(t testing.TB, srv *testenv.Server) wireState {
	t.Helper()
	ctx := context.Background()
	dump, err := srv.Store.DumpReadModels(ctx)
	if err != nil {
		t.Fatalf("dump read models: %v", err)
	}
	var n int64
	// Every append writes its aggregate's snapshot in the same
	// transaction, so the snapshots name every stream there is.
	for _, typ := range []string{lock.AggregateType, user.AggregateType, tenant.AggregateType} {
		snaps, err := srv.Store.Snapshots(ctx, typ)
		if err != nil {
			t.Fatalf("list %s snapshots: %v", typ, err)
		}
		for _, s := range snaps {
			l, err := srv.Store.StreamLen(ctx, typ, s.AggregateID)
			if err != nil {
				t.Fatalf("stream length: %v", err)
			}
			n += l
		}
	}
	return wireState{ReadModels: dump, Events: n}
}

// wireUnchanged fails when the store differs from before.
func wireUnchanged(t testing.TB, srv *testenv.Server, before wireState) {
	t.Helper()
	if diff := cmp.Diff(before, wireSnapshot(t, srv)); diff != "" {
		t.Errorf("store changed by a request that must not write (-before +after):\n%s", diff)
	}
}

// wireKind says which extras the error envelope of a route carries.
type wireKind int

const (
	wirePlain   wireKind = iota // {error, message, code, details}
	wireCommand                 // plus success:false
	wireQuery                   // plus success:false and errors[] on 404
)

// wireErr is the expected error envelope. details are {field, message}
// pairs.
func wireErr(kind wireKind, status int, msg string, details ...[2]string) map[string]any {
	d := []any{}
	for _, x := range details {
		d = append(d, map[string]any{"field": x[0], "message": x[1]})
	}
	m := map[string]any{"error": http.StatusText(status), "message": msg, "code": float64(status), "details": d}
	switch {
	case kind == wireCommand:
		m["success"] = false
	case kind == wireQuery && status == http.StatusNotFound:
		m["success"] = false
		m["errors"] = []any{map[string]any{"code": float64(status), "message": msg}}
	}
	return m
}

// wireRefused sends r, requires status and the envelope want, and checks
// that nothing was written.
func wireRefused(t testing.TB, srv *testenv.Server, r wireReq, status int, want map[string]any) wireResp {
	t.Helper()
	before := wireSnapshot(t, srv)
	resp := wireDo(t, srv, r)
	if resp.Status != status {
		t.Errorf("%s %s: status %d, want %d; body %s", r.Method, r.Path, resp.Status, status, resp.Raw)
	}
	if diff := cmp.Diff(want, resp.JSON); diff != "" {
		t.Errorf("%s %s: body (-want +got):\n%s", r.Method, r.Path, diff)
	}
	wireUnchanged(t, srv, before)
	return resp
}

// wireNow is the frozen clock of tests that compare timestamps.
var wireNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func wireClock() time.Time { return wireNow }

var wireStamp = wireNow.Format(domain.TimeLayout)

// wireJSON decodes a JSON literal for a want value.
func wireJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON literal %s: %v", s, err)
	}
	return v
}

const (
	seedLockUUID  = "3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f"
	seedLock2UUID = "9b2d7c1a-4e5f-4a6b-8c7d-1e2f3a4b5c6d"
)

// seedFixture is a tenant "acme" with lock 1 (created with its key) and
// user@example.com, the lock's owner.
type seedFixture struct {
	srv    *testenv.Server
	key    string
	userID string
	jwt    string // the owner's
}

func newSeedFixture(t *testing.T, b testenv.Backend) seedFixture {
	t.Helper()
	srv := testenv.NewServer(t, b, testenv.Options{Now: wireClock})
	f := seedFixture{srv: srv, key: srv.Tenant(t, "acme", false)}
	got := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: f.key, Body: `{"index":1,"uuid":"` + seedLockUUID + `"}`}, http.StatusCreated)
	want := wireJSON(t, `{"success":true,"aggregateId":"1","version":2,"event":{"type":"LockCreated","data":{"lockId":1,"uuid":"`+seedLockUUID+`","keys":[],"timestamp":"`+wireStamp+`","thingName":"lock-1","thingArn":"arn:aws:iot:local:spkey:thing/lock-1"}}}`)
	if diff := cmp.Diff(want, any(got)); diff != "" {
		t.Fatalf("CreateLock (-want +got):\n%s", diff)
	}
	u := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=user@example.com", Key: f.key}, http.StatusOK)
	f.userID, _ = u["uuid"].(string)
	if !domain.ValidUUID(f.userID) {
		t.Fatalf("by-email uuid %q is not a UUID", f.userID)
	}
	if diff := cmp.Diff(map[string]any{"uuid": f.userID, "email": "user@example.com", "created_at": wireStamp}, u); diff != "" {
		t.Fatalf("by-email (-want +got):\n%s", diff)
	}
	got = wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: f.key, Body: map[string]any{"userId": f.userID}}, http.StatusOK)
	want = wireJSON(t, `{"success":true,"aggregateId":"1","version":3,"event":{"type":"OwnerSet","data":{"lockId":1,"uuid":"`+seedLockUUID+`","timestamp":"`+wireStamp+`","userId":"`+f.userID+`"}}}`)
	if diff := cmp.Diff(want, any(got)); diff != "" {
		t.Fatalf("SetOwner (-want +got):\n%s", diff)
	}
	f.jwt = srv.Token(t, f.userID, "user@example.com")
	return f
}

// TestSeedAddResident is the README walkthrough: tenant, lock, user,
// owner, then AddResident exactly as a client sends it.
func TestSeedAddResident(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			srv := f.srv
			residentAdded := func(lockID, lockUUID string, version int) any {
				return wireJSON(t, `{"success":true,"aggregateId":"`+lockID+`","version":`+strconv.Itoa(version)+`,
					"event":{"type":"ResidentAdded","data":{"lockId":`+lockID+`,"uuid":"`+lockUUID+`","timestamp":"`+wireStamp+`",
					"userId":"`+f.userID+`","name":"John Doe","email":"u***@example.com"}},"email":"user@example.com"}`)
			}

			t.Run("verbatim with the owner's JWT", func(t *testing.T) {
				req, err := http.NewRequest("POST", srv.URL+"/locks/1/AddResident", strings.NewReader(`{"email":"user@example.com","name":"John Doe"}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+f.jwt)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200; body %s", resp.StatusCode, raw)
				}
				if got := resp.Header.Get("Idempotent-Replayed"); got != "" {
					t.Errorf("Idempotent-Replayed = %q on a first call", got)
				}
				var got any
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatalf("decode %s: %v", raw, err)
				}
				if diff := cmp.Diff(residentAdded("1", seedLockUUID, 4), got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			})

			t.Run("same with X-API-Key", func(t *testing.T) {
				wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: `{"index":2,"uuid":"` + seedLock2UUID + `"}`}, http.StatusCreated)
				got := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/2/AddResident", Key: f.key, Body: `{"email":"user@example.com","name":"John Doe"}`}, http.StatusOK)
				if diff := cmp.Diff(residentAdded("2", seedLock2UUID, 3), any(got)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			})

			t.Run("duplicate resident", func(t *testing.T) {
				wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/1/AddResident", JWT: f.jwt, Body: `{"email":"user@example.com","name":"John Doe"}`},
					http.StatusBadRequest, wireErr(wireCommand, 400, "Resident already exists on this lock"))
			})

			t.Run("unknown user", func(t *testing.T) {
				// With a tenant's key, upstream's 404 (a user's token creates
				// the user instead: TestIdentityResidentByUserToken).
				resp := wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: `{"email":"nobody@example.com","name":"Nobody"}`},
					http.StatusNotFound, wireErr(wireCommand, 404, "No user found for email nobody@example.com: call GET /users/by-email first to create the user"))
				if msg, _ := resp.Obj(t)["message"].(string); !strings.Contains(msg, "GET /users/by-email") {
					t.Errorf("message %q does not tell the client to call GET /users/by-email", msg)
				}
			})

			t.Run("CreateLock again", func(t *testing.T) {
				before := wireSnapshot(t, srv)
				got := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: f.key, Body: `{"index":1,"uuid":"` + seedLockUUID + `"}`}, http.StatusOK)
				want := map[string]any{"success": true, "aggregateId": "1", "version": float64(4), "event": nil}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				wireUnchanged(t, srv, before)
			})

			t.Run("Idempotency-Key", func(t *testing.T) {
				wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=jane@example.com", Key: f.key}, http.StatusOK)
				first := wireReq{Method: "POST", Path: "/locks/1/AddResident", JWT: f.jwt, Header: map[string]string{"Idempotency-Key": "retry-1"},
					Body: `{"email":"jane@example.com","name":"Jane"}`}
				r1 := wireDo(t, srv, first)
				if r1.Status != http.StatusOK || r1.Header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("first call: %d Idempotent-Replayed=%q %s", r1.Status, r1.Header.Get("Idempotent-Replayed"), r1.Raw)
				}
				if ev, _ := r1.Obj(t)["event"].(map[string]any); ev == nil || ev["type"] != "ResidentAdded" {
					t.Fatalf("first call recorded no ResidentAdded: %s", r1.Raw)
				}

				before := wireSnapshot(t, srv)
				r2 := wireDo(t, srv, first)
				if r2.Status != http.StatusOK {
					t.Fatalf("replay: status %d; body %s", r2.Status, r2.Raw)
				}
				if got := r2.Header.Get("Idempotent-Replayed"); got != "true" {
					t.Errorf("replay: Idempotent-Replayed = %q, want true", got)
				}
				// The replay is the first answer without the resident's
				// e-mail address: the record keeps no raw address.
				want := r1.Obj(t)
				if want["email"] != "jane@example.com" {
					t.Errorf("first answer: email %v, want jane@example.com", want["email"])
				}
				delete(want, "email")
				if diff := cmp.Diff(want, r2.JSON); diff != "" {
					t.Errorf("replay body differs from the first answer without its e-mail (-want +replay):\n%s", diff)
				}
				wireUnchanged(t, srv, before)

				other := first
				other.Body = `{"email":"jane@example.com","name":"Janet"}`
				wireRefused(t, srv, other, http.StatusUnprocessableEntity,
					wireErr(wireCommand, 422, "Idempotency-Key was already used with a different request body"))
			})
		})
	}
}

// TestSeedBadInput sends malformed requests to the routes that take
// identifiers: each is a 400 envelope naming the field, and nothing is
// stored.
func TestSeedBadInput(t *testing.T) {
	huge := `{"name":"` + strings.Repeat("a", 1<<20) + `","email":"user@example.com"}`
	const (
		badJSON    = "invalid character 'b' looking for beginning of object key string"
		badEmail   = "Invalid email format"
		badPhone   = "Invalid phone number: use international form, e.g. +48123456789"
		badUUID    = "Invalid UUID format"
		tooLarge   = "request body is too large limit=1048576 bytes"
		wantString = "expected string"
	)
	inv := func(field, msg string) string { return "Invalid request: " + field + ": " + msg }
	badID, badUserID := badIDMsg("id"), badUUIDMsg("id")
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			uid := f.userID
			lockBody := `{"index":1,"uuid":"` + seedLockUUID + `"}`
			resBody := `{"email":"user@example.com","name":"John Doe"}`
			userPath := "/users/" + uid
			cases := []struct {
				name string
				req  wireReq
				want map[string]any
			}{
				{"AddResident bad JSON", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{bad`},
					wireErr(wireCommand, 400, "Invalid request: "+badJSON, [2]string{"", badJSON})},
				{"AddResident name not a string", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{"name":5,"email":"user@example.com"}`},
					wireErr(wireCommand, 400, inv("name", wantString), [2]string{"name", wantString})},
				{"AddResident email not a string", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{"name":"x","email":true}`},
					wireErr(wireCommand, 400, inv("email", wantString), [2]string{"email", wantString})},
				{"AddResident invalid email", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{"name":"x","email":"not-an-email"}`},
					wireErr(wireCommand, 400, badEmail, [2]string{"email", badEmail})},
				{"AddResident invalid phone", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{"name":"x","phoneNumber":"123"}`},
					wireErr(wireCommand, 400, badPhone, [2]string{"phoneNumber", badPhone})},
				{"AddResident invalid userId", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{"name":"x","userId":"not-a-uuid"}`},
					wireErr(wireCommand, 400, badUUIDMsg("userId"), [2]string{"userId", badUUIDMsg("userId")})},
				{"AddResident lock id abc", wireReq{Method: "POST", Path: "/locks/abc/AddResident", Body: resBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"AddResident lock id 0", wireReq{Method: "POST", Path: "/locks/0/AddResident", Body: resBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"AddResident lock id -5", wireReq{Method: "POST", Path: "/locks/-5/AddResident", Body: resBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"AddResident body over 1 MiB", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: huge},
					wireErr(wireCommand, 400, tooLarge)},

				{"CreateLock bad JSON", wireReq{Method: "POST", Path: "/locks/5/CreateLock", Body: `{bad`},
					wireErr(wireCommand, 400, "Invalid request: "+badJSON, [2]string{"", badJSON})},
				{"CreateLock index not an integer", wireReq{Method: "POST", Path: "/locks/5/CreateLock", Body: `{"index":"one","uuid":"` + seedLockUUID + `"}`},
					wireErr(wireCommand, 400, inv("index", "expected integer"), [2]string{"index", "expected integer"})},
				{"CreateLock index 0", wireReq{Method: "POST", Path: "/locks/5/CreateLock", Body: `{"index":0,"uuid":"` + seedLockUUID + `"}`},
					wireErr(wireCommand, 400, inv("index", "expected number > 0"), [2]string{"index", "expected number > 0"})},
				{"CreateLock invalid uuid", wireReq{Method: "POST", Path: "/locks/5/CreateLock", Body: `{"index":5,"uuid":"not-a-uuid"}`},
					wireErr(wireCommand, 400, badUUID, [2]string{"uuid", badUUID})},
				{"CreateLock lock id abc", wireReq{Method: "POST", Path: "/locks/abc/CreateLock", Body: lockBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"CreateLock lock id 0", wireReq{Method: "POST", Path: "/locks/0/CreateLock", Body: lockBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"CreateLock lock id -5", wireReq{Method: "POST", Path: "/locks/-5/CreateLock", Body: lockBody},
					wireErr(wireCommand, 400, badID, [2]string{"id", badID})},
				{"CreateLock body over 1 MiB", wireReq{Method: "POST", Path: "/locks/5/CreateLock", Body: `{"index":5,"uuid":"` + seedLockUUID + `","vendorName":"` + strings.Repeat("a", 1<<20) + `"}`},
					wireErr(wireCommand, 400, tooLarge)},

				{"by-email invalid email", wireReq{Method: "GET", Path: "/users/by-email?email=not-an-email"},
					wireErr(wireQuery, 400, badEmail, [2]string{"email", badEmail})},
				{"by-email missing email", wireReq{Method: "GET", Path: "/users/by-email"},
					wireErr(wireQuery, 400, inv("email", "required query parameter is missing"), [2]string{"email", "required query parameter is missing"})},
				{"by-email invalid uuid", wireReq{Method: "GET", Path: "/users/by-email?email=new@example.com&uuid=not-a-uuid"},
					wireErr(wireQuery, 400, badUUIDMsg("uuid"), [2]string{"uuid", badUUIDMsg("uuid")})},
				{"by-email searchOnly not a boolean", wireReq{Method: "GET", Path: "/users/by-email?email=new@example.com&searchOnly=maybe"},
					wireErr(wireQuery, 400, inv("searchOnly", `expected value to be one of "true, false"`), [2]string{"searchOnly", `expected value to be one of "true, false"`})},
				{"by-phone invalid phone", wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=123"},
					wireErr(wireQuery, 400, badPhone, [2]string{"phoneNumber", badPhone})},

				{"CreateUser bad JSON", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{bad`},
					wireErr(wireCommand, 400, "Invalid request: "+badJSON, [2]string{"", badJSON})},
				{"CreateUser userId not a string", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{"userId":5}`},
					wireErr(wireCommand, 400, inv("userId", wantString), [2]string{"userId", wantString})},
				{"CreateUser invalid email", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{"userId":"` + seedLock2UUID + `","email":"not-an-email"}`},
					wireErr(wireCommand, 400, badEmail, [2]string{"email", badEmail})},
				{"CreateUser invalid phone", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{"userId":"` + seedLock2UUID + `","phoneNumber":"123"}`},
					wireErr(wireCommand, 400, badPhone, [2]string{"phoneNumber", badPhone})},
				{"CreateUser invalid userId", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{"userId":"not-a-uuid"}`},
					wireErr(wireCommand, 400, badUUIDMsg("userId"), [2]string{"userId", badUUIDMsg("userId")})},
				{"CreateUser invalid path id", wireReq{Method: "POST", Path: "/users/not-a-uuid/CreateUser", Body: `{"userId":"` + seedLock2UUID + `"}`},
					wireErr(wireCommand, 400, badUserID, [2]string{"id", badUserID})},
				{"CreateUser body over 1 MiB", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Body: `{"userId":"` + seedLock2UUID + `","firstName":"` + strings.Repeat("a", 1<<20) + `"}`},
					wireErr(wireCommand, 400, tooLarge)},

				{"UpdatePhoneNumber bad JSON", wireReq{Method: "POST", Path: userPath + "/UpdatePhoneNumber", Body: `{bad`},
					wireErr(wireCommand, 400, "Invalid request: "+badJSON, [2]string{"", badJSON})},
				{"UpdatePhoneNumber number not a string", wireReq{Method: "POST", Path: userPath + "/UpdatePhoneNumber", Body: `{"phoneNumber":48123456789}`},
					wireErr(wireCommand, 400, inv("phoneNumber", wantString), [2]string{"phoneNumber", wantString})},
				{"UpdatePhoneNumber invalid phone", wireReq{Method: "POST", Path: userPath + "/UpdatePhoneNumber", Body: `{"phoneNumber":"123"}`},
					wireErr(wireCommand, 400, badPhone, [2]string{"phoneNumber", badPhone})},
				{"UpdatePhoneNumber body over 1 MiB", wireReq{Method: "POST", Path: userPath + "/UpdatePhoneNumber", Body: `{"phoneNumber":"+48123456789","x":"` + strings.Repeat("a", 1<<20) + `"}`},
					wireErr(wireCommand, 400, tooLarge)},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					c.req.Key = f.key
					wireRefused(t, f.srv, c.req, http.StatusBadRequest, c.want)
				})
			}
		})
	}
}

// TestSeedUserLookup covers phone normalisation, search-only misses and a
// taken UUID on the find-or-create routes.
func TestSeedUserLookup(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			srv := f.srv
			byPhone := func(n string) string { return "/users/by-phone?phoneNumber=" + url.QueryEscape(n) }

			t.Run("phone forms name one user", func(t *testing.T) {
				first := wireOK(t, srv, wireReq{Method: "GET", Path: byPhone("+48 123 456 789"), Key: f.key}, http.StatusOK)
				id, _ := first["uuid"].(string)
				if !domain.ValidUUID(id) {
					t.Fatalf("uuid %q is not a UUID", id)
				}
				want := map[string]any{"uuid": id, "email": nil, "phoneNumber": "+48123456789", "created_at": wireStamp}
				if diff := cmp.Diff(want, first); diff != "" {
					t.Errorf("first lookup (-want +got):\n%s", diff)
				}
				before := wireSnapshot(t, srv)
				second := wireOK(t, srv, wireReq{Method: "GET", Path: byPhone("0048123456789"), Key: f.key}, http.StatusOK)
				if diff := cmp.Diff(want, second); diff != "" {
					t.Errorf("0048 form (-want +got):\n%s", diff)
				}
				wireUnchanged(t, srv, before)
			})

			t.Run("searchOnly miss", func(t *testing.T) {
				wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=ghost@example.com&searchOnly=true", Key: f.key},
					http.StatusNotFound, wireErr(wireQuery, 404, "User not found"))
				wireRefused(t, srv, wireReq{Method: "GET", Path: byPhone("+48999000111") + "&searchOnly=true", Key: f.key},
					http.StatusNotFound, wireErr(wireQuery, 404, "User not found"))
			})

			t.Run("searchOnly hit", func(t *testing.T) {
				got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=USER@example.com&searchOnly=true", Key: f.key}, http.StatusOK)
				if diff := cmp.Diff(map[string]any{"uuid": f.userID, "email": "user@example.com", "created_at": wireStamp}, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})

			t.Run("uuid taken", func(t *testing.T) {
				wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=new@example.com&uuid=" + f.userID, Key: f.key},
					http.StatusConflict, wireErr(wireQuery, 409, "Requested UUID already exists"))
				wireRefused(t, srv, wireReq{Method: "GET", Path: byPhone("+48999000222") + "&uuid=" + f.userID, Key: f.key},
					http.StatusConflict, wireErr(wireQuery, 409, "Requested UUID already exists"))
			})
		})
	}
}

// TestSeedLockEventsPaging: 12 events are two pages of 10; the default is
// the last page.
func TestSeedLockEventsPaging(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{Now: wireClock})
			key := srv.Tenant(t, "acme", false)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: key, Body: `{"index":1,"uuid":"` + seedLockUUID + `"}`}, http.StatusCreated)
			var users [2]string
			for i, e := range []string{"one@example.com", "two@example.com"} {
				users[i], _ = wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=" + e, Key: key}, http.StatusOK)["uuid"].(string)
			}
			// LockCreated and OrganizationSet, then ten OwnerSet.
			owners := map[int]string{}
			for v := 3; v <= 12; v++ {
				owners[v] = users[v%2]
				wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: key, Body: map[string]any{"userId": owners[v]}}, http.StatusOK)
			}
			// orgId is the lock's org after the event: LockCreated comes
			// before the OrganizationSet of a lock created with a key.
			event := func(v int, typ, org, data string) any {
				return wireJSON(t, `{"aggregateType":"lock","aggregateId":"1","version":`+strconv.Itoa(v)+`,"type":"`+typ+`","timestamp":"`+wireStamp+`","orgId":"`+org+`","event":`+data+`}`)
			}
			ownerSet := func(v int) any {
				return event(v, "OwnerSet", "acme", `{"lockId":1,"uuid":"`+seedLockUUID+`","timestamp":"`+wireStamp+`","userId":"`+owners[v]+`"}`)
			}
			page := func(n int, evs ...any) map[string]any {
				if evs == nil {
					evs = []any{}
				}
				return map[string]any{"aggregateId": "1", "totalEvents": float64(12), "page": float64(n), "pageSize": float64(10), "totalPages": float64(2), "events": evs}
			}

			before := wireSnapshot(t, srv)
			got := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/events", Key: key}, http.StatusOK)
			if diff := cmp.Diff(page(2, ownerSet(11), ownerSet(12)), got); diff != "" {
				t.Errorf("default page (-want +got):\n%s", diff)
			}
			got = wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/events?page=2", Key: key}, http.StatusOK)
			if diff := cmp.Diff(page(2, ownerSet(11), ownerSet(12)), got); diff != "" {
				t.Errorf("page=2 (-want +got):\n%s", diff)
			}
			want := page(1,
				event(1, "LockCreated", "", `{"lockId":1,"uuid":"`+seedLockUUID+`","keys":[],"timestamp":"`+wireStamp+`","thingName":"lock-1","thingArn":"arn:aws:iot:local:spkey:thing/lock-1"}`),
				event(2, "OrganizationSet", "acme", `{"lockId":1,"uuid":"`+seedLockUUID+`","timestamp":"`+wireStamp+`","orgId":"acme"}`),
				ownerSet(3), ownerSet(4), ownerSet(5), ownerSet(6), ownerSet(7), ownerSet(8), ownerSet(9), ownerSet(10))
			got = wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/events?page=1", Key: key}, http.StatusOK)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("page=1 (-want +got):\n%s", diff)
			}
			got = wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/events?page=3", Key: key}, http.StatusOK)
			if diff := cmp.Diff(page(3), got); diff != "" {
				t.Errorf("page=3 (-want +got):\n%s", diff)
			}
			wireUnchanged(t, srv, before)
			for _, p := range []string{"0", "-1", "x"} {
				wireRefused(t, srv, wireReq{Method: "GET", Path: "/locks/1/events?page=" + p, Key: key}, http.StatusBadRequest,
					wireErr(wireQuery, 400, "page must be a positive integer", [2]string{"page", "page must be a positive integer"}))
			}
		})
	}
}
