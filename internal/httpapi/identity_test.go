package httpapi_test

import (
	"context"
	"net/url"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// The scenarios of issue 10 §1, over real HTTP on every backend: knowing
// somebody's address (or id) gives no power over their record; only
// standing does (the person, the admin, a super key, the creating tenant
// while it has custody, and for reading, a tenant whose lock they are on).

const (
	msgOwnEmail = "A user token may only use its own verified e-mail address (the token's email claim)"
	msgOwnPhone = "A user token may only use its own verified phone number (the token's phone_number claim)"
)

// vaultEmail is the id of the user the vault has for an e-mail ("" when none).
func vaultEmail(t *testing.T, srv *testenv.Server, email string) string {
	t.Helper()
	u, ok, err := srv.Store.User(context.Background(), store.ByEmail, email)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return u.UserID
}

func TestIdentityOwnAddress(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			iss := testenv.OIDCIssuer(t)
			srv := testenv.NewServer(t, b, testenv.Options{JWT: &auth.Config{Issuer: iss.URL}})
			key := srv.Tenant(t, "acme", false)
			attacker := app.NewUUID()
			tok := srv.Token(t, attacker, "attacker@example.com")

			// Claiming the victim's address on one's own record, at creation
			// or later, is refused and stores nothing.
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/CreateUser", JWT: tok,
				Body: map[string]any{"userId": attacker, "email": "victim@example.com"}}, 403, wireErr(wireCommand, 403, msgOwnEmail))
			if id := vaultEmail(t, srv, "victim@example.com"); id != "" {
				t.Fatalf("the vault gave victim@example.com to %s", id)
			}
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/CreateUser", JWT: tok, Body: map[string]any{"userId": attacker}}, 201)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdateEmail", JWT: tok,
				Body: map[string]any{"email": "Victim@Example.com"}}, 403, wireErr(wireCommand, 403, msgOwnEmail))
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdateEmail", JWT: tok, Body: map[string]any{"email": "attacker@example.com"}}, 200)

			// A phone number needs the token's own verified phone_number.
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdatePhoneNumber", JWT: tok,
				Body: map[string]any{"phoneNumber": "+48600700800"}}, 403, wireErr(wireCommand, 403, msgOwnPhone))
			withPhone, err := srv.JWT.MintPhone(attacker, "attacker@example.com", "+48 600 700 800", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdatePhoneNumber", JWT: withPhone,
				Body: map[string]any{"phoneNumber": "+48600700801"}}, 403, wireErr(wireCommand, 403, msgOwnPhone))
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdatePhoneNumber", JWT: withPhone, Body: map[string]any{"phoneNumber": "0048600700800"}}, 200)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + attacker + "/UpdatePhoneNumber", JWT: tok, Body: `{"phoneNumber":null}`}, 200)

			// An outside issuer vouches for an address only with
			// email_verified: true.
			outside := func(sub string, verified bool) string {
				return iss.Sign(t, jwt.MapClaims{"iss": iss.URL, "sub": sub, "email": "o@example.com", "email_verified": verified, "exp": time.Now().Add(time.Hour).Unix()})
			}
			o1, o2 := app.NewUUID(), app.NewUUID()
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + o1 + "/CreateUser", JWT: outside(o1, false),
				Body: map[string]any{"userId": o1, "email": "o@example.com"}}, 403, wireErr(wireCommand, 403, msgOwnEmail))
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + o2 + "/CreateUser", JWT: outside(o2, true), Body: map[string]any{"userId": o2, "email": "o@example.com"}}, 201)

			// The victim's address is still nobody's: a tenant's lookup
			// creates a new record, not the attacker's.
			got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=victim@example.com", Key: key}, 200)
			if got["uuid"] == attacker || got["uuid"] == "" {
				t.Fatalf("by-email victim: %v", got)
			}
		})
	}
}

func TestIdentityOtherTenantsResidents(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			keyA, keyB := srv.Tenant(t, "org-a", false), srv.Tenant(t, "org-b", false)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: keyA, Body: map[string]any{"index": 1, "uuid": app.NewUUID()}}, 201)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: keyB, Body: map[string]any{"index": 1, "uuid": app.NewUUID()}}, 201)
			r, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=r@example.com", Key: keyA}, 200)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: keyA, Body: map[string]any{"name": "R", "email": "r@example.com"}}, 200)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48111222333"}}, 200)
			phoneOf := func(key string) wireResp {
				return wireDo(t, srv, wireReq{Method: "GET", Path: "/users/" + r + "/phone-number", Key: key})
			}

			// Tenant B finds A's resident: the answer, and nothing more.
			for _, path := range []string{"/users/by-email?email=r@example.com&searchOnly=true", "/users/by-email?email=r@example.com",
				"/users/by-phone?phoneNumber=%2B48111222333&searchOnly=true", "/users/by-phone?phoneNumber=%2B48111222333"} {
				if got := wireOK(t, srv, wireReq{Method: "GET", Path: path, Key: keyB}, 200); got["uuid"] != r {
					t.Fatalf("%s: %v", path, got)
				}
			}
			change := wireErr(wireCommand, 403, app.MsgNoChangeStanding)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Key: keyB, Body: map[string]any{"phoneNumber": "+48999999999"}}, 403, change)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Key: keyB, Body: `{"phoneNumber":null}`}, 403, change)
			for _, path := range []string{"/phone-number", "/profile", "/notification-preferences", "/notifications"} {
				kind := wireQuery
				if path == "/notification-preferences" || path == "/notifications" {
					kind = wirePlain
				}
				wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/" + r + path, Key: keyB}, 403, wireErr(kind, 403, app.MsgNoReadStanding))
			}
			if got := phoneOf(keyA); got.Status != 200 || got.Obj(t)["phoneNumber"] != "+48111222333" {
				t.Fatalf("org-a reads its resident's phone: %d %s", got.Status, got.Raw)
			}

			// B puts R on its own lock: it may now read R, never change R,
			// and A's custody ends (R is on another organization's lock).
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/2/AddResident", Key: keyB, Body: map[string]any{"name": "R", "email": "r@example.com"}}, 200)
			// Masked: B could put anybody it knows the address of on its own
			// lock, so membership alone shows no raw number or address.
			if got := phoneOf(keyB); got.Status != 200 || got.Obj(t)["phoneNumber"] != "***2333" {
				t.Fatalf("org-b reads a resident of its lock: %d %s, want the masked number", got.Status, got.Raw)
			}
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + r + "/profile", Key: keyB}, 200); got["email"] != "r***@example.com" || got["phoneNumber"] != "***2333" {
				t.Fatalf("org-b reads the profile of a resident of its lock: %v, want masked contacts", got)
			}
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Key: keyB, Body: map[string]any{"phoneNumber": "+48999999999"}}, 403, change)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48999999999"}}, 403, change)
			if got := phoneOf(keyA); got.Status != 200 || got.Obj(t)["phoneNumber"] != "***2333" {
				t.Fatalf("org-a, now with membership only, reads its resident masked: %d %s", got.Status, got.Raw)
			}
			// The admin keeps standing over every record.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + r + "/UpdatePhoneNumber", Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey},
				Body: map[string]any{"phoneNumber": "+48111222334"}}, 200)

			// Signing in ends custody too.
			s, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=s@example.com", Key: keyA}, 200)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48222333444"}}, 200)
			wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + s + "/profile", JWT: srv.Token(t, s, "s@example.com")}, 200)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48222333445"}}, 403, change)
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/" + s + "/phone-number", Key: keyA}, 403, wireErr(wireQuery, 403, app.MsgNoReadStanding))
		})
	}
}

func TestIdentityUserLookups(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			key := srv.Tenant(t, "acme", false)
			known, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48500100200&email=known@example.com", Key: key}, 200)["uuid"].(string)
			u := app.NewUUID()
			tok := srv.Token(t, u, "u@example.com")

			// Another person's address: one refusal, whether or not it
			// exists, and nothing created.
			exists := wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=known@example.com", JWT: tok}, 403, wireErr(wireQuery, 403, msgOwnEmail))
			missing := wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=nobody@example.com", JWT: tok}, 403, wireErr(wireQuery, 403, msgOwnEmail))
			if string(exists.Raw) != string(missing.Raw) {
				t.Errorf("answers differ: %s vs %s", exists.Raw, missing.Raw)
			}
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48500100200", JWT: tok}, 403, wireErr(wireQuery, 403, msgOwnPhone))
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48500100999", JWT: tok}, 403, wireErr(wireQuery, 403, msgOwnPhone))
			if id := vaultEmail(t, srv, "nobody@example.com"); id != "" {
				t.Fatalf("a refused lookup created %s", id)
			}
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=u@example.com&uuid=" + app.NewUUID(), JWT: tok}, 403,
				wireErr(wireQuery, 403, "A user token may only create its own user record (uuid must be the token's user id)"))

			// One's own address: found or created, under the token's id.
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=U@example.com", JWT: tok}, 200); got["uuid"] != u {
				t.Fatalf("own by-email: %v", got)
			}
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=u@example.com&searchOnly=true", JWT: tok}, 200); got["uuid"] != u {
				t.Fatalf("own by-email again: %v", got)
			}
			ph := app.NewUUID()
			phTok, err := srv.JWT.MintPhone(ph, "", "+48700800900", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=" + url.QueryEscape("+48 700 800 900"), JWT: phTok}, 200); got["uuid"] != ph {
				t.Fatalf("own by-phone: %v", got)
			}

			// A user's token adding residents learns nothing about the
			// address: known or not, the same answer; no e-mail of a user
			// named by phone.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/5/CreateLock", Key: key, Body: map[string]any{"index": 1, "uuid": app.NewUUID()}}, 201)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/5/SetOwner", Key: key, Body: map[string]any{"userId": u}}, 200)
			add := func(body map[string]any) map[string]any {
				return wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/5/AddResident", JWT: tok, Body: body}, 200)
			}
			a1 := add(map[string]any{"name": "Known", "email": "known@example.com"})
			a2 := add(map[string]any{"name": "New", "email": "new@example.com"})
			if a1["email"] != "known@example.com" || a2["email"] != "new@example.com" {
				t.Errorf("echoes: %v, %v", a1["email"], a2["email"])
			}
			if diff := cmp.Diff(keysOf(a1), keysOf(a2)); diff != "" {
				t.Errorf("answer shapes differ (-known +new):\n%s", diff)
			}
			if id := vaultEmail(t, srv, "new@example.com"); id == "" {
				t.Errorf("AddResident by a user's token did not create new@example.com")
			}
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/5/RemoveResident", JWT: tok, Body: map[string]any{"userId": known}}, 200)
			byPhone := add(map[string]any{"name": "Known", "phoneNumber": "+48500100200"})
			if e, ok := byPhone["email"]; ok && e != "" {
				t.Errorf("AddResident by phone echoes the user's e-mail %v", e)
			}
			if data := byPhone["event"].(map[string]any)["data"].(map[string]any); data["email"] != nil {
				t.Errorf("AddResident by phone: the event shows the user's masked e-mail %v", data["email"])
			}
			// Nor does the lock's resident list: other residents' e-mails are
			// masked for a user's token, raw for the lock's tenant.
			for _, c := range []struct {
				req  wireReq
				want string
			}{
				{wireReq{Method: "GET", Path: "/locks/5/details", JWT: tok}, ""},
				{wireReq{Method: "GET", Path: "/locks/5/details", Key: key}, "known@example.com"},
			} {
				got := wireOK(t, srv, c.req, 200)
				found := false
				for _, r := range got["residents"].([]any) {
					if m := r.(map[string]any); m["userId"] == known {
						found = true
						if e, _ := m["email"].(string); e != c.want {
							t.Errorf("details for %+v show %v, want %s", c.req, m["email"], c.want)
						}
					}
				}
				if !found {
					t.Errorf("details lack the resident: %v", got)
				}
			}
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/5/AddResident", JWT: tok,
				Body: map[string]any{"name": "Two", "email": "known@example.com", "phoneNumber": "+48500100999"}}, 400,
				wireErr(wireCommand, 400, "With a user token, name the resident by one of email, phoneNumber or userId",
					[2]string{"email", "With a user token, name the resident by one of email, phoneNumber or userId"}))
		})
	}
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestIdentityLockProvisioning(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			keyA, keyB := srv.Tenant(t, "org-a", false), srv.Tenant(t, "org-b", false)
			device := app.NewUUID()
			tok := srv.Token(t, app.NewUUID(), "squatter@example.com")

			// A user's token cannot take a lock id the tenant is about to
			// provision.
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/1001/CreateLock", JWT: tok, Body: map[string]any{"index": 1, "uuid": device}}, 403,
				wireErr(wireCommand, 403, "Locks are provisioned with a tenant's API key: this server does not let user tokens create locks (spkey serve --allow-user-lock-create)"))
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1001/CreateLock", Key: keyA, Body: map[string]any{"index": 1, "uuid": device}}, 201)

			// One device, one lock: another lock id with the same uuid is
			// 409, for another tenant and for the same one.
			msg := "Another lock already has device uuid " + device
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/1002/CreateLock", Key: keyB, Body: map[string]any{"index": 1, "uuid": device}}, 409, wireErr(wireCommand, 409, msg))
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/locks/1003/CreateLock", Key: keyA, Body: map[string]any{"index": 1, "uuid": device}}, 409, wireErr(wireCommand, 409, msg))
			// The same lock again is upstream's idempotent 200.
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1001/CreateLock", Key: keyA, Body: map[string]any{"index": 1, "uuid": device}}, 200)
		})
	}
}

// TestIdentityDeviceUUIDRace: locks with one device uuid created at once
// (different lock ids, so no per-aggregate serialisation on PostgreSQL):
// exactly one is created, every other answer is 409, and only that lock
// exists.
func TestIdentityDeviceUUIDRace(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			key := srv.Tenant(t, "org-a", false)
			device := app.NewUUID()
			const n = 8
			statuses := make(chan int, n)
			start := make(chan struct{})
			for i := range n {
				go func() {
					<-start
					statuses <- wireDo(t, srv, wireReq{Method: "POST", Path: "/locks/" + strconv.Itoa(3000+i) + "/CreateLock", Key: key,
						Body: map[string]any{"index": 1, "uuid": device}}).Status
				}()
			}
			close(start)
			count := map[int]int{}
			for range n {
				count[<-statuses]++
			}
			if diff := cmp.Diff(map[int]int{201: 1, 409: n - 1}, count); diff != "" {
				t.Fatalf("statuses (-want +got):\n%s", diff)
			}
			snaps, err := srv.Store.Snapshots(context.Background(), "lock")
			if err != nil {
				t.Fatal(err)
			}
			if len(snaps) != 1 {
				t.Fatalf("%d locks exist, want 1", len(snaps))
			}
		})
	}
}

// TestIdentityPreCreatedRecord: a tenant that created a record for an
// address before its person ever signed up loses custody as soon as the
// person with that verified address calls the API, whatever id their token
// carries; an address the issuer does not vouch for ends nothing.
func TestIdentityPreCreatedRecord(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			iss := testenv.OIDCIssuer(t)
			srv := testenv.NewServer(t, b, testenv.Options{JWT: &auth.Config{Issuer: iss.URL}})
			key := srv.Tenant(t, "org-a", false)
			change := wireErr(wireCommand, 403, app.MsgNoChangeStanding)
			pre := func(addr string) string {
				id, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=" + addr, Key: key}, 200)["uuid"].(string)
				wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + id + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48300400500"}}, 200)
				wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + id + "/UpdatePhoneNumber", Key: key, Body: `{"phoneNumber":null}`}, 200)
				return id
			}
			outside := func(email string, verified bool) string {
				return iss.Sign(t, jwt.MapClaims{"iss": iss.URL, "sub": app.NewUUID(), "email": email, "email_verified": verified, "exp": time.Now().Add(time.Hour).Unix()})
			}

			// Unverified: the tenant keeps custody.
			x := pre("pre@example.com")
			wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/residents", JWT: outside("pre@example.com", false)}, 404)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + x + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48300400500"}}, 200)
			// Verified, under another id: custody ends.
			wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/residents", JWT: outside("Pre@Example.com", true)}, 404)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + x + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48300400501"}}, 403, change)

			// The same for a phone number the local issuer vouches for.
			y, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48600600600", Key: key}, 200)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + y + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48600600601"}}, 200)
			tok, err := srv.JWT.MintPhone(app.NewUUID(), "", "+48600600601", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/residents", JWT: tok}, 404)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + y + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48600600602"}}, 403, change)
		})
	}
}

// TestIdentityChosenIDs: a tenant cannot make the record of a person who
// has signed in (its addresses would land in their account); a person's own
// CreateUser never silently drops the address they asked for; the sign-up
// hook hands a record made before sign-up to its person.
func TestIdentityChosenIDs(t *testing.T) {
	hook := signupHook
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			keyA, keyB := srv.Tenant(t, "org-a", false), srv.Tenant(t, "org-b", false)
			s := app.NewUUID()
			tok := srv.Token(t, s, "s@example.com")
			wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + s + "/profile", JWT: tok}, 404) // signed in, no record yet

			taken := "This id belongs to a person who has signed in: only they (or the admin) can create their record"
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/CreateUser", Key: keyB, Body: map[string]any{"userId": s, "email": "attacker@evil.example"}},
				409, wireErr(wireCommand, 409, taken))
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=attacker@evil.example&uuid=" + s, Key: keyB}, 409, wireErr(wireQuery, 409, taken))
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48900900900&uuid=" + s, Key: keyB}, 409, wireErr(wireQuery, 409, taken))

			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/CreateUser", JWT: tok, Body: map[string]any{"userId": s}}, 201)
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/CreateUser", JWT: tok, Body: map[string]any{"userId": s, "email": "s@example.com"}},
				409, wireErr(wireCommand, 409, "Your user record exists with another e-mail address or none: set it with UpdateEmail"))
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + s + "/UpdateEmail", JWT: tok, Body: map[string]any{"email": "s@example.com"}}, 200)

			// A record org-a made before its person signed up: the hook
			// answers with it, and org-a's custody ends.
			x, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=v@example.com", Key: keyA}, 200)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/users/" + x + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48700700700"}}, 200)
			if got := wireOK(t, srv, hook("v@example.com", app.NewUUID()), 200); got["userId"] != x {
				t.Fatalf("sign-up of v@example.com: %v, want the record %s", got, x)
			}
			wireRefused(t, srv, wireReq{Method: "POST", Path: "/users/" + x + "/UpdatePhoneNumber", Key: keyA, Body: map[string]any{"phoneNumber": "+48700700701"}},
				403, wireErr(wireCommand, 403, app.MsgNoChangeStanding))
		})
	}
}
