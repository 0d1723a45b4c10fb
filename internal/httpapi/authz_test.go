package httpapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// authzClass groups routes by who may call them.
type authzClass int

const (
	authzLock    authzClass = iota // owner org's key, owner or key holder's JWT
	authzUser                      // /users/{id}/...: the user's own JWT, a tenant's key with standing (app.authorizeUser)
	authzLookup                    // find-or-create: a tenant's key; a user's JWT for its own address only
	authzPublic                    // GET /locks/{id}/residents
	authzAdmin                     // admin API: X-Admin-API-Key + admin-domain JWT
	authzHook                      // POST /users: X-Admin-API-Key
	authzRing                      // answer/decline: a targeted resident's JWT only
	authzPartner                   // /webhooks..., POST /api-keys/rotate: the tenant's own X-API-Key only
)

// authzRoute is one route of routes.go with a request that succeeds for a
// caller allowed to make it.
type authzRoute struct {
	pattern  string
	class    authzClass
	kind     wireKind
	req      func(f *authzFixture) wireReq // without credentials
	okStatus int
	okKey    string // a member of the success answer
}

// authzQuirks lists the routes that differ from their class.
var authzQuirks = map[string]struct {
	userMsg   string // replaces the class's refusal message for another user's JWT
	tenantMsg string // replaces it for another tenant's key
	stream    bool   // the success answer is an endless event stream
	noKey     bool   // no (non-super) API key may call it
	jwtMsg    string // replaces a partner route's refusal message for a JWT (a user's or an admin's)
	selfOnly  bool   // acts on the calling key's own tenant, whichever it is: another tenant's key is not refused
}{
	"POST /users/{id}/SetNotificationPreferences": {noKey: true,
		tenantMsg: "Notification preferences apply at every tenant's locks: only the user (or a super key) may change them"},
	"POST /locks/{id}/RingDoorbell":        {userMsg: "Only the lock owner or the lock's organization may ring lock 1"},
	"POST /locks/{id}/CreateLock":          {userMsg: msgNoUserLocks},
	"POST /locks/{id}/ChangeLockUuid":      {userMsg: msgSuperOnly, tenantMsg: msgSuperOnly, noKey: true},
	"POST /users/{id}/UpdateEmail":         {tenantMsg: app.MsgNoChangeStanding},
	"POST /users/{id}/UpdatePhoneNumber":   {tenantMsg: app.MsgNoChangeStanding},
	"GET /locks/{id}/doorbell/rings":       {userMsg: "Only the lock owner or the lock's organization may read the rings of lock 1"},
	"GET /users/{id}/notifications/stream": {stream: true},
	"POST /api-keys/rotate":                {jwtMsg: "Only an API key can rotate itself: send it in X-API-Key", selfOnly: true},
	"POST /locks/{id}/device/credentials":  {userMsg: msgDeviceUser},
	"POST /locks/{id}/device/revoke":       {userMsg: msgDeviceUser},
}

const (
	authzLockUUID  = "0d8e4a3c-2b1f-4e6d-9c8b-7a6f5e4d3c2b"
	msgNoAuth      = "Authentication required: send a Bearer JWT or an X-API-Key"
	msgAdmin       = "Admin credentials required: X-Admin-API-Key and an admin JWT"
	msgHook        = "X-Admin-API-Key required"
	msgNotOwner    = "This API key's organization does not own lock 1"
	msgNotHolder   = "Only the lock owner or a key holder may access lock 1"
	msgNotLinked   = app.MsgNoReadStanding
	msgSuperOnly   = "ChangeLockUuid needs a super API key"
	msgNoUserLocks = "Locks are provisioned with a tenant's API key: this server does not let user tokens create locks (spkey serve --allow-user-lock-create)"
	msgDeviceUser  = "Device credentials are issued to the lock's organization (its X-API-Key) or the admin, not to users"
	msgNotOwnAddr  = "A user token may only use its own verified e-mail address (the token's email claim)"
	msgNotOwnPhone = "A user token may only use its own verified phone number (the token's phone_number claim)"
	msgNotOwnUser  = "You can only access your own user record"
	msgDomain      = "This account's e-mail domain is not allowed to use admin routes"
	msgExpired     = "Invalid token: expired"
	msgBadToken    = "Invalid token: verification failed"
	msgBoth        = "Send either a Bearer JWT or an X-API-Key, not both"
	msgInternal    = "X-Org-Id and X-User-Id are internal headers and must not be sent by clients"
	msgBadKey      = "Invalid, revoked or expired API key"
	msgBadAdmin    = "Invalid admin API key"
	// The partner routes' refusals (app.webhookOrg, app.ownWebhook).
	msgNoPartnerKey = "Authentication required: send your X-API-Key"
	msgPartnerOnly  = "Only the partner's API key or an admin can manage webhooks"
	msgAdminPartner = "Admins manage a tenant's webhooks under /tenants/{orgId}/webhooks"
	msgNoWebhook    = "Webhook not found"
	msgNoDelivery   = "Delivery not found"
)

// authzOrgs are the fixture's tenants whose webhooks a refused request
// must leave alone.
var authzOrgs = []string{"org-a", "org-b", "org-s"}

func authzRoutes() []authzRoute {
	do := func(method, path string, body func(f *authzFixture) any) func(f *authzFixture) wireReq {
		return func(f *authzFixture) wireReq {
			q := wireReq{Method: method, Path: strings.NewReplacer("{user}", f.owner, "{ring}", f.ringID, "{hook}", f.hookA, "{delivery}", f.deliveryA,
				"{adminHook}", f.adminHook, "{adminDelivery}", f.adminDelivery, "{workflow}", f.workflow).Replace(path)}
			if body != nil {
				q.Body = body(f)
			}
			return q
		}
	}
	post := func(path string, body func(f *authzFixture) any) func(f *authzFixture) wireReq {
		return do("POST", path, body)
	}
	get := func(path string) func(f *authzFixture) wireReq { return do("GET", path, nil) }
	to := func(path string) func(f *authzFixture) any {
		return func(f *authzFixture) any { return map[string]any{"url": f.receiver.URL + path} }
	}
	// The order matters in the success passes after the refusals:
	// AddResident comes before RemoveResident, DELETE last of the admin
	// webhook routes (they share one webhook), POST /api-keys/rotate last
	// of all (it revokes the key of the calls before it).
	return []authzRoute{
		{"POST /locks/{id}/CreateLock", authzLock, wireCommand,
			post("/locks/1/CreateLock", func(*authzFixture) any { return map[string]any{"index": 1, "uuid": authzLockUUID} }), 200, "aggregateId"},
		{"POST /locks/{id}/SetOrganization", authzLock, wireCommand,
			post("/locks/1/SetOrganization", func(*authzFixture) any { return map[string]any{"orgId": "org-a"} }), 200, "aggregateId"},
		{"POST /locks/{id}/SetOwner", authzLock, wireCommand,
			post("/locks/1/SetOwner", func(f *authzFixture) any { return map[string]any{"userId": f.owner} }), 200, "aggregateId"},
		{"GET /locks/{id}/basic-info", authzLock, wireQuery, get("/locks/1/basic-info"), 200, "lockId"},
		{"GET /locks/{id}/details", authzLock, wireQuery, get("/locks/1/details"), 200, "residents"},
		{"GET /locks/{id}/events", authzLock, wireQuery, get("/locks/1/events"), 200, "events"},
		{"GET /locks/{id}/debug/messages", authzLock, wireQuery, get("/locks/1/debug/messages"), 200, "messages"},
		{"POST /locks/{id}/AddKey", authzLock, wireCommand,
			post("/locks/1/AddKey", func(*authzFixture) any { return map[string]any{"keyUuid": "authz-key-a", "keyIndexNumber": 7} }), 200, "requestId"},
		{"POST /locks/{id}/RemoveKey", authzLock, wireCommand,
			post("/locks/1/RemoveKey", func(*authzFixture) any { return map[string]any{"keyUuid": "authz-key-r"} }), 200, "requestId"},
		{"POST /locks/{id}/WriteKey", authzLock, wireCommand,
			post("/locks/1/WriteKey", func(*authzFixture) any { return map[string]any{"keyUuid": "authz-card"} }), 200, "requestId"},
		{"POST /locks/{id}/OpenLock", authzLock, wireCommand,
			post("/locks/1/OpenLock", func(*authzFixture) any { return map[string]any{"reason": "authz"} }), 200, "requestId"},
		{"POST /locks/{id}/BulkAddKeys", authzLock, wireCommand,
			// A key the fixture's run put on the lock: the run records nothing.
			post("/locks/1/BulkAddKeys", func(*authzFixture) any {
				return map[string]any{"keys": []any{map[string]any{"keyUuid": "authz-bulk-0"}}}
			}), 200, "instanceId"},
		{"POST /locks/{id}/ChangeLockUuid", authzLock, wireCommand,
			post("/locks/1/ChangeLockUuid", func(*authzFixture) any { return map[string]any{"newUuid": app.NewUUID()} }), 200, "event"},
		{"GET /locks/{id}/actions/{requestId}", authzLock, wireQuery, get("/locks/1/actions/authz-open"), 200, "status"},
		{"POST /locks/{id}/device/credentials", authzLock, wirePlain,
			post("/locks/1/device/credentials", func(*authzFixture) any { return map[string]any{"kind": "password"} }), 201, "password"},
		{"POST /locks/{id}/device/revoke", authzLock, wirePlain, post("/locks/1/device/revoke", nil), 200, "thingName"},
		{"POST /locks/{id}/AddResident", authzLock, wireCommand,
			post("/locks/1/AddResident", func(*authzFixture) any { return map[string]any{"name": "Resident", "email": "resident@users.test"} }), 200, "event"},
		{"POST /locks/{id}/RemoveResident", authzLock, wireCommand,
			post("/locks/1/RemoveResident", func(*authzFixture) any { return map[string]any{"email": "resident@users.test"} }), 200, "event"},
		{"GET /locks/{id}/residents", authzPublic, wireQuery, get("/locks/1/residents"), 200, "residents"},
		{"POST /locks/{id}/RingDoorbell", authzLock, wireCommand,
			post("/locks/1/RingDoorbell", func(*authzFixture) any { return map[string]any{"visitorName": "Courier"} }), 200, "ringId"},
		{"GET /locks/{id}/doorbell/rings", authzLock, wireQuery, get("/locks/1/doorbell/rings"), 200, "rings"},
		{"POST /doorbell/rings/{ringId}/answer", authzRing, wireCommand,
			post("/doorbell/rings/{ring}/answer", func(*authzFixture) any { return nil }), 200, "event"},
		{"POST /doorbell/rings/{ringId}/decline", authzRing, wireCommand,
			post("/doorbell/rings/{ring}/decline", func(*authzFixture) any { return nil }), 200, "event"},
		{"POST /users/{id}/SetNotificationPreferences", authzUser, wireCommand,
			post("/users/{user}/SetNotificationPreferences", func(*authzFixture) any { return map[string]any{"channels": map[string]any{"email": false}} }), 200, "aggregateId"},
		{"GET /users/{id}/notification-preferences", authzUser, wireQuery, get("/users/{user}/notification-preferences"), 200, "channels"},
		{"GET /users/{id}/notifications", authzUser, wireQuery, get("/users/{user}/notifications"), 200, "notifications"},
		{"GET /users/{id}/notifications/stream", authzUser, wirePlain, get("/users/{user}/notifications/stream"), 200, ""},
		{"POST /users", authzHook, wirePlain,
			post("/users", func(*authzFixture) any {
				return map[string]any{"detail": map[string]any{"data": map[string]any{"user_name": "signup@users.test", "user_id": "5a5a5a5a-0000-4000-8000-00000000516e"}}}
			}), 200, "userId"},
		{"GET /users/by-email", authzLookup, wireQuery, get("/users/by-email?email=owner@users.test"), 200, "uuid"},
		{"GET /users/by-phone", authzLookup, wireQuery, get("/users/by-phone?phoneNumber=%2B48111222333"), 200, "uuid"},
		{"POST /users/{id}/CreateUser", authzUser, wireCommand,
			post("/users/{user}/CreateUser", func(f *authzFixture) any { return map[string]any{"userId": f.owner} }), 200, "userId"},
		{"POST /users/{id}/UpdateEmail", authzUser, wireCommand,
			func(f *authzFixture) wireReq {
				// The one fixture user without an e-mail.
				return wireReq{Method: "POST", Path: "/users/" + f.noEmail + "/UpdateEmail", Body: map[string]any{"email": "phone-only@users.test"}}
			}, 200, "event"},
		{"POST /users/{id}/UpdatePhoneNumber", authzUser, wireCommand,
			func(f *authzFixture) wireReq {
				// The owner has signed in (their JWT is used above), so
				// org-a has no custody of them any more: the user it
				// created that never signed in.
				return wireReq{Method: "POST", Path: "/users/" + f.noEmail + "/UpdatePhoneNumber", Body: map[string]any{"phoneNumber": "+48500600700"}}
			}, 200, "event"},
		{"GET /users/{id}/profile", authzUser, wireQuery, get("/users/{user}/profile"), 200, "userId"},
		{"GET /users/{id}/phone-number", authzUser, wireQuery, get("/users/{user}/phone-number"), 200, "phoneNumber"},
		{"POST /tenants/{orgId}/register", authzAdmin, wirePlain,
			post("/tenants/org-new/register", func(*authzFixture) any { return map[string]any{"orgName": "New Org"} }), 201, "aggregateId"},
		{"GET /tenants", authzAdmin, wirePlain, get("/tenants"), 200, "tenants"},
		{"GET /admin/workflows", authzAdmin, wireCommand, get("/admin/workflows?limit=5"), 200, "runs"},
		{"GET /admin/workflows/{instanceId}", authzAdmin, wireCommand, get("/admin/workflows/{workflow}"), 200, "progress"},
		{"POST /admin/workflows/{instanceId}/terminate", authzAdmin, wireCommand, post("/admin/workflows/{workflow}/terminate", nil), 200, "status"},
		{"POST /admin/workflows/canary", authzAdmin, wireCommand, post("/admin/workflows/canary?seconds=0&steps=1", nil), 200, "instanceId"},
		{"POST /api-keys", authzAdmin, wirePlain,
			post("/api-keys", func(*authzFixture) any { return map[string]any{"orgId": "org-c"} }), 201, "apiKey"},
		{"POST /api-keys/{orgId}/rotate", authzAdmin, wirePlain,
			func(*authzFixture) wireReq { return wireReq{Method: "POST", Path: "/api-keys/org-d/rotate"} }, 201, "apiKey"},
		{"POST /tenants/{orgId}/webhooks", authzAdmin, wireCommand, post("/tenants/org-a/webhooks", to("/created")), 201, "webhookId"},
		{"GET /tenants/{orgId}/webhooks", authzAdmin, wirePlain, get("/tenants/org-a/webhooks"), 200, "webhooks"},
		{"GET /tenants/{orgId}/webhooks/{webhookId}", authzAdmin, wirePlain, get("/tenants/org-a/webhooks/{adminHook}"), 200, "id"},
		{"PUT /tenants/{orgId}/webhooks/{webhookId}", authzAdmin, wireCommand,
			do("PUT", "/tenants/org-a/webhooks/{adminHook}", func(*authzFixture) any { return map[string]any{"rotateSecret": true} }), 200, "secret"},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/verify", authzAdmin, wirePlain, post("/tenants/org-a/webhooks/{adminHook}/verify", nil), 202, "id"},
		{"GET /tenants/{orgId}/webhooks/{webhookId}/secret", authzAdmin, wirePlain, get("/tenants/org-a/webhooks/{adminHook}/secret"), 200, "secret"},
		{"GET /tenants/{orgId}/webhooks/{webhookId}/deliveries", authzAdmin, wirePlain, get("/tenants/org-a/webhooks/{adminHook}/deliveries"), 200, "deliveries"},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", authzAdmin, wirePlain,
			post("/tenants/org-a/webhooks/{adminHook}/deliveries/{adminDelivery}/redeliver", nil), 202, "id"},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/replay", authzAdmin, wirePlain,
			post("/tenants/org-a/webhooks/{adminHook}/replay", func(*authzFixture) any { return map[string]any{"since": "2000-01-01T00:00:00Z"} }), 202, "queued"},
		{"DELETE /tenants/{orgId}/webhooks/{webhookId}", authzAdmin, wireCommand, do("DELETE", "/tenants/org-a/webhooks/{adminHook}", nil), 200, "webhookId"},
		{"GET /webhooks", authzPartner, wirePlain, get("/webhooks"), 200, "webhooks"},
		{"GET /webhooks/{webhookId}", authzPartner, wirePlain, get("/webhooks/{hook}"), 200, "id"},
		{"PATCH /webhooks/{webhookId}", authzPartner, wireCommand, do("PATCH", "/webhooks/{hook}", to("/moved")), 200, "webhookId"},
		{"POST /webhooks/{webhookId}/verify", authzPartner, wirePlain, post("/webhooks/{hook}/verify", nil), 202, "id"},
		{"GET /webhooks/{webhookId}/secret", authzPartner, wirePlain, get("/webhooks/{hook}/secret"), 200, "secret"},
		{"GET /webhooks/{webhookId}/deliveries", authzPartner, wirePlain, get("/webhooks/{hook}/deliveries"), 200, "deliveries"},
		{"POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", authzPartner, wirePlain,
			post("/webhooks/{hook}/deliveries/{delivery}/redeliver", nil), 202, "id"},
		{"POST /webhooks/{webhookId}/replay", authzPartner, wirePlain,
			post("/webhooks/{hook}/replay", func(*authzFixture) any { return map[string]any{"since": "2000-01-01T00:00:00Z"} }), 202, "queued"},
		{"POST /api-keys/rotate", authzPartner, wirePlain, post("/api-keys/rotate", nil), 201, "apiKey"},
	}
}

// authzFixture: tenants org-a (owns lock 1), org-b, org-c (no key),
// org-d and org-s (a super key); users owner (lock owner, resident),
// resident and noEmail, all linked to org-a. org-a has two webhooks (one
// for the partner routes, one for the admin routes, which delete it) and
// org-b one, all verified by a receiver that answers 200; lock 1's events
// were delivered to org-a's.
type authzFixture struct {
	srv                 *testenv.Server
	receiver            *hookReceiver
	ringID              string // a ring of lock 1 that targeted owner
	keyA, keyB, keyS    string // keyS: org-s's super key
	owner, noEmail      string
	ownerJWT, otherJWT  string
	adminJWT, outsider  string
	publicResidents     any // GET /locks/1/residents for a caller not authorized on the lock
	authorizedResidents any
	hookA, adminHook    string // org-a's webhooks: for the partner routes, for the admin routes
	hookB               string // org-b's
	deliveryA           string // a delivery of hookA
	adminDelivery       string // a delivery of adminHook
	listB, listS        any    // GET /webhooks for org-b's key and org-s's
	workflow            string // a BulkAddKeys run of lock 1
}

func newAuthzFixture(t *testing.T, b testenv.Backend) *authzFixture {
	t.Helper()
	rcv := newHookReceiver(t) // before the server: it outlives the dispatcher
	srv := testenv.NewServer(t, b, testenv.Options{AdminEmailDomain: "example.com", Devices: true})
	f := &authzFixture{srv: srv, receiver: rcv}
	f.keyA = srv.Tenant(t, "org-a", false)
	f.keyB = srv.Tenant(t, "org-b", false)
	f.keyS = srv.Tenant(t, "org-s", true)
	srv.Tenant(t, "org-d", false)
	if _, err := srv.Svc.RegisterTenant(context.Background(), app.Call{P: app.Principal{Admin: true, Email: "test"}, Route: "register org-c"}, "org-c", "Org C", ""); err != nil {
		t.Fatalf("register org-c: %v", err)
	}
	f.adminJWT = srv.Token(t, app.NewUUID(), "a@example.com")
	admin := func(method, path string, body any) wireReq {
		return wireReq{Method: method, Path: path, Body: body, JWT: f.adminJWT, Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}
	}
	// The webhooks come first: lock 1's events below are delivered to
	// org-a's.
	f.hookA, _ = wireOK(t, srv, admin("POST", "/tenants/org-a/webhooks", map[string]any{"url": rcv.URL + "/partner"}), http.StatusCreated)["webhookId"].(string)
	f.adminHook, _ = wireOK(t, srv, admin("POST", "/tenants/org-a/webhooks", map[string]any{"url": rcv.URL + "/admin"}), http.StatusCreated)["webhookId"].(string)
	f.hookB, _ = wireOK(t, srv, admin("POST", "/tenants/org-b/webhooks", map[string]any{"url": rcv.URL + "/b"}), http.StatusCreated)["webhookId"].(string)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/CreateLock", Key: f.keyA, Body: map[string]any{"index": 1, "uuid": authzLockUUID}}, http.StatusCreated)
	f.owner, _ = wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=owner@users.test", Key: f.keyA}, http.StatusOK)["uuid"].(string)
	wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=resident@users.test", Key: f.keyA}, http.StatusOK)
	f.noEmail, _ = wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-phone?phoneNumber=%2B48999888777", Key: f.keyA}, http.StatusOK)["uuid"].(string)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: f.keyA, Body: map[string]any{"userId": f.owner}}, http.StatusOK)
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/AddResident", Key: f.keyA, Body: map[string]any{"name": "Owner", "email": "owner@users.test"}}, http.StatusOK)
	f.ringID, _ = wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/RingDoorbell", Key: f.keyA}, http.StatusOK)["ringId"].(string)
	// A key to remove and an action to read (the lock's device is offline:
	// the actions are queued).
	wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/AddKey", Key: f.keyA, Body: map[string]any{"keyUuid": "authz-key-r"}}, http.StatusOK)
	if got := wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/OpenLock", Key: f.keyA, Body: map[string]any{"requestId": "authz-open"}}, http.StatusOK); got["offline"] != true || got["requestId"] != "authz-open" {
		t.Fatalf("OpenLock of the fixture: %v", got)
	}
	f.workflow, _ = wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/BulkAddKeys", Key: f.keyA, Body: map[string]any{"keys": []any{map[string]any{"keyUuid": "authz-bulk-0"}}}}, http.StatusOK)["instanceId"].(string)
	// The run ends before any refusal looks at the store.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w, _, err := srv.Store.Workflow(context.Background(), f.workflow)
		if err != nil {
			t.Fatal(err)
		}
		if w.Status == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fixture's BulkAddKeys run is %q after 20s: %+v", w.Status, w)
		}
	}
	f.ownerJWT = srv.Token(t, f.owner, "owner@users.test")
	f.otherJWT = srv.Token(t, app.NewUUID(), "other@users.test")
	f.outsider = srv.Token(t, app.NewUUID(), "a@other.com")
	f.publicResidents = map[string]any{"residents": []any{map[string]any{"userId": f.owner, "name": "Owner", "hasPhone": false}}}
	f.authorizedResidents = map[string]any{"residents": []any{map[string]any{"userId": f.owner, "name": "Owner", "email": "owner@users.test", "hasPhone": false}}}
	// The positive control of "shows no e-mails": the owner's org sees it.
	got := wireOK(t, srv, wireReq{Method: "GET", Path: "/locks/1/residents", Key: f.keyA}, http.StatusOK)
	if diff := cmp.Diff(f.authorizedResidents, any(got)); diff != "" {
		t.Fatalf("residents for the owner's org (-want +got):\n%s", diff)
	}

	// Every webhook verified and every delivery made before any refusal
	// looks at the store.
	hookSettle(t, srv)
	for _, id := range []string{f.hookA, f.adminHook, f.hookB} {
		if w, _, _ := srv.Store.Webhook(context.Background(), id); w.Status != "active" {
			t.Fatalf("webhook %s is %q after its verification, want active", id, w.Status)
		}
	}
	first := func(hook string) string {
		ds, err := srv.Store.WebhookDeliveries(context.Background(), hook, 0, 1, "")
		if err != nil || len(ds) == 0 || ds[0].Status != "delivered" {
			t.Fatalf("deliveries of webhook %s: %+v, %v; want a delivered one", hook, ds, err)
		}
		return strconv.FormatInt(ds[0].ID, 10)
	}
	f.deliveryA, f.adminDelivery = first(f.hookA), first(f.adminHook)
	// What another tenant's key lists: its own webhooks only.
	itemB := wireOK(t, srv, admin("GET", "/tenants/org-b/webhooks/"+f.hookB, nil), http.StatusOK)
	if itemB["orgId"] != "org-b" || itemB["status"] != "active" {
		t.Fatalf("org-b's webhook: %v", itemB)
	}
	f.listB = map[string]any{"webhooks": []any{itemB}, "total": float64(1), "limit": float64(50), "offset": float64(0)}
	f.listS = map[string]any{"webhooks": []any{}, "total": float64(0), "limit": float64(50), "offset": float64(0)}
	return f
}

// authzTokens mints the bad tokens of one subject: expired, signed by a
// key the server does not know, and unsigned (alg none).
func authzTokens(t *testing.T, f *authzFixture, sub, email string) (expired, foreign, none string) {
	t.Helper()
	var err error
	if expired, err = f.srv.JWT.Mint(sub, email, time.Hour, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewVerifier(context.Background(), auth.Config{KeyPath: filepath.Join(t.TempDir(), "other-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if foreign, err = other.Mint(sub, email, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"iss": auth.LocalIssuer, "sub": sub, "email": email, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	none = "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(payload) + "."
	return expired, foreign, none
}

type authzCase struct {
	name   string
	req    wireReq
	status int
	want   any
}

// authzRefusals lists every refusal (and, for the public route, every
// anonymous-level answer) of one route.
func authzRefusals(t *testing.T, f *authzFixture, r authzRoute) []authzCase {
	base := r.req(f)
	with := func(mod func(q *wireReq)) wireReq {
		q := base
		q.Header = map[string]string{}
		mod(&q)
		return q
	}
	refusal := func(status int, msg string) map[string]any { return wireErr(r.kind, status, msg) }
	// Middleware refusals carry success:false on command paths only.
	mw := func(status int, msg string) map[string]any {
		k := wirePlain
		if r.kind == wireCommand {
			k = wireCommand
		}
		return wireErr(k, status, msg)
	}

	admin := r.class == authzAdmin || r.class == authzHook
	sub, email, adminHeader := f.owner, "owner@users.test", ""
	if admin {
		sub, email, adminHeader = "admin-user", "a@example.com", testenv.AdminKey
	}
	expired, foreign, none := authzTokens(t, f, sub, email)
	bearer := func(tok string) wireReq {
		return with(func(q *wireReq) {
			q.JWT = tok
			if adminHeader != "" {
				q.Header["X-Admin-API-Key"] = adminHeader
			}
		})
	}
	good := func(q *wireReq) {
		if admin {
			q.JWT = f.adminJWT
			q.Header["X-Admin-API-Key"] = testenv.AdminKey
		} else {
			q.Key = f.keyA
		}
	}
	cases := []authzCase{
		{name: "expired JWT", req: bearer(expired), status: 401, want: mw(401, msgExpired)},
		{name: "JWT signed by another key", req: bearer(foreign), status: 401, want: mw(401, msgBadToken)},
		{name: "alg none JWT", req: bearer(none), status: 401, want: mw(401, msgBadToken)},
		{name: "JWT and X-API-Key together", req: with(func(q *wireReq) { good(q); q.JWT, q.Key = f.ownerJWT, f.keyA }), status: 401, want: mw(401, msgBoth)},
		{name: "X-Org-Id sent", req: with(func(q *wireReq) { good(q); q.Header["X-Org-Id"] = "org-a" }), status: 400, want: mw(400, msgInternal)},
		{name: "X-User-Id sent", req: with(func(q *wireReq) { good(q); q.Header["X-User-Id"] = f.owner }), status: 400, want: mw(400, msgInternal)},
	}
	anon := with(func(*wireReq) {})
	wrongTenant := with(func(q *wireReq) { q.Key = f.keyB })
	otherUser := with(func(q *wireReq) { q.JWT = f.otherJWT })
	switch r.class {
	case authzLock:
		userMsg := msgNotHolder
		if m := authzQuirks[r.pattern].userMsg; m != "" {
			userMsg = m
		}
		tenantMsg := msgNotOwner
		if m := authzQuirks[r.pattern].tenantMsg; m != "" {
			tenantMsg = m
		}
		cases = append(cases,
			authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msgNoAuth)},
			authzCase{name: "another tenant's API key", req: wrongTenant, status: 403, want: refusal(403, tenantMsg)},
			authzCase{name: "another user's JWT", req: otherUser, status: 403, want: refusal(403, userMsg)})
		if authzQuirks[r.pattern].noKey {
			cases = append(cases,
				authzCase{name: "API key of the lock's own tenant", req: with(func(q *wireReq) { q.Key = f.keyA }), status: 403, want: refusal(403, tenantMsg)},
				authzCase{name: "the owner's JWT", req: with(func(q *wireReq) { q.JWT = f.ownerJWT }), status: 403, want: refusal(403, userMsg)})
		}
	case authzRing:
		const onlyResident = "Only a resident the ring notified may answer it, with their own token"
		cases = append(cases,
			authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msgNoAuth)},
			authzCase{name: "another tenant's API key", req: wrongTenant, status: 403, want: refusal(403, onlyResident)},
			authzCase{name: "the lock's own tenant key", req: with(func(q *wireReq) { q.Key = f.keyA }), status: 403, want: refusal(403, onlyResident)},
			authzCase{name: "another user's JWT", req: otherUser, status: 403, want: refusal(403, "Only a resident this ring notified may answer it")})
	case authzUser:
		tenantStatus, tenantMsg, userMsg := 403, msgNotLinked, msgNotOwnUser
		if r.pattern == "POST /users/{id}/CreateUser" {
			// CreateUser of an existing user the key's org is not linked
			// to answers 409, not 403 (app.CreateUser).
			tenantStatus, tenantMsg, userMsg = 409, "A user with this id already exists", "You can only create your own user record"
		}
		if m := authzQuirks[r.pattern].tenantMsg; m != "" {
			tenantMsg = m
		}
		cases = append(cases,
			authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msgNoAuth)},
			authzCase{name: "API key of a tenant without standing over the user", req: wrongTenant, status: tenantStatus, want: refusal(tenantStatus, tenantMsg)},
			authzCase{name: "another user's JWT", req: otherUser, status: 403, want: refusal(403, userMsg)})
		if authzQuirks[r.pattern].noKey {
			cases = append(cases, authzCase{name: "API key of the user's own tenant", req: with(func(q *wireReq) { q.Key = f.keyA }), status: 403, want: refusal(403, tenantMsg)})
		}
	case authzLookup:
		// Find-or-create is open to every tenant's key (upstream); a user's
		// JWT may look up only its own verified address.
		msg := msgNotOwnAddr
		if r.pattern == "GET /users/by-phone" {
			msg = msgNotOwnPhone
		}
		cases = append(cases, authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msgNoAuth)},
			authzCase{name: "another user's JWT", req: otherUser, status: 403, want: refusal(403, msg)})
	case authzPublic:
		cases = append(cases,
			authzCase{name: "no credentials is public, without e-mails", req: anon, status: 200, want: f.publicResidents},
			authzCase{name: "another tenant's API key sees no e-mails", req: wrongTenant, status: 200, want: f.publicResidents},
			authzCase{name: "another user's JWT sees no e-mails", req: otherUser, status: 200, want: f.publicResidents})
	case authzAdmin, authzHook:
		msg := msgAdmin
		if r.class == authzHook {
			msg = msgHook
		}
		cases = append(cases,
			authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msg)},
			authzCase{name: "wrong admin key", req: with(func(q *wireReq) { q.JWT = f.adminJWT; q.Header["X-Admin-API-Key"] = "wrong-admin-key" }), status: 401, want: mw(401, msgBadAdmin)},
			authzCase{name: "tenant API key only", req: with(func(q *wireReq) { q.Key = f.keyA }), status: 401, want: refusal(401, msg)},
			authzCase{name: "admin-domain JWT without the admin key", req: with(func(q *wireReq) { q.JWT = f.adminJWT }), status: 401, want: refusal(401, msg)},
		)
		outside := authzCase{name: "admin key with a JWT outside the admin domain", status: 403, want: refusal(403, msgDomain),
			req: with(func(q *wireReq) { q.JWT = f.outsider; q.Header["X-Admin-API-Key"] = testenv.AdminKey })}
		if r.class != authzHook {
			// Without a JWT the admin key alone is not enough once an
			// admin domain is configured.
			cases = append(cases, authzCase{name: "admin key without a JWT", req: with(func(q *wireReq) { q.Header["X-Admin-API-Key"] = testenv.AdminKey }), status: 401, want: refusal(401, msg)})
		}
		cases = append(cases, outside)
	case authzPartner:
		q := authzQuirks[r.pattern]
		userMsg, adminMsg := msgPartnerOnly, msgAdminPartner
		if q.jwtMsg != "" {
			userMsg, adminMsg = q.jwtMsg, q.jwtMsg
		}
		cases = append(cases,
			authzCase{name: "no credentials", req: anon, status: 401, want: refusal(401, msgNoPartnerKey)},
			authzCase{name: "a user's JWT", req: with(func(q *wireReq) { q.JWT = f.ownerJWT }), status: 403, want: refusal(403, userMsg)},
			authzCase{name: "admin credentials", status: 403, want: refusal(403, adminMsg),
				req: with(func(q *wireReq) { q.JWT = f.adminJWT; q.Header["X-Admin-API-Key"] = testenv.AdminKey })})
		superKey := with(func(q *wireReq) { q.Key = f.keyS })
		switch {
		case q.selfOnly:
			// Any tenant's key rotates its own tenant's key: nothing to
			// refuse (the last subtest shows org-b's key untouched).
		case r.pattern == "GET /webhooks":
			// A partner lists its own webhooks, never another tenant's.
			cases = append(cases,
				authzCase{name: "another tenant's API key lists its own only", req: wrongTenant, status: 200, want: f.listB},
				authzCase{name: "a super key of another org lists its own only", req: superKey, status: 200, want: f.listS})
		default:
			cases = append(cases,
				authzCase{name: "another tenant's API key", req: wrongTenant, status: 404, want: refusal(404, msgNoWebhook)},
				authzCase{name: "a super key of another org", req: superKey, status: 404, want: refusal(404, msgNoWebhook)})
		}
		if r.pattern == "POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver" {
			own := with(func(q *wireReq) { q.Key = f.keyB })
			own.Path = "/webhooks/" + f.hookB + "/deliveries/" + f.deliveryA + "/redeliver"
			cases = append(cases, authzCase{name: "another tenant's delivery under one's own webhook", req: own, status: 404, want: refusal(404, msgNoDelivery)})
		}
	}
	return cases
}

// authzRun sends one refused (or read-only) request and checks its answer
// and that nothing changed: neither the events and read models nor, once
// the webhook work it might have queued is done, any webhook's
// deliveries, secrets or the requests its receiver got.
func authzRun(t *testing.T, f *authzFixture, c authzCase) {
	t.Helper()
	hookSettle(t, f.srv)
	before, hooks := wireSnapshot(t, f.srv), hookSnapshot(t, f.srv, f.receiver, authzOrgs...)
	resp := wireDo(t, f.srv, c.req)
	if resp.Status != c.status {
		t.Errorf("status %d, want %d; body %s", resp.Status, c.status, resp.Raw)
	}
	if diff := cmp.Diff(c.want, resp.JSON); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	hookSettle(t, f.srv)
	wireUnchanged(t, f.srv, before)
	hookUnchanged(t, f.srv, f.receiver, hooks, authzOrgs...)
}

// TestAuthzMatrix runs every route of routes.go (but the ops ones) through
// every way of calling it without the right credentials, then through the
// right ones, then rotates a tenant's key (as an admin, then as the
// partner itself).
func TestAuthzMatrix(t *testing.T) {
	routes := authzRoutes()
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newAuthzFixture(t, b)

			t.Run("every route is in the matrix", func(t *testing.T) {
				var doc struct {
					Paths map[string]map[string]json.RawMessage `json:"paths"`
				}
				if err := json.Unmarshal(wireDo(t, f.srv, wireReq{Method: "GET", Path: "/openapi.json"}).Raw, &doc); err != nil {
					t.Fatal(err)
				}
				var served, covered []string
				for p, ops := range doc.Paths {
					for m := range ops {
						if p != "/healthz" && p != "/readyz" && !strings.HasPrefix(p, "/hubs/") { // TestHubAuthz covers the hub routes
							served = append(served, strings.ToUpper(m)+" "+p)
						}
					}
				}
				for _, r := range routes {
					covered = append(covered, r.pattern)
				}
				sort.Strings(served)
				sort.Strings(covered)
				if diff := cmp.Diff(served, covered); diff != "" {
					t.Errorf("served routes vs matrix (-served +matrix):\n%s", diff)
				}
			})

			for _, r := range routes {
				t.Run(r.pattern, func(t *testing.T) {
					for _, c := range authzRefusals(t, f, r) {
						t.Run(c.name, func(t *testing.T) { authzRun(t, f, c) })
					}
				})
			}

			t.Run("admin routes with admin credentials", func(t *testing.T) {
				for _, r := range routes {
					if r.class != authzAdmin && r.class != authzHook {
						continue
					}
					q := r.req(f)
					q.JWT, q.Header = f.adminJWT, map[string]string{"X-Admin-API-Key": testenv.AdminKey}
					got := wireOK(t, f.srv, q, r.okStatus)
					if _, ok := got[r.okKey]; !ok || got["error"] != nil {
						t.Errorf("%s: answer %v lacks %q", r.pattern, got, r.okKey)
					}
				}
			})

			var newKey string // org-a's key after the admin's rotation
			t.Run("rotated key", func(t *testing.T) {
				q := wireReq{Method: "POST", Path: "/api-keys/org-a/rotate", JWT: f.adminJWT, Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}
				got := wireOK(t, f.srv, q, http.StatusCreated)
				newKey, _ = got["apiKey"].(string)
				if len(newKey) != 40 || newKey == f.keyA {
					t.Fatalf("rotation gave key %q", newKey)
				}
				delete(got, "apiKey")
				delete(got, "createdAt")
				want := map[string]any{"orgId": "org-a", "orgName": "org-a Inc", "createdBy": "a@example.com", "expiresAt": nil, "super": false}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rotation answer (-want +got):\n%s", diff)
				}
				for _, r := range routes {
					t.Run(r.pattern, func(t *testing.T) {
						old := r.req(f)
						old.Key = f.keyA
						mk := wirePlain
						if r.kind == wireCommand {
							mk = wireCommand
						}
						authzRun(t, f, authzCase{req: old, status: 401, want: wireErr(mk, 401, msgBadKey)})
						if r.class == authzAdmin || r.class == authzHook || r.class == authzRing || authzQuirks[r.pattern].noKey {
							return // no API key may call these
						}
						if r.pattern == "POST /api-keys/rotate" {
							return // last of all, below: it revokes newKey
						}
						fresh := r.req(f)
						fresh.Key = newKey
						if authzQuirks[r.pattern].stream {
							wireStreamOK(t, f.srv, fresh)
							return
						}
						got := wireOK(t, f.srv, fresh, r.okStatus)
						if _, ok := got[r.okKey]; !ok || got["error"] != nil {
							t.Errorf("answer %v lacks %q", got, r.okKey)
						}
					})
				}
			})

			t.Run("partner rotates its own key", func(t *testing.T) {
				if newKey == "" {
					t.Skip("the admin's rotation failed")
				}
				hookSettle(t, f.srv)
				got := wireOK(t, f.srv, wireReq{Method: "POST", Path: "/api-keys/rotate", Key: newKey}, http.StatusCreated)
				newest, _ := got["apiKey"].(string)
				if len(newest) != 40 || newest == newKey || newest == f.keyA {
					t.Fatalf("rotation gave key %q", newest)
				}
				if _, err := time.Parse(domain.TimeLayout, got["createdAt"].(string)); err != nil {
					t.Errorf("createdAt %v: %v", got["createdAt"], err)
				}
				delete(got, "apiKey")
				delete(got, "createdAt")
				want := map[string]any{"orgId": "org-a", "orgName": "org-a Inc", "createdBy": "self-service", "expiresAt": nil, "super": false}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rotation answer (-want +got):\n%s", diff)
				}
				// The key that rotated is revoked at once, and so is every
				// earlier one; the new one works; other tenants' keys are
				// untouched.
				mine := "/webhooks/" + f.hookA
				for _, old := range []string{newKey, f.keyA} {
					authzRun(t, f, authzCase{req: wireReq{Method: "GET", Path: mine, Key: old}, status: 401, want: wireErr(wirePlain, 401, msgBadKey)})
					authzRun(t, f, authzCase{req: wireReq{Method: "POST", Path: "/api-keys/rotate", Key: old}, status: 401, want: wireErr(wirePlain, 401, msgBadKey)})
				}
				if got := wireOK(t, f.srv, wireReq{Method: "GET", Path: mine, Key: newest}, http.StatusOK); got["id"] != f.hookA || got["orgId"] != "org-a" {
					t.Errorf("the new key reads %v", got)
				}
				authzRun(t, f, authzCase{req: wireReq{Method: "GET", Path: "/webhooks", Key: f.keyB}, status: 200, want: f.listB})
			})
		})
	}
}

// wireStreamOK opens an event stream, checks that it starts as one, and
// leaves.
func wireStreamOK(t *testing.T, srv *testenv.Server, r wireReq) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, srv.URL+r.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Key != "" {
		req.Header.Set("X-API-Key", r.Key)
	}
	if r.JWT != "" {
		req.Header.Set("Authorization", "Bearer "+r.JWT)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "retry: 2000\n" {
		t.Fatalf("stream's first line %q, %v", line, err)
	}
}
