package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// openapiUpstreamFile is SmartphoneKey's published B2C OpenAPI document (JSON
// despite the name), kept beside the repository.
const openapiUpstreamFile = "../../../shared/upstream/openapi.yaml"

const openapiUpstreamURL = "https://upstream.spkey.test/openapi.json"

// openapiOnlyOurs says whether an operation is ours alone: operations and
// the Admin API are not part of upstream's B2C document.
// openapiExtensions are spkey's own B2C routes (the doorbell), which
// upstream does not have.
var openapiExtensions = map[string]bool{
	"/locks/{id}/RingDoorbell": true, "/locks/{id}/doorbell/rings": true,
	"/doorbell/rings/{ringId}/answer": true, "/doorbell/rings/{ringId}/decline": true,
	"/users/{id}/SetNotificationPreferences": true, "/users/{id}/notification-preferences": true,
	"/users/{id}/notifications": true, "/users/{id}/notifications/stream": true,
	"/locks/{id}/actions/{requestId}": true,
	"/locks/{id}/device/credentials":  true, "/locks/{id}/device/revoke": true,
	"/hubs/{id}/device/credentials": true, "/hubs/{id}/device/revoke": true,
}

func openapiOnlyOurs(path string) bool {
	return openapiExtensions[path] || path == "/healthz" || path == "/readyz" || path == "/tenants" ||
		strings.HasPrefix(path, "/tenants/") || path == "/api-keys" || strings.HasPrefix(path, "/api-keys/") ||
		path == "/webhooks" || strings.HasPrefix(path, "/webhooks/") // the admin host's partner self-service

}

type openapiDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func openapiLoadUpstream(t *testing.T) (openapiDoc, any) {
	t.Helper()
	raw, err := os.ReadFile(openapiUpstreamFile)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("upstream OpenAPI document %s is absent: cannot compare against upstream", openapiUpstreamFile)
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc openapiDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", openapiUpstreamFile, err)
	}
	res, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", openapiUpstreamFile, err)
	}
	return doc, res
}

// openapiOps lists "METHOD path" of a document.
func openapiOps(doc openapiDoc) []string {
	var out []string
	for p, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete", "head", "options":
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// openapiPointer is the JSON pointer of a response schema, as a URL
// fragment: "/" in the path becomes "~1" and the braces of path
// parameters are percent-escaped.
func openapiPointer(method, path string, status int) string {
	p := strings.NewReplacer("~", "~0", "/", "~1", "{", "%7B", "}", "%7D").Replace(path)
	return "#/paths/" + p + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(status) + "/content/application~1json/schema"
}

// openapiFindSchemaMember reports the places in v where an object schema
// declares a "$schema" property.
func openapiFindSchemaMember(v any, at string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if props, ok := x["properties"].(map[string]any); ok {
			if _, ok := props["$schema"]; ok {
				*out = append(*out, at)
			}
		}
		for k, c := range x {
			openapiFindSchemaMember(c, at+"/"+k, out)
		}
	case []any:
		for i, c := range x {
			openapiFindSchemaMember(c, at+"/"+strconv.Itoa(i), out)
		}
	}
}

// TestOpenAPIDocument: our document is OpenAPI 3.1, its answers carry no
// $schema member, and every B2C operation we serve exists upstream.
func TestOpenAPIDocument(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/openapi.json"})
			if resp.Status != http.StatusOK {
				t.Fatalf("GET /openapi.json: %d %s", resp.Status, resp.Raw)
			}
			var ours openapiDoc
			if err := json.Unmarshal(resp.Raw, &ours); err != nil {
				t.Fatalf("decode /openapi.json: %v", err)
			}
			if !strings.HasPrefix(ours.OpenAPI, "3.1.") {
				t.Errorf("openapi = %q, want 3.1.x", ours.OpenAPI)
			}
			var found []string
			openapiFindSchemaMember(resp.JSON, "#", &found)
			if len(found) > 0 {
				t.Errorf("schemas declaring a $schema member: %v", found)
			}

			upstream, _ := openapiLoadUpstream(t)
			have := map[string]bool{}
			for _, op := range openapiOps(upstream) {
				have[op] = true
			}
			n := 0
			for _, op := range openapiOps(ours) {
				if openapiOnlyOurs(strings.SplitN(op, " ", 2)[1]) {
					continue
				}
				n++
				if !have[op] {
					t.Errorf("%s is served but not in upstream's document", op)
				}
			}
			if n == 0 {
				t.Fatal("no B2C operation in our document")
			}
		})
	}
}

// openapiCase is one request whose answer must match upstream's schema for
// the status it documents.
type openapiCase struct {
	method, path string // upstream's operation
	status       int
	req          func() wireReq
}

// TestOpenAPIUpstreamSchemas drives every B2C operation we serve to each
// status upstream documents that we can produce, and validates each answer
// against upstream's response schema.
func TestOpenAPIUpstreamSchemas(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			upstream, res := openapiLoadUpstream(t)
			c := jsonschema.NewCompiler()
			c.DefaultDraft(jsonschema.Draft2020)
			if err := c.AddResource(openapiUpstreamURL, res); err != nil {
				t.Fatalf("load upstream document: %v", err)
			}

			srv := testenv.NewServer(t, b, testenv.Options{AllowUserLockCreate: true, AdminEmailDomain: "admins.test"})
			// Lock 1's device log: a JSON payload and a text one each way.
			debugLog(t, srv, debugLogged{1, store.ShadowStatus, `{"state":{"reported":{"lock":"closed"}}}`}, debugLogged{1, store.ShadowStatus, "text"},
				debugLogged{1, store.ShadowCommand, `{"state":{"desired":{"lock":"open"}}}`}, debugLogged{1, store.ShadowCommand, "7 bytes"})
			key := srv.Tenant(t, "acme", false)
			beta := srv.Tenant(t, "beta", false)
			super := srv.Tenant(t, "root", true)
			movedUUID := app.NewUUID()
			lockUUID, lock3UUID := app.NewUUID(), app.NewUUID()
			var user, phoneUser string
			newUser := app.NewUUID()
			ghost := app.NewUUID() // a JWT user with no record
			ghostJWT := srv.Token(t, ghost, "")
			userJWT := func() string { return srv.Token(t, user, "user@example.com") }
			admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
			adminJWT, otherJWT := srv.Token(t, app.NewUUID(), "ops@admins.test"), srv.Token(t, app.NewUUID(), "ops@elsewhere.test")
			adm := func(method, path string) func() wireReq {
				return func() wireReq { return wireReq{Method: method, Path: path, JWT: adminJWT, Header: admin} }
			}
			notAdm := func(method, path string) func() wireReq {
				return func() wireReq { return wireReq{Method: method, Path: path, JWT: otherJWT, Header: admin} }
			}
			// canary starts a canary run (minutes long) and returns its id.
			canary := func() string {
				id, _ := wireOK(t, srv, adm("POST", "/admin/workflows/canary?seconds=600&steps=2")(), http.StatusOK)["instanceId"].(string)
				return id
			}
			k := func(method, path string, body any) func() wireReq {
				return func() wireReq { return wireReq{Method: method, Path: path, Body: body, Key: key} }
			}
			cases := []openapiCase{
				{"POST", "/locks/{id}/CreateLock", 201, k("POST", "/locks/1/CreateLock", map[string]any{"index": 1, "uuid": lockUUID})},
				{"POST", "/locks/{id}/CreateLock", 200, k("POST", "/locks/1/CreateLock", map[string]any{"index": 1, "uuid": lockUUID})},
				{"POST", "/locks/{id}/CreateLock", 400, k("POST", "/locks/2/CreateLock", map[string]any{"index": 2, "uuid": "not-a-uuid"})},
				{"GET", "/users/by-email", 200, k("GET", "/users/by-email?email=user@example.com", nil)},
				{"GET", "/users/by-email", 400, k("GET", "/users/by-email?email=not-an-email", nil)},
				{"GET", "/users/by-email", 404, k("GET", "/users/by-email?email=ghost@example.com&searchOnly=true", nil)},
				{"GET", "/users/by-email", 409, func() wireReq {
					return wireReq{Method: "GET", Path: "/users/by-email?email=new@example.com&uuid=" + user, Key: key}
				}},
				{"GET", "/users/by-phone", 200, k("GET", "/users/by-phone?phoneNumber=%2B48123456789", nil)},
				{"GET", "/users/by-phone", 400, k("GET", "/users/by-phone?phoneNumber=123", nil)},
				{"GET", "/users/by-phone", 404, k("GET", "/users/by-phone?phoneNumber=%2B48999000111&searchOnly=true", nil)},
				{"GET", "/users/by-phone", 409, func() wireReq {
					return wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48999000222&uuid=" + user, Key: key}
				}},
				{"POST", "/users", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/users", Header: admin, Body: `{"detail":{"data":{"user_name":"hook@example.com","user_id":"5a5a5a5a-0000-4000-8000-000000000001"}}}`}
				}},
				{"POST", "/users", 400, func() wireReq {
					return wireReq{Method: "POST", Path: "/users", Header: admin, Body: `{"detail":{"data":{"user_name":"not-an-email","user_id":"5a5a5a5a-0000-4000-8000-000000000002"}}}`}
				}},
				{"POST", "/locks/{id}/SetOwner", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: key, Body: map[string]any{"userId": user}}
				}},
				{"POST", "/locks/{id}/SetOwner", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/SetOwner", Body: map[string]any{"userId": user}}
				}},
				{"POST", "/locks/{id}/SetOwner", 404, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/99/SetOwner", Key: key, Body: map[string]any{"userId": user}}
				}},
				// A lock created by its owner has no org until SetOrganization.
				{"POST", "/locks/{id}/CreateLock", 201, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/3/CreateLock", JWT: userJWT(), Body: map[string]any{"index": 3, "uuid": lock3UUID, "ownerId": user}}
				}},
				{"POST", "/locks/{id}/SetOrganization", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/3/SetOrganization", JWT: userJWT(), Body: map[string]any{"orgId": "acme"}}
				}},
				{"POST", "/locks/{id}/SetOrganization", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/3/SetOrganization", Body: map[string]any{"orgId": "acme"}}
				}},
				{"POST", "/locks/{id}/SetOrganization", 404, k("POST", "/locks/99/SetOrganization", map[string]any{"orgId": "acme"})},
				{"POST", "/locks/{id}/AddResident", 200, k("POST", "/locks/1/AddResident", map[string]any{"email": "user@example.com", "name": "John Doe"})},
				{"POST", "/locks/{id}/AddResident", 400, k("POST", "/locks/1/AddResident", map[string]any{"email": "user@example.com", "name": "John Doe"})},
				{"POST", "/locks/{id}/AddResident", 404, k("POST", "/locks/1/AddResident", map[string]any{"email": "nobody@example.com", "name": "Nobody"})},
				{"GET", "/locks/{id}/residents", 200, func() wireReq { return wireReq{Method: "GET", Path: "/locks/1/residents"} }},
				{"GET", "/locks/{id}/residents", 200, k("GET", "/locks/1/residents", nil)},
				{"GET", "/locks/{id}/residents", 404, k("GET", "/locks/99/residents", nil)},
				{"GET", "/locks/{id}/basic-info", 200, k("GET", "/locks/1/basic-info", nil)},
				{"GET", "/locks/{id}/basic-info", 404, k("GET", "/locks/99/basic-info", nil)},
				{"GET", "/locks/{id}/details", 200, k("GET", "/locks/1/details", nil)},
				{"GET", "/locks/{id}/details", 404, k("GET", "/locks/99/details", nil)},
				{"GET", "/locks/{id}/events", 200, k("GET", "/locks/1/events", nil)},
				{"GET", "/locks/{id}/events", 404, k("GET", "/locks/99/events", nil)},
				// Upstream documents no 404 here: TestLockDebugMessages has it.
				{"GET", "/locks/{id}/debug/messages", 200, k("GET", "/locks/1/debug/messages", nil)},
				// The device commands (no device is connected: the actions queue).
				{"POST", "/locks/{id}/AddKey", 200, k("POST", "/locks/1/AddKey", map[string]any{"keyUuid": "key-1", "keyIndexNumber": 1, "userId": newUser})},
				{"POST", "/locks/{id}/AddKey", 200, k("POST", "/locks/1/AddKey", map[string]any{"keyUuid": "key-1", "keyIndexNumber": 1, "userId": newUser})},
				{"POST", "/locks/{id}/AddKey", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/AddKey", Body: map[string]any{"keyUuid": "key-2"}}
				}},
				{"POST", "/locks/{id}/AddKey", 404, k("POST", "/locks/99/AddKey", map[string]any{"keyUuid": "key-2"})},
				{"POST", "/locks/{id}/WriteKey", 200, k("POST", "/locks/1/WriteKey", map[string]any{"keyUuid": "card-1", "keyIndexNumber": 4})},
				{"POST", "/locks/{id}/WriteKey", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/WriteKey", Body: map[string]any{"keyUuid": "card-1"}}
				}},
				{"POST", "/locks/{id}/WriteKey", 403, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/WriteKey", Key: beta, Body: map[string]any{"keyUuid": "card-1"}}
				}},
				{"POST", "/locks/{id}/WriteKey", 404, k("POST", "/locks/99/WriteKey", map[string]any{"keyUuid": "card-1"})},
				{"POST", "/locks/{id}/OpenLock", 200, k("POST", "/locks/1/OpenLock", map[string]any{"requestId": "open-1", "reason": "Parcel"})},
				{"POST", "/locks/{id}/OpenLock", 200, k("POST", "/locks/1/OpenLock", map[string]any{})},
				{"POST", "/locks/{id}/OpenLock", 401, func() wireReq { return wireReq{Method: "POST", Path: "/locks/1/OpenLock", Body: map[string]any{}} }},
				{"POST", "/locks/{id}/OpenLock", 403, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/OpenLock", Key: beta, Body: map[string]any{}}
				}},
				{"POST", "/locks/{id}/OpenLock", 404, k("POST", "/locks/99/OpenLock", map[string]any{})},
				{"POST", "/locks/{id}/RemoveKey", 200, k("POST", "/locks/1/RemoveKey", map[string]any{"keyIndexNumber": 1})},
				{"POST", "/locks/{id}/RemoveKey", 400, k("POST", "/locks/1/RemoveKey", map[string]any{})},
				{"POST", "/locks/{id}/RemoveKey", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/RemoveKey", Body: map[string]any{"keyUuid": "key-1"}}
				}},
				{"POST", "/locks/{id}/RemoveKey", 404, k("POST", "/locks/1/RemoveKey", map[string]any{"keyUuid": "key-1"})},
				// The admin workflow routes.
				{"GET", "/admin/workflows", 200, adm("GET", "/admin/workflows")},
				{"GET", "/admin/workflows", 401, func() wireReq { return wireReq{Method: "GET", Path: "/admin/workflows"} }},
				{"GET", "/admin/workflows", 403, notAdm("GET", "/admin/workflows")},
				{"POST", "/admin/workflows/canary", 200, adm("POST", "/admin/workflows/canary?seconds=0&steps=2")},
				{"POST", "/admin/workflows/canary", 401, func() wireReq { return wireReq{Method: "POST", Path: "/admin/workflows/canary"} }},
				{"POST", "/admin/workflows/canary", 403, notAdm("POST", "/admin/workflows/canary")},
				{"GET", "/admin/workflows/{instanceId}", 200, func() wireReq { return adm("GET", "/admin/workflows/"+canary())() }},
				{"GET", "/admin/workflows/{instanceId}", 401, func() wireReq { return wireReq{Method: "GET", Path: "/admin/workflows/x"} }},
				{"GET", "/admin/workflows/{instanceId}", 403, notAdm("GET", "/admin/workflows/x")},
				{"GET", "/admin/workflows/{instanceId}", 404, adm("GET", "/admin/workflows/no-such-run")},
				{"POST", "/admin/workflows/{instanceId}/terminate", 200, func() wireReq { return adm("POST", "/admin/workflows/"+canary()+"/terminate")() }},
				{"POST", "/admin/workflows/{instanceId}/terminate", 401, func() wireReq { return wireReq{Method: "POST", Path: "/admin/workflows/x/terminate"} }},
				{"POST", "/admin/workflows/{instanceId}/terminate", 403, notAdm("POST", "/admin/workflows/x/terminate")},
				{"POST", "/admin/workflows/{instanceId}/terminate", 404, adm("POST", "/admin/workflows/no-such-run/terminate")},
				{"POST", "/locks/{id}/BulkAddKeys", 200, k("POST", "/locks/1/BulkAddKeys", map[string]any{"keys": []any{map[string]any{"keyUuid": "bulk-1", "keyIndexNumber": 11}, map[string]any{"keyUuid": "bulk-2"}}})},
				{"POST", "/locks/{id}/BulkAddKeys", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/BulkAddKeys", Body: map[string]any{"keys": []any{map[string]any{"keyUuid": "bulk-3"}}}}
				}},
				{"POST", "/locks/{id}/ChangeLockUuid", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/ChangeLockUuid", Key: super, Body: map[string]any{"newUuid": movedUUID}}
				}},
				{"POST", "/locks/{id}/ChangeLockUuid", 409, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/ChangeLockUuid", Key: super, Body: map[string]any{"newUuid": movedUUID}}
				}},
				{"POST", "/locks/{id}/ChangeLockUuid", 400, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/ChangeLockUuid", Key: super, Body: map[string]any{"newUuid": "not-a-uuid"}}
				}},
				{"POST", "/locks/{id}/ChangeLockUuid", 401, func() wireReq {
					return wireReq{Method: "POST", Path: "/locks/1/ChangeLockUuid", Body: map[string]any{"newUuid": app.NewUUID()}}
				}},
				{"POST", "/locks/{id}/ChangeLockUuid", 403, k("POST", "/locks/1/ChangeLockUuid", map[string]any{"newUuid": app.NewUUID()})},
				{"POST", "/locks/{id}/RemoveResident", 200, k("POST", "/locks/1/RemoveResident", map[string]any{"email": "user@example.com"})},
				{"POST", "/locks/{id}/RemoveResident", 400, k("POST", "/locks/1/RemoveResident", map[string]any{"email": "user@example.com"})},
				{"POST", "/locks/{id}/RemoveResident", 404, k("POST", "/locks/99/RemoveResident", map[string]any{"email": "user@example.com"})},
				{"POST", "/users/{id}/CreateUser", 201, k("POST", "/users/"+newUser+"/CreateUser", map[string]any{"userId": newUser, "email": "created@example.com", "firstName": "Cre"})},
				{"POST", "/users/{id}/CreateUser", 200, k("POST", "/users/"+newUser+"/CreateUser", map[string]any{"userId": newUser})},
				{"POST", "/users/{id}/CreateUser", 400, k("POST", "/users/not-a-uuid/CreateUser", map[string]any{"userId": "not-a-uuid"})},
				{"POST", "/users/{id}/UpdateEmail", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + phoneUser + "/UpdateEmail", Key: key, Body: map[string]any{"email": "phone@example.com"}}
				}},
				{"POST", "/users/{id}/UpdateEmail", 409, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + user + "/UpdateEmail", JWT: userJWT(), Body: map[string]any{"email": "user@example.com"}}
				}},
				{"POST", "/users/{id}/UpdateEmail", 404, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + ghost + "/UpdateEmail", JWT: ghostJWT, Body: map[string]any{"email": "ghost@example.com"}}
				}},
				{"POST", "/users/{id}/UpdatePhoneNumber", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + phoneUser + "/UpdatePhoneNumber", Key: key, Body: map[string]any{"phoneNumber": "+48500600700"}}
				}},
				{"POST", "/users/{id}/UpdatePhoneNumber", 200, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + phoneUser + "/UpdatePhoneNumber", Key: key, Body: `{"phoneNumber":null}`}
				}},
				{"POST", "/users/{id}/UpdatePhoneNumber", 404, func() wireReq {
					return wireReq{Method: "POST", Path: "/users/" + ghost + "/UpdatePhoneNumber", JWT: ghostJWT, Body: map[string]any{"phoneNumber": "+48500600701"}}
				}},
				{"GET", "/users/{id}/profile", 200, func() wireReq { return wireReq{Method: "GET", Path: "/users/" + user + "/profile", Key: key} }},
				{"GET", "/users/{id}/profile", 404, func() wireReq { return wireReq{Method: "GET", Path: "/users/" + ghost + "/profile", JWT: ghostJWT} }},
				{"GET", "/users/{id}/phone-number", 200, func() wireReq { return wireReq{Method: "GET", Path: "/users/" + phoneUser + "/phone-number", Key: key} }},
				{"GET", "/users/{id}/phone-number", 200, func() wireReq {
					return wireReq{Method: "GET", Path: "/users/" + user + "/phone-number", JWT: userJWT()}
				}},
				{"GET", "/users/{id}/phone-number", 401, func() wireReq { return wireReq{Method: "GET", Path: "/users/" + user + "/phone-number"} }},
				{"GET", "/users/{id}/phone-number", 403, func() wireReq { return wireReq{Method: "GET", Path: "/users/" + user + "/phone-number", Key: beta} }},
				{"GET", "/users/{id}/phone-number", 404, func() wireReq {
					return wireReq{Method: "GET", Path: "/users/" + ghost + "/phone-number", JWT: ghostJWT}
				}},
			}

			// Every served B2C operation is driven to every status upstream
			// documents among those a request can produce.
			producible := map[int]bool{200: true, 201: true, 400: true, 401: true, 403: true, 404: true, 409: true}
			driven := map[string]bool{}
			for _, cs := range cases {
				driven[cs.method+" "+cs.path+" "+strconv.Itoa(cs.status)] = true
			}
			ourDoc := wireDo(t, srv, wireReq{Method: "GET", Path: "/openapi.json"})
			var ours openapiDoc
			if err := json.Unmarshal(ourDoc.Raw, &ours); err != nil {
				t.Fatal(err)
			}
			for _, op := range openapiOps(ours) {
				method, path, _ := strings.Cut(op, " ")
				if openapiOnlyOurs(path) || strings.HasPrefix(path, "/hubs/") { // the hub routes: hubs_test.go (they need a device)
					continue
				}
				var o struct {
					Responses map[string]json.RawMessage `json:"responses"`
				}
				if err := json.Unmarshal(upstream.Paths[path][strings.ToLower(method)], &o); err != nil {
					t.Errorf("%s: upstream operation: %v", op, err)
					continue
				}
				for st := range o.Responses {
					n, err := strconv.Atoi(st)
					if err == nil && producible[n] && !driven[op+" "+st] {
						t.Errorf("%s: upstream documents %s but no case produces it", op, st)
					}
				}
			}

			for i, cs := range cases {
				name := cs.method + " " + cs.path + " " + strconv.Itoa(cs.status) + " #" + strconv.Itoa(i)
				ok := t.Run(name, func(t *testing.T) {
					r := cs.req()
					resp := wireDo(t, srv, r)
					if resp.Status != cs.status {
						t.Fatalf("%s %s: status %d, want %d; body %s", r.Method, r.Path, resp.Status, cs.status, resp.Raw)
					}
					if m, isObj := resp.JSON.(map[string]any); !isObj {
						t.Fatalf("answer is not a JSON object: %s", resp.Raw)
					} else if _, has := m["$schema"]; has {
						t.Errorf("answer carries a $schema member: %s", resp.Raw)
					}
					var up struct {
						Responses map[string]struct {
							Content json.RawMessage `json:"content"`
						} `json:"responses"`
					}
					if err := json.Unmarshal(upstream.Paths[cs.path][strings.ToLower(cs.method)], &up); err == nil && up.Responses[strconv.Itoa(cs.status)].Content == nil {
						// Upstream documents the status without a body
						// (OpenLock's 401, 403, 404): the status is the contract.
						return
					}
					sch, err := c.Compile(openapiUpstreamURL + openapiPointer(cs.method, cs.path, cs.status))
					if err != nil {
						t.Fatalf("compile upstream schema: %v", err)
					}
					v, err := jsonschema.UnmarshalJSON(bytes.NewReader(resp.Raw))
					if err != nil {
						t.Fatal(err)
					}
					if err := sch.Validate(v); err != nil {
						t.Errorf("answer %s does not match upstream's %d schema: %v", resp.Raw, cs.status, err)
					}
					// Later cases need the ids the first lookups made.
					m := resp.Obj(t)
					switch {
					case cs.path == "/users/by-email" && cs.status == 200:
						user, _ = m["uuid"].(string)
					case cs.path == "/users/by-phone" && cs.status == 200:
						phoneUser, _ = m["uuid"].(string)
					}
				})
				if !ok && (cs.status == 200 || cs.status == 201) {
					t.Fatalf("%s failed: later cases depend on it", name)
				}
			}
		})
	}
}
