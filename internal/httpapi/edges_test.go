package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// badIDMsg is the refusal of a lock or delivery id that is not a canonical
// positive integer.
func badIDMsg(field string) string {
	_, err := domain.ParseID(field, "x")
	return err.(*domain.Error).Message
}

// badUUIDMsg is the refusal of a user or ring id that is not a lower-case
// canonical UUID.
func badUUIDMsg(field string) string {
	_, err := domain.CanonicalUUID(field, "x")
	return err.(*domain.Error).Message
}

// edgeCase is one refused request: status, envelope kind and the field
// named in details (the message is the detail's message).
type edgeCase struct {
	name   string
	req    wireReq
	status int
	kind   wireKind
	field  string
	msg    string
}

// runEdges sends every case with the credentials it carries and checks
// the whole envelope and that nothing was stored.
func runEdges(t *testing.T, srv *testenv.Server, cases []edgeCase) {
	t.Helper()
	runEdgesSchema(t, srv, cases, false)
}

// runEdgesSchema is runEdges for cases refused by the request schema
// (schema true), whose answers say "Invalid request: " before the
// detail's message.
func runEdgesSchema(t *testing.T, srv *testenv.Server, cases []edgeCase, schema bool) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := wireErr(c.kind, c.status, c.msg)
			if c.field != "" || c.status == http.StatusBadRequest {
				top := c.msg
				if schema {
					top = "Invalid request: " + c.msg
				}
				want = wireErr(c.kind, c.status, top, [2]string{c.field, c.msg})
			}
			wireRefused(t, srv, c.req, c.status, want)
		})
	}
}

// TestEdgePathIDs: every id in a path is checked before anything else
// reads it: user and ring ids are lower-case canonical UUIDs, lock and
// delivery ids canonical positive integers, org ids letters, digits and
// . _ : @ -. Each is a 400 naming the parameter, and nothing is stored.
func TestEdgePathIDs(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
			upper := strings.ToUpper(f.userID)
			hook := "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
			badOrg := "orgId must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit"
			var cases []edgeCase
			for _, id := range []string{"..%2F..", "%7B" + f.userID + "%7D", upper, "not-a-uuid", "urn:uuid:" + f.userID, f.userID + "%20", strings.ReplaceAll(f.userID, "-", "")} {
				cases = append(cases,
					edgeCase{"profile " + id, wireReq{Method: "GET", Path: "/users/" + id + "/profile", Key: f.key}, 400, wireQuery, "id", badUUIDMsg("id")},
					edgeCase{"UpdatePhoneNumber " + id, wireReq{Method: "POST", Path: "/users/" + id + "/UpdatePhoneNumber", JWT: f.jwt, Body: map[string]any{"phoneNumber": "+48123456789"}}, 400, wireCommand, "id", badUUIDMsg("id")},
				)
			}
			cases = append(cases,
				edgeCase{"stream upper-case", wireReq{Method: "GET", Path: "/users/" + upper + "/notifications/stream", JWT: f.jwt}, 400, wirePlain, "id", badUUIDMsg("id")},
				edgeCase{"preferences upper-case", wireReq{Method: "POST", Path: "/users/" + upper + "/SetNotificationPreferences", JWT: f.jwt, Body: map[string]any{"channels": map[string]any{"email": false}}}, 400, wireCommand, "id", badUUIDMsg("id")},
			)
			for _, id := range []string{"+1", "01", "007", "1e3", "%2012", "12%20", "1.0", "0x1", "9007199254740992", "99999999999999999999", "0", "-1", "abc", "%E2%91%A0"} {
				cases = append(cases,
					edgeCase{"CreateLock " + id, wireReq{Method: "POST", Path: "/locks/" + id + "/CreateLock", Key: f.key, Body: map[string]any{"index": 1, "uuid": seedLock2UUID}}, 400, wireCommand, "id", badIDMsg("id")},
					edgeCase{"details " + id, wireReq{Method: "GET", Path: "/locks/" + id + "/details", Key: f.key}, 400, wireQuery, "id", badIDMsg("id")},
					edgeCase{"residents " + id, wireReq{Method: "GET", Path: "/locks/" + id + "/residents"}, 400, wireQuery, "id", badIDMsg("id")},
				)
			}
			cases = append(cases,
				edgeCase{"ring id not a UUID", wireReq{Method: "POST", Path: "/doorbell/rings/nope/answer", JWT: f.jwt}, 400, wireCommand, "ringId", badUUIDMsg("ringId")},
				edgeCase{"ring id upper-case", wireReq{Method: "POST", Path: "/doorbell/rings/" + strings.ToUpper(hook) + "/decline", JWT: f.jwt}, 400, wireCommand, "ringId", badUUIDMsg("ringId")},
				edgeCase{"webhook id upper-case", wireReq{Method: "GET", Path: "/webhooks/" + strings.ToUpper(hook), Key: f.key}, 400, wirePlain, "webhookId", badUUIDMsg("webhookId")},
				edgeCase{"webhook id braced", wireReq{Method: "GET", Path: "/tenants/acme/webhooks/%7B" + hook + "%7D", Header: admin}, 400, wirePlain, "webhookId", badUUIDMsg("webhookId")},
				edgeCase{"delivery id 007", wireReq{Method: "POST", Path: "/webhooks/" + hook + "/deliveries/007/redeliver", Key: f.key}, 400, wirePlain, "deliveryId", badIDMsg("deliveryId")},
				edgeCase{"delivery id +7", wireReq{Method: "POST", Path: "/tenants/acme/webhooks/" + hook + "/deliveries/+7/redeliver", Header: admin}, 400, wirePlain, "deliveryId", badIDMsg("deliveryId")},
				edgeCase{"org id with a space", wireReq{Method: "POST", Path: "/tenants/bad%20org/register", Header: admin, Body: map[string]any{}}, 400, wirePlain, "orgId", badOrg},
				edgeCase{"org id dot-dot", wireReq{Method: "GET", Path: "/tenants/..%2F..%2Fx/webhooks", Header: admin}, 400, wirePlain, "orgId", badOrg},
				edgeCase{"org id leading dash", wireReq{Method: "POST", Path: "/api-keys/-acme/rotate", Header: admin}, 400, wirePlain, "orgId", badOrg},
			)
			runEdges(t, f.srv, cases)
		})
	}
}

// TestEdgeBodyIDs: user ids in bodies and queries are lower-case canonical
// UUIDs too; a device uuid is still lower-cased (it names hardware).
func TestEdgeBodyIDs(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			upper := strings.ToUpper(f.userID)
			runEdges(t, f.srv, []edgeCase{
				{"by-email uuid upper-case", wireReq{Method: "GET", Path: "/users/by-email?email=new@example.com&uuid=" + strings.ToUpper(seedLock2UUID), Key: f.key}, 400, wireQuery, "uuid", badUUIDMsg("uuid")},
				{"by-phone uuid braced", wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48123456789&uuid=%7B" + seedLock2UUID + "%7D", Key: f.key}, 400, wireQuery, "uuid", badUUIDMsg("uuid")},
				{"AddResident userId upper-case", wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: map[string]any{"name": "Ann", "userId": upper}}, 400, wireCommand, "userId", badUUIDMsg("userId")},
				{"RemoveResident userId upper-case", wireReq{Method: "POST", Path: "/locks/1/RemoveResident", Key: f.key, Body: map[string]any{"userId": upper}}, 400, wireCommand, "userId", badUUIDMsg("userId")},
				{"SetOwner userId upper-case", wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: f.key, Body: map[string]any{"userId": upper}}, 400, wireCommand, "userId", badUUIDMsg("userId")},
				{"SetOwner userId path traversal", wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: f.key, Body: map[string]any{"userId": "../../x"}}, 400, wireCommand, "userId", badUUIDMsg("userId")},
				{"CreateLock ownerId not a UUID", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: map[string]any{"index": 2, "uuid": seedLock2UUID, "ownerId": "someone"}}, 400, wireCommand, "ownerId", badUUIDMsg("ownerId")},
				{"CreateLock key userId upper-case", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: map[string]any{"index": 2, "uuid": seedLock2UUID, "keys": []any{map[string]any{"uuid": seedLockUUID, "userId": upper}}}}, 400, wireCommand, "keys[0].userId", badUUIDMsg("keys[0].userId")},
				{"RingDoorbell residentUserId upper-case", wireReq{Method: "POST", Path: "/locks/1/RingDoorbell", Key: f.key, Body: map[string]any{"residentUserId": upper}}, 400, wireCommand, "residentUserId", badUUIDMsg("residentUserId")},
				{"CreateUser userId upper-case", wireReq{Method: "POST", Path: "/users/" + seedLock2UUID + "/CreateUser", Key: f.key, Body: map[string]any{"userId": strings.ToUpper(seedLock2UUID)}}, 400, wireCommand, "userId", badUUIDMsg("userId")},
			})
			got := wireOK(t, f.srv, wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: map[string]any{"index": 2, "uuid": strings.ToUpper(seedLock2UUID)}}, http.StatusCreated)
			if ev, _ := got["event"].(map[string]any); ev == nil || ev["data"].(map[string]any)["uuid"] != seedLock2UUID {
				t.Errorf("CreateLock with an upper-case device uuid: %v, want it lower-cased", got)
			}
		})
	}
}

// TestEdgeAuthenticateFirst: a request a caller may not make is refused
// for its credentials (401 without, 403 with the wrong ones) whatever its
// body, path ids or content type; validation comes after.
func TestEdgeAuthenticateFirst(t *testing.T) {
	const msgKeyOnly = "Admin credentials required: X-Admin-API-Key"
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			adminKey := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
			key := srv.Tenant(t, "acme", false)
			user := srv.Token(t, "7a7a7a7a-0000-4000-8000-000000000001", "someone@example.com")
			form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
			runEdges(t, srv, []edgeCase{
				{"api-keys empty body", wireReq{Method: "POST", Path: "/api-keys", Body: `{}`}, 401, wirePlain, "", msgKeyOnly},
				{"api-keys bad JSON", wireReq{Method: "POST", Path: "/api-keys", Body: `{bad`}, 401, wirePlain, "", msgKeyOnly},
				{"api-keys form body", wireReq{Method: "POST", Path: "/api-keys", Body: `orgId=x`, Header: form}, 401, wirePlain, "", msgKeyOnly},
				{"api-keys with a tenant key", wireReq{Method: "POST", Path: "/api-keys", Key: key, Body: `{}`}, 401, wirePlain, "", msgKeyOnly},
				{"register bad org id", wireReq{Method: "POST", Path: "/tenants/bad%20org/register", Body: `{}`}, 401, wirePlain, "", msgKeyOnly},
				{"sign-up hook empty body", wireReq{Method: "POST", Path: "/users", Body: `{}`}, 401, wirePlain, "", msgHook},
				{"sign-up hook with a JWT only", wireReq{Method: "POST", Path: "/users", JWT: user, Body: `{}`}, 401, wirePlain, "", msgHook},
				{"AddResident bad JSON", wireReq{Method: "POST", Path: "/locks/1/AddResident", Body: `{bad`}, 401, wireCommand, "", msgNoAuth},
				{"CreateLock bad lock id", wireReq{Method: "POST", Path: "/locks/+1/CreateLock", Body: `{}`}, 401, wireCommand, "", msgNoAuth},
				{"profile bad user id", wireReq{Method: "GET", Path: "/users/..%2F../profile"}, 401, wireQuery, "", msgNoAuth},
				{"by-email without email", wireReq{Method: "GET", Path: "/users/by-email"}, 401, wireQuery, "", msgNoAuth},
				{"bad token, bad body", wireReq{Method: "POST", Path: "/locks/1/AddResident", JWT: "not.a.jwt", Body: `{bad`}, 401, wireCommand, "", "Invalid token: malformed"},
				{"partner route without a key", wireReq{Method: "PATCH", Path: "/webhooks/NOPE", Body: `{}`}, 401, wireCommand, "", msgNoPartnerKey},
				{"partner route with a JWT", wireReq{Method: "PATCH", Path: "/webhooks/NOPE", JWT: user, Body: `{}`}, 403, wireCommand, "", msgPartnerOnly},
				{"partner route with the admin key", wireReq{Method: "POST", Path: "/webhooks/NOPE/replay", Header: adminKey, Body: `{}`}, 401, wirePlain, "", msgNoPartnerKey},
				{"key rotation with a JWT", wireReq{Method: "POST", Path: "/api-keys/rotate", JWT: user, Body: `{bad`}, 403, wirePlain, "", "Only an API key can rotate itself: send it in X-API-Key"},
			})
		})
	}
	// With --admin-email-domain the refusal names the admin JWT too, and a
	// JWT outside the domain is a 403 before the body is read.
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{AdminEmailDomain: "example.com"})
	outsider := srv.Token(t, "7a7a7a7a-0000-4000-8000-000000000002", "someone@elsewhere.test")
	adminKey := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
	runEdges(t, srv, []edgeCase{
		{"api-keys without credentials", wireReq{Method: "POST", Path: "/api-keys", Body: `{}`}, 401, wirePlain, "", msgAdmin},
		{"api-keys with the key alone", wireReq{Method: "POST", Path: "/api-keys", Header: adminKey, Body: `{}`}, 401, wirePlain, "", msgAdmin},
		{"api-keys outside the domain", wireReq{Method: "POST", Path: "/api-keys", Header: adminKey, JWT: outsider, Body: `{"orgId":5}`}, 403, wirePlain, "", msgDomain},
		{"sign-up hook outside the domain", wireReq{Method: "POST", Path: "/users", Header: adminKey, JWT: outsider, Body: `{}`}, 403, wirePlain, "", msgDomain},
	})
}

// TestEdgeBearerScheme: the Authorization scheme is case-insensitive.
func TestEdgeBearerScheme(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
				got := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/users/" + f.userID + "/profile", Header: map[string]string{"Authorization": scheme + " " + f.jwt}}, http.StatusOK)
				if got["userId"] != f.userID {
					t.Errorf("%s: profile %v", scheme, got)
				}
			}
			// The live stream re-checks the header it came with.
			s := testenv.OpenStream(t, f.srv.URL+"/users/"+f.userID+"/notifications/stream", http.Header{"Authorization": {"bearer " + f.jwt}})
			s.Close()
			for _, h := range []string{"Bearerx " + f.jwt, "Basic " + f.jwt, "bearer", "Token " + f.jwt} {
				runEdges(t, f.srv, []edgeCase{{h[:6], wireReq{Method: "GET", Path: "/users/" + f.userID + "/profile", Header: map[string]string{"Authorization": h}}, 401, wireQuery, "", "Authorization header must be 'Bearer <jwt>'"}})
			}
		})
	}
}

// TestEdgeBodyErrors: a missing member is named in details[].field, values
// that do not fit are explained without Go type names, member names match
// exactly, and JSON routes refuse other content types with 415.
func TestEdgeBodyErrors(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
			const bigInt = "index must be a whole number from -9223372036854775808 to 9223372036854775807, written without a fraction or exponent"
			unsupported := func(ct string) string {
				return "Unsupported Content-Type \"" + ct + "\": this route takes a JSON body; send Content-Type: application/json"
			}
			runEdgesSchema(t, f.srv, []edgeCase{
				{"api-keys without orgId", wireReq{Method: "POST", Path: "/api-keys", Header: admin, Body: `{}`}, 400, wirePlain, "orgId", "orgId is required"},
				{"sign-up hook without user_id", wireReq{Method: "POST", Path: "/users", Header: admin, Body: `{"detail":{"data":{"user_name":"a@example.com"}}}`}, 400, wirePlain, "detail.data.user_id", "detail.data.user_id is required"},
				{"sign-up hook without data", wireReq{Method: "POST", Path: "/users", Header: admin, Body: `{"detail":{}}`}, 400, wirePlain, "detail.data", "detail.data is required"},
				{"index 1e308", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: `{"index":1e308,"uuid":"` + seedLock2UUID + `"}`}, 400, wireCommand, "index", bigInt},
				{"index 2^63", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: `{"index":9223372036854775808,"uuid":"` + seedLock2UUID + `"}`}, 400, wireCommand, "index", bigInt},
				{"index 1e3", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: `{"index":1e3,"uuid":"` + seedLock2UUID + `"}`}, 400, wireCommand, "index", bigInt},
				{"key indexNumber 1e300", wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.key, Body: `{"index":2,"uuid":"` + seedLock2UUID + `","keys":[{"uuid":"` + seedLockUUID + `","indexNumber":1e300}]}`}, 400, wireCommand, "keys[0].indexNumber",
					"keys[0].indexNumber must be a whole number from -9223372036854775808 to 9223372036854775807, written without a fraction or exponent"},
				{"Email for email", wireReq{Method: "POST", Path: "/users/" + f.userID + "/UpdateEmail", JWT: f.jwt, Body: `{"Email":"new@example.com"}`}, 400, wireCommand, "email", "email is required"},
				{"NAME for name", wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: `{"NAME":"Ann","email":"user@example.com"}`}, 400, wireCommand, "name", "name is required"},
			}, true)
			runEdges(t, f.srv, []edgeCase{
				{"form body", wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: `name=Ann`, Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, wireCommand, "", unsupported("application/x-www-form-urlencoded")},
				{"text body", wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: `{"name":"Ann","email":"user@example.com"}`, Header: map[string]string{"Content-Type": "text/plain"}}, 415, wireCommand, "", unsupported("text/plain")},
				{"XML body", wireReq{Method: "POST", Path: "/api-keys", Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey, "Content-Type": "application/xml"}, Body: `<orgId>acme</orgId>`}, 415, wirePlain, "", unsupported("application/xml")},
			})

			// A member in another case is ignored like any unknown member:
			// the user is created without it.
			id := "7b7b7b7b-0000-4000-8000-000000000001"
			wireOK(t, f.srv, wireReq{Method: "POST", Path: "/users/" + id + "/CreateUser", Key: f.key, Body: `{"userId":"` + id + `","FirstName":"Shouty","lastName":"Quiet"}`}, http.StatusCreated)
			got := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/users/" + id + "/profile", Key: f.key}, http.StatusOK)
			if diff := cmp.Diff(map[string]any{"userId": id, "lastName": "Quiet", "status": "ACTIVE"}, got); diff != "" {
				t.Errorf("profile (-want +got):\n%s", diff)
			}

			// A body without a Content-Type is read as JSON; charset and
			// +json types are JSON too.
			for i, ct := range []string{"", "application/json; charset=utf-8", "application/merge-patch+json"} {
				lock := []string{"3", "4", "5"}[i]
				req, err := http.NewRequestWithContext(context.Background(), "POST", f.srv.URL+"/locks/"+lock+"/CreateLock", strings.NewReader(`{"index":1,"uuid":"0000000`+lock+`-0000-4000-8000-00000000000a"}`))
				if err != nil {
					t.Fatal(err)
				}
				if ct != "" {
					req.Header.Set("Content-Type", ct)
				}
				req.Header.Set("X-API-Key", f.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("Content-Type %q: %d %s", ct, resp.StatusCode, body)
				}
			}
		})
	}
}

// signupHook is the admin sign-up hook's request (POST /users) for e-mail
// and identity-provider id.
func signupHook(email, id string) wireReq {
	return wireReq{Method: "POST", Path: "/users", Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey},
		Body: map[string]any{"detail": map[string]any{"data": map[string]any{"user_name": email, "user_id": id}}}}
}

// TestEdgeSignupHook: POST /users takes user_id as the user's id (a
// lower-case UUID, the sub of their JWTs) for a new record, answers with
// the stored record for a known e-mail, and refuses an id taken by another
// e-mail.
func TestEdgeSignupHook(t *testing.T) {
	hook := signupHook
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			id := "7c7c7c7c-0000-4000-8000-000000000001"
			other := "7c7c7c7c-0000-4000-8000-000000000002"
			got := wireOK(t, srv, hook("New@Example.com", id), http.StatusOK)
			if diff := cmp.Diff(map[string]any{"success": true, "userId": id, "email": "new@example.com"}, got); diff != "" {
				t.Fatalf("first sign-up (-want +got):\n%s", diff)
			}
			if got := wireOK(t, srv, hook("new@example.com", id), http.StatusOK); got["userId"] != id {
				t.Fatalf("repeated sign-up: %v", got)
			}
			// An e-mail already on a record (made by a tenant or an app
			// before the person signed up) answers with that record: the
			// identity provider keeps the userId answered (upstream's
			// find-or-create).
			if got := wireOK(t, srv, hook("new@example.com", other), http.StatusOK); got["userId"] != id {
				t.Fatalf("sign-up of a known e-mail under another id: %v, want userId %s", got, id)
			}
			// The user's JWT reaches the record the hook created.
			wireOK(t, srv, wireReq{Method: "GET", Path: "/users/" + id + "/profile", JWT: srv.Token(t, id, "new@example.com")}, http.StatusOK)
			runEdges(t, srv, []edgeCase{
				{"user_id not a UUID", hook("a@example.com", "not-a-uuid"), 400, wirePlain, "detail.data.user_id", badUUIDMsg("detail.data.user_id")},
				{"user_id auth0 style", hook("a@example.com", "auth0|123"), 400, wirePlain, "detail.data.user_id", badUUIDMsg("detail.data.user_id")},
				{"user_id upper-case", hook("a@example.com", strings.ToUpper(other)), 400, wirePlain, "detail.data.user_id", badUUIDMsg("detail.data.user_id")},
			})
			for _, c := range []struct {
				name  string
				req   wireReq
				field string
				msg   string
			}{
				{"id with another e-mail", hook("else@example.com", id), "detail.data.user_id", "detail.data.user_id already belongs to a user with another e-mail address"},
			} {
				t.Run(c.name, func(t *testing.T) {
					want := wireErr(wirePlain, http.StatusConflict, c.msg, [2]string{c.field, "taken by another user"})
					wireRefused(t, srv, c.req, http.StatusConflict, want)
				})
			}
		})
	}
}

// TestEdgeTextFields: names and messages that are stored and shown to
// others have length limits and no control or bidirectional formatting
// characters; the refusal names the field and stores nothing.
func TestEdgeTextFields(t *testing.T) {
	long := func(n int) string { return strings.Repeat("n", n) }
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
			add := func(name string) wireReq {
				return wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.key, Body: map[string]any{"name": name, "email": "user@example.com"}}
			}
			ring := func(body map[string]any) wireReq {
				return wireReq{Method: "POST", Path: "/locks/1/RingDoorbell", Key: f.key, Body: body}
			}
			create := func(first, last string) wireReq {
				id := "7d7d7d7d-0000-4000-8000-000000000001"
				return wireReq{Method: "POST", Path: "/users/" + id + "/CreateUser", Key: f.key, Body: map[string]any{"userId": id, "firstName": first, "lastName": last}}
			}
			runEdges(t, f.srv, []edgeCase{
				{"resident name 101", add(long(101)), 400, wireCommand, "name", "name must be at most 100 characters (got 101)"},
				{"resident name 200000", add(long(200000)), 400, wireCommand, "name", "name must be at most 100 characters (got 200000)"},
				{"resident name RLO", add("Ann\u202Egnp.exe"), 400, wireCommand, "name", "name must not contain bidirectional formatting characters (found U+202E)"},
				{"resident name LRI", add("Ann\u2066x"), 400, wireCommand, "name", "name must not contain bidirectional formatting characters (found U+2066)"},
				{"resident name RLM", add("Ann\u200F"), 400, wireCommand, "name", "name must not contain bidirectional formatting characters (found U+200F)"},
				{"resident name newline", add("Ann\nBob"), 400, wireCommand, "name", "name must be one line without control characters (found U+000A)"},
				{"resident name NUL", add("Ann\x00"), 400, wireCommand, "name", "name must be one line without control characters (found U+0000)"},
				{"resident name C1", add("Ann\u0085"), 400, wireCommand, "name", "name must be one line without control characters (found U+0085)"},
				{"resident name line separator", add("Ann\u2028Bob"), 400, wireCommand, "name", "name must be one line without control characters (found U+2028)"},
				{"visitor name PDI", ring(map[string]any{"visitorName": "Courier\u2069"}), 400, wireCommand, "visitorName", "visitorName must not contain bidirectional formatting characters (found U+2069)"},
				{"visitor name tab", ring(map[string]any{"visitorName": "Cou\trier"}), 400, wireCommand, "visitorName", "visitorName must be one line without control characters (found U+0009)"},
				{"message BEL", ring(map[string]any{"message": "hi\athere"}), 400, wireCommand, "message", "message must not contain control characters other than line breaks and tabs (found U+0007)"},
				{"message LRO", ring(map[string]any{"message": "hi \u202D"}), 400, wireCommand, "message", "message must not contain bidirectional formatting characters (found U+202D)"},
				{"firstName 101", create(long(101), ""), 400, wireCommand, "firstName", "firstName must be at most 100 characters (got 101)"},
				{"lastName ALM", create("Ann", "B\u061C"), 400, wireCommand, "lastName", "lastName must not contain bidirectional formatting characters (found U+061C)"},
				{"orgName ESC", wireReq{Method: "POST", Path: "/tenants/beta/register", Header: admin, Body: map[string]any{"orgName": "Beta\x1b[31m"}}, 400, wirePlain, "orgName", "orgName must be one line without control characters (found U+001B)"},
				{"orgName 201", wireReq{Method: "POST", Path: "/tenants/beta/register", Header: admin, Body: map[string]any{"orgName": long(201)}}, 400, wirePlain, "orgName", "orgName must be at most 200 characters (got 201)"},
			})
			// At the limits, and multi-line messages, are fine.
			wireOK(t, f.srv, add("Zoë "+long(96)), http.StatusOK)
			wireOK(t, f.srv, ring(map[string]any{"visitorName": long(80), "message": "Parcel\nfor flat 4\tthanks"}), http.StatusOK)
			wireOK(t, f.srv, create(long(100), "O'Brien-Łukasz"), http.StatusCreated)
		})
	}
}
