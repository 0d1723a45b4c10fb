package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// hookReceiver is a partner's webhook endpoint on loopback: it records
// every request and answers 200.
type hookReceiver struct {
	URL string
	mu  sync.Mutex
	got []hookRequest
	// held[path], while open, keeps requests to path waiting (Hold).
	held map[string]chan struct{}
}

// Hold keeps every request to path waiting, unanswered and unrecorded,
// until release is called: a test can read what the server shows while
// such a request is in flight.
func (r *hookReceiver) Hold(path string) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	if r.held == nil {
		r.held = map[string]chan struct{}{}
	}
	r.held[path] = ch
	r.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

// hookRequest is one request a hookReceiver got.
type hookRequest struct {
	Path   string
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// SignedBy reports whether one of the request's Standard Webhooks
// signatures is by secret.
func (r hookRequest) SignedBy(t testing.TB, secret string) bool {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	ts, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	if err != nil {
		t.Fatalf("webhook-timestamp %q: %v", r.Header.Get("webhook-timestamp"), err)
	}
	want, err := wh.Sign(r.Header.Get("webhook-id"), time.Unix(ts, 0), r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Fields(r.Header.Get("webhook-signature")), want)
}

// newHookReceiver starts a receiver, closed at the end of the test. Start
// it before the server whose dispatcher calls it, so that it is closed
// after the dispatcher stops.
func newHookReceiver(t testing.TB) *hookReceiver {
	t.Helper()
	r := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		r.mu.Lock()
		hold := r.held[req.URL.Path]
		r.mu.Unlock()
		if hold != nil {
			<-hold
		}
		r.mu.Lock()
		r.got = append(r.got, hookRequest{Path: req.URL.Path, Header: req.Header.Clone(), Raw: raw, Body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Requests returns what the receiver got so far, oldest first.
func (r *hookReceiver) Requests() []hookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookRequest(nil), r.got...)
}

// hookSettle waits until no webhook work is queued: every partner event
// fanned out, every delivery and verification done (verifications
// recorded).
func hookSettle(t testing.TB, srv *testenv.Server) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// A replay being queued (in chunks, after its answer) is work too.
		// It is read first: a chunk queues its rows and closes the replay
		// in one transaction, so a replay seen closed has its rows in the
		// queues read next (read the other way round, the last chunk could
		// land in between and go unseen).
		replays, err := srv.Store.OpenReplays(context.Background())
		if err != nil {
			t.Fatalf("read open replays: %v", err)
		}
		var busy []es.OutboxRow
		for _, c := range []string{es.ConsumerWebhooks, es.ConsumerWebhookSend, es.ConsumerWebhookVerify} {
			rows, err := srv.Store.Outbox(context.Background(), c, 10)
			if err != nil {
				t.Fatalf("read %s queue: %v", c, err)
			}
			busy = append(busy, rows...)
		}
		if len(busy) == 0 && replays == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook work still queued after 15s: %+v", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hookState is what the webhook tables hold beside the events: each
// webhook's deliveries ("id status attempts") and secrets, by webhook id,
// and how many requests the receiver got.
type hookState struct {
	Received int
	Hooks    map[string]hookRows
}

type hookRows struct {
	Deliveries []string
	Secrets    store.WebhookSecrets
}

// hookSnapshot pictures the webhooks of orgs (registered tenants).
func hookSnapshot(t testing.TB, srv *testenv.Server, rcv *hookReceiver, orgs ...string) hookState {
	t.Helper()
	ctx := context.Background()
	st := hookState{Received: len(rcv.Requests()), Hooks: map[string]hookRows{}}
	for _, org := range orgs {
		hooks, _, err := srv.Svc.Webhooks(ctx, app.Principal{Admin: true}, org, 0, 0)
		if err != nil {
			t.Fatalf("webhooks of %s: %v", org, err)
		}
		for _, w := range hooks {
			ds, err := srv.Store.WebhookDeliveries(ctx, w.ID, 0, 100000, "")
			if err != nil {
				t.Fatalf("deliveries of %s: %v", w.ID, err)
			}
			var rows hookRows
			for _, d := range ds {
				rows.Deliveries = append(rows.Deliveries, fmt.Sprintf("%d %s %d", d.ID, d.Status, d.Attempts))
			}
			if rows.Secrets, _, err = srv.Store.WebhookSecrets(ctx, w.ID); err != nil {
				t.Fatalf("secrets of %s: %v", w.ID, err)
			}
			st.Hooks[w.ID] = rows
		}
	}
	return st
}

// hookUnchanged fails when the webhooks of before's orgs differ from
// before.
func hookUnchanged(t testing.TB, srv *testenv.Server, rcv *hookReceiver, before hookState, orgs ...string) {
	t.Helper()
	if diff := cmp.Diff(before, hookSnapshot(t, srv, rcv, orgs...)); diff != "" {
		t.Errorf("webhooks changed by a request that must not change them (-before +after):\n%s", diff)
	}
}

// hookRefused sends r, requires status and the envelope want, and checks
// that nothing changed: events, read models and, once queued work has
// settled, the webhooks of orgs and what the receiver got.
func hookRefused(t testing.TB, srv *testenv.Server, rcv *hookReceiver, orgs []string, r wireReq, status int, want map[string]any) {
	t.Helper()
	hookSettle(t, srv)
	before := hookSnapshot(t, srv, rcv, orgs...)
	wireRefused(t, srv, r, status, want)
	hookSettle(t, srv)
	hookUnchanged(t, srv, rcv, before, orgs...)
}

// hookTimeKeys are the members that hold a time (domain.TimeLayout) or
// null.
var hookTimeKeys = map[string]bool{"createdAt": true, "updatedAt": true, "verifiedAt": true, "lastErrorAt": true, "secretRotatedAt": true,
	"disabledAt": true, "queueFullSince": true, "deletedAt": true, "at": true, "eventTime": true, "queuedAt": true, "lastAttemptAt": true, "nextAttemptAt": true,
	"previousSecretExpiresAt": true}

var (
	hookSecretRE = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}=$`) // 32 random bytes
	hookUUIDRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// hookScrub checks the members of an answer that differ from run to run
// and replaces them with placeholders: "<time>", "<secret>", "<uuid>"
// (eventId) and "<ms>" (latencyMs).
func hookScrub(t testing.TB, v any) any {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			s, isStr := c.(string)
			switch {
			case hookTimeKeys[k] && isStr:
				if _, err := time.Parse(domain.TimeLayout, s); err != nil {
					t.Errorf("%s %q is not a %s time", k, s, domain.TimeLayout)
				}
				out[k] = "<time>"
			case (k == "secret" || k == "previousSecret") && isStr:
				if !hookSecretRE.MatchString(s) {
					t.Errorf("%s %q is not whsec_ and the base64 of 32 bytes", k, s)
				}
				out[k] = "<secret>"
			case k == "eventId" && isStr:
				if !hookUUIDRE.MatchString(s) {
					t.Errorf("eventId %q is not a UUID", s)
				}
				out[k] = "<uuid>"
			case k == "latencyMs":
				if n, ok := c.(float64); !ok || n < 0 {
					t.Errorf("latencyMs %v", c)
				}
				out[k] = "<ms>"
			default:
				out[k] = hookScrub(t, c)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = hookScrub(t, c)
		}
		return out
	}
	return v
}

// hookShape compares an answer, scrubbed, with a JSON literal built from
// format and args.
func hookShape(t testing.TB, what string, got any, format string, args ...any) {
	t.Helper()
	if diff := cmp.Diff(wireJSON(t, fmt.Sprintf(format, args...)), hookScrub(t, got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// hookDoc validates answers against the server's own OpenAPI document.
type hookDoc struct{ c *jsonschema.Compiler }

const hookDocURL = "https://spkey.test/openapi.json"

func newHookDoc(t testing.TB, srv *testenv.Server) *hookDoc {
	t.Helper()
	resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/openapi.json"})
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(resp.Raw))
	if err != nil {
		t.Fatalf("decode /openapi.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(hookDocURL, doc); err != nil {
		t.Fatalf("load /openapi.json: %v", err)
	}
	return &hookDoc{c: c}
}

// valid checks raw against the schema route ("METHOD /path") documents
// for status (its "default" answer for an error).
func (d *hookDoc) valid(t testing.TB, route string, status int, raw []byte) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	ptr := openapiPointer(method, path, status)
	if status >= 400 {
		ptr = strings.Replace(ptr, "/responses/"+strconv.Itoa(status)+"/", "/responses/default/", 1)
	}
	sch, err := d.c.Compile(hookDocURL + ptr)
	if err != nil {
		t.Fatalf("%s: no schema for %d in /openapi.json: %v", route, status, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: answer is not JSON: %s", route, raw)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s: answer %s does not match the documented %d schema: %v", route, raw, status, err)
	}
}

// call sends r to route, requires status and a documented answer, and
// returns it.
func (d *hookDoc) call(t testing.TB, srv *testenv.Server, route string, r wireReq, status int) map[string]any {
	t.Helper()
	resp := wireDo(t, srv, r)
	if resp.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Method, r.Path, resp.Status, status, resp.Raw)
	}
	d.valid(t, route, status, resp.Raw)
	return resp.Obj(t)
}

// hookAdmin is the admin credential of a server without an admin e-mail
// domain.
var hookAdmin = map[string]string{"X-Admin-API-Key": testenv.AdminKey}

// hookLocks creates locks ids with key (one LockCreated event each).
func hookLocks(t testing.TB, srv *testenv.Server, key string, ids ...int) {
	t.Helper()
	for _, id := range ids {
		wireOK(t, srv, wireReq{Method: "POST", Path: fmt.Sprintf("/locks/%d/CreateLock", id), Key: key, Body: map[string]any{"index": id, "uuid": app.NewUUID()}}, http.StatusCreated)
	}
}

// received returns the requests of rcv to path, oldest first.
func (r *hookReceiver) received(path string) []hookRequest {
	var out []hookRequest
	for _, q := range r.Requests() {
		if q.Path == path {
			out = append(out, q)
		}
	}
	return out
}

// hookItem is the literal of one webhook in answers, for hookShape:
// status, verifiedAt, the last error's three members, secretRotatedAt and
// disabledAt are JSON values ("null", `"<time>"`, ...).
func hookItem(id, url, events, authType, status, verifiedAt, secretRotatedAt string) string {
	return fmt.Sprintf(`{"id":%q,"orgId":"acme","url":%q,"events":%s,"status":%q,"authType":%q%s,"createdAt":"<time>","updatedAt":"<time>",
		"verifiedAt":%s,"lastError":null,"lastErrorAt":null,"lastStatusCode":null,"secretRotatedAt":%s,"disabledAt":null,"queueFullSince":null}`,
		id, url, events, status, authType, "", verifiedAt, secretRotatedAt)
}

// TestWebhookAdminRoutes drives every admin webhook route over HTTP and
// checks each answer's exact shape, that it matches the OpenAPI
// document, and what the receiver got.
func TestWebhookAdminRoutes(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newHookReceiver(t)
			srv := testenv.NewServer(t, b, testenv.Options{})
			doc := newHookDoc(t, srv)
			key := srv.Tenant(t, "acme", false)
			admin := func(method, path string, body any) wireReq {
				return wireReq{Method: method, Path: "/tenants/acme/webhooks" + path, Header: hookAdmin, Body: body}
			}
			const (
				routeHooks      = "/tenants/{orgId}/webhooks"
				routeHook       = routeHooks + "/{webhookId}"
				routeDeliveries = routeHook + "/deliveries"
			)

			// Create: pending, with a generated secret; duplicate event
			// types are dropped.
			url := rcv.URL + "/one"
			created := doc.call(t, srv, "POST "+routeHooks, admin("POST", "", map[string]any{"url": url, "events": []string{"OrganizationSet", "ResidentAdded", "OrganizationSet"}}), http.StatusCreated)
			id, _ := created["webhookId"].(string)
			secret, _ := created["secret"].(string)
			if !hookUUIDRE.MatchString(id) {
				t.Fatalf("webhookId %q", id)
			}
			hookShape(t, "create answer", created, `{"success":true,"aggregateId":"acme","version":3,"webhookId":%q,"status":"pending","secret":"<secret>",
				"event":{"type":"WebhookCreated","data":{"orgId":"acme","webhookId":%[1]q,"url":%q,"events":["OrganizationSet","ResidentAdded"],"authType":"none","createdAt":"<time>"}}}`, id, url)

			// The verification POST, signed with that secret, makes it active.
			hookSettle(t, srv)
			ver := rcv.received("/one")
			if len(ver) != 1 || !ver[0].SignedBy(t, secret) {
				t.Fatalf("verification requests %+v, want one signed with the new secret", ver)
			}
			hookShape(t, "verification body", ver[0].Body, `{"type":"WebhookVerification","id":"verify_%s_1","webhookId":%[1]q,"partnerId":"acme","url":%q,"timestamp":"%s"}`,
				id, url, ver[0].Body["timestamp"])
			got := doc.call(t, srv, "GET "+routeHook, admin("GET", "/"+id, nil), http.StatusOK)
			hookShape(t, "verified webhook", got, "%s", hookItem(id, url, `["OrganizationSet","ResidentAdded"]`, "none", "active", `"<time>"`, "null"))

			// Deliveries: the matching events, newest first, with their
			// attempts; the envelope id is the delivery's eventId. (A lock
			// created with the tenant's key records LockCreated before the
			// OrganizationSet that makes it the tenant's: only the latter
			// is the tenant's event.)
			hookLocks(t, srv, key, 1, 2, 3)
			owner, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=owner@example.com", Key: key}, http.StatusOK)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1/SetOwner", Key: key, Body: map[string]any{"userId": owner}}, http.StatusOK) // not subscribed
			hookSettle(t, srv)
			page := doc.call(t, srv, "GET "+routeDeliveries, admin("GET", "/"+id+"/deliveries", nil), http.StatusOK)
			ds, _ := page["deliveries"].([]any)
			if len(ds) != 3 {
				t.Fatalf("deliveries %v, want the three OrganizationSet", page)
			}
			ids := make([]int64, 3)
			for i, d := range ds {
				m := d.(map[string]any)
				ids[i] = int64(m["id"].(float64))
				hookShape(t, "delivery", m, `{"id":%d,"eventId":"<uuid>","eventType":"OrganizationSet","aggregateType":"lock","aggregateId":"%d","version":2,
					"status":"delivered","eventTime":"<time>","queuedAt":"<time>","lastAttemptAt":"<time>","nextAttemptAt":null,"lastStatusCode":200,"lastError":null,
					"attempts":[{"at":"<time>","outcome":"delivered","statusCode":200,"latencyMs":"<ms>","error":null}]}`, ids[i], 3-i)
				sent := false
				for _, q := range rcv.received("/one") {
					sent = sent || (q.Body["id"] == m["eventId"] && q.Body["detail-type"] == "OrganizationSet" && q.SignedBy(t, secret))
				}
				if !sent {
					t.Errorf("delivery %v: the receiver got no signed envelope with its eventId", m["id"])
				}
			}
			if page["nextCursor"] != nil || !(ids[0] > ids[1] && ids[1] > ids[2]) {
				t.Errorf("deliveries not newest first on one page: %v", page)
			}
			// Paging with the cursor, and the status filter.
			first := doc.call(t, srv, "GET "+routeDeliveries, admin("GET", "/"+id+"/deliveries?limit=2", nil), http.StatusOK)
			if n := len(first["deliveries"].([]any)); n != 2 || first["nextCursor"] != strconv.FormatInt(ids[1], 10) {
				t.Fatalf("first page of 2: %d deliveries, nextCursor %v", n, first["nextCursor"])
			}
			rest := doc.call(t, srv, "GET "+routeDeliveries, admin("GET", "/"+id+"/deliveries?limit=2&cursor="+first["nextCursor"].(string), nil), http.StatusOK)
			if diff := cmp.Diff(ds[2:], rest["deliveries"]); diff != "" || rest["nextCursor"] != nil {
				t.Errorf("second page (-want +got):\n%s\nnextCursor %v", diff, rest["nextCursor"])
			}
			if got := wireOK(t, srv, admin("GET", "/"+id+"/deliveries?status=failed", nil), http.StatusOK); len(got["deliveries"].([]any)) != 0 {
				t.Errorf("failed deliveries: %v", got)
			}
			if got := wireOK(t, srv, admin("GET", "/"+id+"/deliveries?status=delivered", nil), http.StatusOK); len(got["deliveries"].([]any)) != 3 {
				t.Errorf("delivered deliveries: %v", got)
			}

			// Redeliver: a new delivery of the same event (same envelope id).
			before := len(rcv.received("/one"))
			again := doc.call(t, srv, "POST "+routeDeliveries+"/{deliveryId}/redeliver", admin("POST", fmt.Sprintf("/%s/deliveries/%d/redeliver", id, ids[2]), nil), http.StatusAccepted)
			hookShape(t, "redelivery", again, `{"id":%v,"eventId":%q,"eventType":"OrganizationSet","aggregateType":"lock","aggregateId":"1","version":2,"status":"pending",
				"eventTime":"<time>","queuedAt":"<time>","lastAttemptAt":null,"nextAttemptAt":null,"lastStatusCode":null,"lastError":null,"attempts":[]}`,
				again["id"], "<uuid>")
			if again["eventId"] != ds[2].(map[string]any)["eventId"] || again["id"].(float64) <= float64(ids[0]) {
				t.Errorf("redelivery %v of %v", again, ds[2])
			}
			// Replay: every subscribed event since a time, queued again.
			since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			replayed := doc.call(t, srv, "POST "+routeHook+"/replay", admin("POST", "/"+id+"/replay", map[string]any{"since": since.In(time.FixedZone("", 2*3600)).Format(time.RFC3339)}), http.StatusAccepted)
			hookShape(t, "replay", replayed, `{"queued":3,"since":%q}`, since.Format(time.RFC3339))
			hookSettle(t, srv)
			if n := len(rcv.received("/one")) - before; n != 4 {
				t.Errorf("redelivery and replay sent %d requests, want 4", n)
			}
			if got := wireOK(t, srv, admin("GET", "/"+id+"/deliveries?status=delivered", nil), http.StatusOK); len(got["deliveries"].([]any)) != 7 {
				t.Errorf("after redelivery and replay: %d delivered, want 7", len(got["deliveries"].([]any)))
			}

			// Secret: the one the answer to create showed.
			sec := doc.call(t, srv, "GET "+routeHook+"/secret", admin("GET", "/"+id+"/secret", nil), http.StatusOK)
			if diff := cmp.Diff(map[string]any{"secret": secret, "previousSecret": nil, "previousSecretExpiresAt": nil}, sec); diff != "" {
				t.Errorf("secret (-want +got):\n%s", diff)
			}

			// PUT events: no re-verification, no secret in the answer.
			upd := doc.call(t, srv, "PUT "+routeHook, admin("PUT", "/"+id, map[string]any{"events": []string{"*"}}), http.StatusOK)
			hookShape(t, "events update", upd, `{"success":true,"aggregateId":"acme","version":5,"webhookId":%q,"status":"active",
				"event":{"type":"WebhookUpdated","data":{"orgId":"acme","webhookId":%[1]q,"events":["*"],"updatedAt":"<time>"}}}`, id)
			// PUT rotateSecret: a new secret; the old one signs beside it for 24 h.
			rot := doc.call(t, srv, "PUT "+routeHook, admin("PUT", "/"+id, map[string]any{"rotateSecret": true}), http.StatusOK)
			hookShape(t, "secret rotation", rot, `{"success":true,"aggregateId":"acme","version":6,"webhookId":%q,"status":"active","secret":"<secret>",
				"event":{"type":"WebhookUpdated","data":{"orgId":"acme","webhookId":%[1]q,"secretRotated":true,"updatedAt":"<time>"}}}`, id)
			newSecret, _ := rot["secret"].(string)
			sec = wireOK(t, srv, admin("GET", "/"+id+"/secret", nil), http.StatusOK)
			until, err := time.Parse(domain.TimeLayout, fmt.Sprint(sec["previousSecretExpiresAt"]))
			if newSecret == secret || sec["secret"] != newSecret || sec["previousSecret"] != secret || err != nil || time.Until(until) < 23*time.Hour || time.Until(until) > 25*time.Hour {
				t.Errorf("after rotation %q: secret %v (previous one %q)", newSecret, sec, secret)
			}
			// PUT apiKeyHeader: the receiver gets the header (signed with
			// both secrets); the value never shows in an answer.
			auth := map[string]any{"authType": "apiKeyHeader", "authHeader": "X-Partner-Token", "authValue": "tok-4f1b2c"}
			resp := wireDo(t, srv, admin("PUT", "/"+id, auth))
			if resp.Status != http.StatusOK || strings.Contains(string(resp.Raw), "tok-4f1b2c") {
				t.Fatalf("apiKeyHeader update: %d %s", resp.Status, resp.Raw)
			}
			v := doc.call(t, srv, "POST "+routeHook+"/verify", admin("POST", "/"+id+"/verify", nil), http.StatusAccepted)
			hookShape(t, "verify answer", v, "%s", strings.Replace(hookItem(id, url, `["*"]`, "apiKeyHeader", "active", `"<time>"`, `"<time>"`), `,"createdAt"`, `,"authHeader":"X-Partner-Token","createdAt"`, 1))
			hookSettle(t, srv)
			last := rcv.received("/one")
			vq := last[len(last)-1]
			if vq.Body["type"] != "WebhookVerification" || vq.Header.Get("X-Partner-Token") != "tok-4f1b2c" || !vq.SignedBy(t, newSecret) || !vq.SignedBy(t, secret) {
				t.Errorf("verification after apiKeyHeader: %+v", vq)
			}
			// PUT bearerToken: Authorization: Bearer, the header name gone.
			wireOK(t, srv, admin("PUT", "/"+id, map[string]any{"authType": "bearerToken", "authValue": "bearer-9d8e"}), http.StatusOK)
			wireOK(t, srv, admin("POST", "/"+id+"/verify", nil), http.StatusAccepted)
			hookSettle(t, srv)
			last = rcv.received("/one")
			if vq := last[len(last)-1]; vq.Header.Get("Authorization") != "Bearer bearer-9d8e" || vq.Header.Get("X-Partner-Token") != "" {
				t.Errorf("verification after bearerToken: %+v", vq.Header)
			}
			// PUT url: back to pending until the new URL answers.
			url2 := rcv.URL + "/two"
			moved := doc.call(t, srv, "PUT "+routeHook, admin("PUT", "/"+id, map[string]any{"url": url2}), http.StatusOK)
			hookShape(t, "url update", moved, `{"success":true,"aggregateId":"acme","version":%v,"webhookId":%q,"status":"pending",
				"event":{"type":"WebhookUpdated","data":{"orgId":"acme","webhookId":%[2]q,"url":%q,"updatedAt":"<time>"}}}`, moved["version"], id, url2)
			hookSettle(t, srv)
			if ver := rcv.received("/two"); len(ver) != 1 || ver[0].Body["id"] != "verify_"+id+"_2" {
				t.Errorf("verification of the new URL: %+v", ver)
			}
			got = wireOK(t, srv, admin("GET", "/"+id, nil), http.StatusOK)
			hookShape(t, "moved webhook", got, `{"id":%q,"orgId":"acme","url":%q,"events":["*"],"status":"active","authType":"bearerToken","createdAt":"<time>","updatedAt":"<time>",
				"verifiedAt":"<time>","lastError":null,"lastErrorAt":null,"lastStatusCode":null,"secretRotatedAt":"<time>","disabledAt":null,"queueFullSince":null}`, id, url2)

			// List with paging, oldest first.
			id2, _ := wireOK(t, srv, admin("POST", "", map[string]any{"url": rcv.URL + "/three"}), http.StatusCreated)["webhookId"].(string)
			id3, _ := wireOK(t, srv, admin("POST", "", map[string]any{"url": rcv.URL + "/four"}), http.StatusCreated)["webhookId"].(string)
			hookSettle(t, srv)
			listed := func(q string, want ...string) {
				t.Helper()
				got := doc.call(t, srv, "GET "+routeHooks, admin("GET", q, nil), http.StatusOK)
				var ids []string
				for _, w := range got["webhooks"].([]any) {
					ids = append(ids, w.(map[string]any)["id"].(string))
				}
				if diff := cmp.Diff(want, ids); diff != "" || got["total"] != float64(3) {
					t.Errorf("GET %s: total %v, ids (-want +got):\n%s", q, got["total"], diff)
				}
			}
			listed("", id, id2, id3)
			listed("?limit=2", id, id2)
			listed("?limit=2&offset=2", id3)
			listed("?offset=3")
			page = wireOK(t, srv, admin("GET", "?limit=1&offset=1", nil), http.StatusOK)
			hookShape(t, "list page", page, `{"webhooks":[%s],"total":3,"limit":1,"offset":1}`, hookItem(id2, rcv.URL+"/three", `["*"]`, "none", "active", `"<time>"`, "null"))

			// Delete: gone from every route, nothing more sent to it.
			del := doc.call(t, srv, "DELETE "+routeHook, admin("DELETE", "/"+id, nil), http.StatusOK)
			hookShape(t, "delete answer", del, `{"success":true,"aggregateId":"acme","version":%v,"webhookId":%q,
				"event":{"type":"WebhookDeleted","data":{"orgId":"acme","webhookId":%[2]q,"deletedAt":"<time>"}}}`, del["version"], id)
			gone := wireErr(wirePlain, http.StatusNotFound, "Webhook not found")
			goneCmd := wireErr(wireCommand, http.StatusNotFound, "Webhook not found")
			orgs := []string{"acme"}
			for _, c := range []struct {
				r    wireReq
				want map[string]any
			}{
				{admin("GET", "/"+id, nil), gone},
				{admin("GET", "/"+id+"/secret", nil), gone},
				{admin("GET", "/"+id+"/deliveries", nil), gone},
				{admin("POST", "/"+id+"/verify", nil), gone},
				{admin("POST", fmt.Sprintf("/%s/deliveries/%d/redeliver", id, ids[0]), nil), gone},
				{admin("POST", "/"+id+"/replay", map[string]any{"since": since.Format(time.RFC3339)}), gone},
				{admin("PUT", "/"+id, map[string]any{"events": []string{"*"}}), goneCmd},
				{admin("DELETE", "/"+id, nil), goneCmd},
			} {
				hookRefused(t, srv, rcv, orgs, c.r, http.StatusNotFound, c.want)
			}
			if got := wireOK(t, srv, admin("GET", "", nil), http.StatusOK); got["total"] != float64(2) {
				t.Errorf("after delete: %v", got)
			}
			before = len(rcv.received("/two"))
			hookLocks(t, srv, key, 4)
			hookSettle(t, srv)
			if n := len(rcv.received("/two")); n != before {
				t.Errorf("the deleted webhook got %d more requests", n-before)
			}
		})
	}
}

// TestWebhookPartnerRoutes drives the partner's own routes (X-API-Key)
// over HTTP: the same webhooks the admin sees, a self-service URL change
// that goes back to pending, and key rotation.
func TestWebhookPartnerRoutes(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newHookReceiver(t)
			srv := testenv.NewServer(t, b, testenv.Options{})
			doc := newHookDoc(t, srv)
			key := srv.Tenant(t, "acme", false)
			created := wireOK(t, srv, wireReq{Method: "POST", Path: "/tenants/acme/webhooks", Header: hookAdmin, Body: map[string]any{"url": rcv.URL + "/p"}}, http.StatusCreated)
			id, _ := created["webhookId"].(string)
			hookSettle(t, srv)
			mine := func(method, path string, body any) wireReq {
				return wireReq{Method: method, Path: "/webhooks" + path, Key: key, Body: body}
			}

			// The partner sees what the admin sees.
			adminItem := wireOK(t, srv, wireReq{Method: "GET", Path: "/tenants/acme/webhooks/" + id, Header: hookAdmin}, http.StatusOK)
			item := doc.call(t, srv, "GET /webhooks/{webhookId}", mine("GET", "/"+id, nil), http.StatusOK)
			if diff := cmp.Diff(adminItem, item); diff != "" {
				t.Errorf("partner's view vs admin's (-admin +partner):\n%s", diff)
			}
			list := doc.call(t, srv, "GET /webhooks", mine("GET", "", nil), http.StatusOK)
			if diff := cmp.Diff(map[string]any{"webhooks": []any{adminItem}, "total": float64(1), "limit": float64(50), "offset": float64(0)}, list); diff != "" {
				t.Errorf("partner's list (-want +got):\n%s", diff)
			}
			hookShape(t, "list past the end", doc.call(t, srv, "GET /webhooks", mine("GET", "?limit=1&offset=1", nil), http.StatusOK),
				`{"webhooks":[],"total":1,"limit":1,"offset":1}`)
			// The key with an accepted admin key beside it (this server has
			// no admin e-mail domain) is still the partner's own: no org is
			// named on these routes.
			withAdmin := mine("GET", "", nil)
			withAdmin.Header = hookAdmin
			if diff := cmp.Diff(list, wireOK(t, srv, withAdmin, http.StatusOK)); diff != "" {
				t.Errorf("list with the admin key beside (-want +got):\n%s", diff)
			}
			sec := doc.call(t, srv, "GET /webhooks/{webhookId}/secret", mine("GET", "/"+id+"/secret", nil), http.StatusOK)
			if diff := cmp.Diff(map[string]any{"secret": created["secret"], "previousSecret": nil, "previousSecretExpiresAt": nil}, sec); diff != "" {
				t.Errorf("partner's secret (-want +got):\n%s", diff)
			}

			// PATCH: only the URL changes (events in the body are not
			// the partner's to change); pending until the new URL answers.
			moved := rcv.URL + "/moved"
			// The new URL's verification waits at the receiver until the
			// webhook has been read as pending.
			release := rcv.Hold("/moved")
			defer release()
			patched := doc.call(t, srv, "PATCH /webhooks/{webhookId}", mine("PATCH", "/"+id, map[string]any{"url": moved, "events": []string{"LockCreated"}}), http.StatusOK)
			hookShape(t, "patch answer", patched, `{"success":true,"aggregateId":"acme","version":5,"webhookId":%q,"status":"pending",
				"event":{"type":"WebhookUpdated","data":{"orgId":"acme","webhookId":%[1]q,"url":%q,"updatedAt":"<time>"}}}`, id, moved)
			hookShape(t, "patched webhook", wireOK(t, srv, mine("GET", "/"+id, nil), http.StatusOK), "%s", hookItem(id, moved, `["*"]`, "none", "pending", "null", "null"))
			release()
			hookSettle(t, srv)
			if ver := rcv.received("/moved"); len(ver) != 1 || ver[0].Body["id"] != "verify_"+id+"_2" {
				t.Fatalf("verification of the new URL: %+v", ver)
			}
			hookShape(t, "re-verified webhook", wireOK(t, srv, mine("GET", "/"+id, nil), http.StatusOK), "%s", hookItem(id, moved, `["*"]`, "none", "active", `"<time>"`, "null"))

			// Verify again, deliveries, redelivery, replay.
			v := doc.call(t, srv, "POST /webhooks/{webhookId}/verify", mine("POST", "/"+id+"/verify", nil), http.StatusAccepted)
			hookShape(t, "verify answer", v, "%s", hookItem(id, moved, `["*"]`, "none", "active", `"<time>"`, "null"))
			hookLocks(t, srv, key, 1)
			hookSettle(t, srv)
			ds := doc.call(t, srv, "GET /webhooks/{webhookId}/deliveries", mine("GET", "/"+id+"/deliveries", nil), http.StatusOK)
			list0, _ := ds["deliveries"].([]any)
			if len(list0) != 1 || ds["nextCursor"] != nil {
				t.Fatalf("deliveries: %v", ds)
			}
			d := list0[0].(map[string]any)
			hookShape(t, "delivery", d, `{"id":%v,"eventId":"<uuid>","eventType":"OrganizationSet","aggregateType":"lock","aggregateId":"1","version":2,
				"status":"delivered","eventTime":"<time>","queuedAt":"<time>","lastAttemptAt":"<time>","nextAttemptAt":null,"lastStatusCode":200,"lastError":null,
				"attempts":[{"at":"<time>","outcome":"delivered","statusCode":200,"latencyMs":"<ms>","error":null}]}`, d["id"])
			again := doc.call(t, srv, "POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", mine("POST", fmt.Sprintf("/%s/deliveries/%v/redeliver", id, d["id"]), nil), http.StatusAccepted)
			if again["eventId"] != d["eventId"] || again["status"] != "pending" || again["id"] == d["id"] {
				t.Errorf("redelivery %v of %v", again, d)
			}
			since := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
			replayed := doc.call(t, srv, "POST /webhooks/{webhookId}/replay", mine("POST", "/"+id+"/replay", map[string]any{"since": since.Format(time.RFC3339Nano)}), http.StatusAccepted)
			// Only OrganizationSet is the tenant's event (see TestWebhookAdminRoutes).
			hookShape(t, "replay answer", replayed, `{"queued":1,"since":%q}`, since.Format(time.RFC3339Nano))
			hookSettle(t, srv)
			if got := wireOK(t, srv, mine("GET", "/"+id+"/deliveries?status=delivered", nil), http.StatusOK); len(got["deliveries"].([]any)) != 3 {
				t.Errorf("after redelivery and replay: %v", got)
			}

			// Rotation: a new key at once, the old one refused.
			rotated := doc.call(t, srv, "POST /api-keys/rotate", wireReq{Method: "POST", Path: "/api-keys/rotate", Key: key}, http.StatusCreated)
			newKey, _ := rotated["apiKey"].(string)
			if len(newKey) != 40 || newKey == key {
				t.Fatalf("rotation gave %q", newKey)
			}
			hookShape(t, "rotation answer", rotated, `{"apiKey":%q,"orgId":"acme","orgName":"acme Inc","createdAt":"<time>","createdBy":"self-service","expiresAt":null,"super":false}`, newKey)
			hookRefused(t, srv, rcv, []string{"acme"}, mine("GET", "", nil), http.StatusUnauthorized, wireErr(wirePlain, http.StatusUnauthorized, msgBadKey))
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/webhooks/" + id, Key: newKey}, http.StatusOK); got["id"] != id {
				t.Errorf("the new key reads %v", got)
			}
		})
	}
}

// TestWebhookBadInput: every kind of bad input to the webhook routes gets
// the documented error envelope and changes nothing.
func TestWebhookBadInput(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newHookReceiver(t)
			srv := testenv.NewServer(t, b, testenv.Options{})
			doc := newHookDoc(t, srv)
			key := srv.Tenant(t, "acme", false)
			srv.Tenant(t, "beta", false)
			id, _ := wireOK(t, srv, wireReq{Method: "POST", Path: "/tenants/acme/webhooks", Header: hookAdmin, Body: map[string]any{"url": rcv.URL + "/a"}}, http.StatusCreated)["webhookId"].(string)
			hookSettle(t, srv)
			create := func(body any) wireReq {
				return wireReq{Method: "POST", Path: "/tenants/acme/webhooks", Header: hookAdmin, Body: body}
			}
			withURL := func(extra map[string]any) wireReq {
				body := map[string]any{"url": rcv.URL + "/x"}
				for k, v := range extra {
					body[k] = v
				}
				return create(body)
			}
			put := func(body any) wireReq {
				return wireReq{Method: "PUT", Path: "/tenants/acme/webhooks/" + id, Header: hookAdmin, Body: body}
			}
			mine := func(method, path string, body any) wireReq {
				return wireReq{Method: method, Path: "/webhooks/" + id + path, Key: key, Body: body}
			}
			field := func(kind wireKind, name, msg string) map[string]any {
				return wireErr(kind, http.StatusBadRequest, msg, [2]string{name, msg})
			}
			// huma's own validation: "Invalid request: <field>: <why>".
			schema := func(kind wireKind, name, why string) map[string]any {
				msg := "Invalid request: " + why
				if name != "" {
					msg = "Invalid request: " + name + ": " + why
				}
				return wireErr(kind, http.StatusBadRequest, msg, [2]string{name, why})
			}
			const (
				badSecret = `secret must be "whsec_" followed by the standard base64 of 24 to 64 random bytes; leave it out to have one generated`
				badSince  = "since must be an ISO-8601 date-time, e.g. 2026-11-01T00:00:00Z"
				badCursor = "cursor must be the nextCursor of a previous page"
				oneOfAuth = `expected value to be one of "none, apiKeyHeader, bearerToken"`
			)
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			cases := []struct {
				name   string
				route  string
				req    wireReq
				status int
				want   map[string]any
			}{
				{"invalid URL", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "not a url"}), 400, field(wireCommand, "url", "url must be absolute, starting with https://")},
				{"unparsable URL", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "http://[::1"}), 400, field(wireCommand, "url", "url is not a valid URL: missing ']' in host")},
				{"ftp URL", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "ftp://example.com/hook"}), 400, field(wireCommand, "url", "url must use http or https, not ftp")},
				{"URL with a password", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "https://user:pw@example.com/hook"}), 400,
					field(wireCommand, "url", "url must not contain a user name or password (user:pass@)")},
				{"URL with a fragment", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "https://example.com/hook#x"}), 400, field(wireCommand, "url", "url must not contain a fragment (#...)")},
				{"no URL", "POST /tenants/{orgId}/webhooks", create(map[string]any{"events": []string{"*"}}), 400, field(wireCommand, "url", "url is empty")},
				{"URL too long", "POST /tenants/{orgId}/webhooks", create(map[string]any{"url": "https://example.com/" + strings.Repeat("a", 2030)}), 400,
					field(wireCommand, "url", "url must be at most 2048 characters")},
				{"events * and more", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"events": []string{"*", "LockCreated"}}), 400,
					field(wireCommand, "events", `"*" matches every event and must be the only entry`)},
				{"events not PascalCase", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"events": []string{"lock.created"}}), 400,
					field(wireCommand, "events", `events must be ["*"] or PascalCase event types such as LockCreated; got "lock.created"`)},
				{"secret too short", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"secret": "whsec_abc"}), 400, field(wireCommand, "secret", badSecret)},
				{"secret without whsec_", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"secret": "hunter2hunter2hunter2hunter2hunter2"}), 400, field(wireCommand, "secret", badSecret)},
				{"secret too long", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"secret": "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65))}), 400,
					field(wireCommand, "secret", badSecret)},
				{"unknown authType", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "basic"}), 400, schema(wireCommand, "authType", oneOfAuth)},
				{"apiKeyHeader without authHeader", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "apiKeyHeader", "authValue": "v"}), 400,
					field(wireCommand, "authHeader", "authType apiKeyHeader needs authHeader, an HTTP header name such as X-Api-Key")},
				{"authHeader Authorization", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "apiKeyHeader", "authHeader": "authorization", "authValue": "v"}), 400,
					field(wireCommand, "authHeader", "authHeader cannot be Authorization")},
				{"authHeader webhook-signature", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "apiKeyHeader", "authHeader": "webhook-signature", "authValue": "v"}), 400,
					field(wireCommand, "authHeader", "authHeader cannot be Webhook-Signature")},
				{"bearerToken without authValue", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "bearerToken"}), 400,
					field(wireCommand, "authValue", "authType bearerToken needs authValue: the token, at most 1024 characters on one line")},
				{"bearerToken with authHeader", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authType": "bearerToken", "authHeader": "X-Token", "authValue": "v"}), 400,
					field(wireCommand, "authHeader", "authHeader is only for authType apiKeyHeader")},
				{"authValue without authType", "POST /tenants/{orgId}/webhooks", withURL(map[string]any{"authValue": "v"}), 400,
					field(wireCommand, "authValue", "authValue is only for authType apiKeyHeader or bearerToken")},
				{"not JSON", "POST /tenants/{orgId}/webhooks", create("not json"), 400, schema(wireCommand, "", "invalid character 'o' in literal null (expecting 'u')")},
				{"unknown tenant", "POST /tenants/{orgId}/webhooks", wireReq{Method: "POST", Path: "/tenants/ghost/webhooks", Header: hookAdmin, Body: map[string]any{"url": rcv.URL + "/x"}}, 404,
					wireErr(wireCommand, 404, "Tenant not registered")},
				{"list of an unknown tenant", "GET /tenants/{orgId}/webhooks", wireReq{Method: "GET", Path: "/tenants/ghost/webhooks", Header: hookAdmin}, 404, wireErr(wirePlain, 404, "Tenant not registered")},
				{"list limit 0", "GET /tenants/{orgId}/webhooks", wireReq{Method: "GET", Path: "/tenants/acme/webhooks?limit=0", Header: hookAdmin}, 400, schema(wirePlain, "limit", "expected number >= 1")},
				{"list limit 101", "GET /tenants/{orgId}/webhooks", wireReq{Method: "GET", Path: "/tenants/acme/webhooks?limit=101", Header: hookAdmin}, 400, schema(wirePlain, "limit", "expected number <= 100")},
				{"list offset -1", "GET /tenants/{orgId}/webhooks", wireReq{Method: "GET", Path: "/tenants/acme/webhooks?offset=-1", Header: hookAdmin}, 400, schema(wirePlain, "offset", "expected number >= 0")},
				{"webhook under another tenant", "GET /tenants/{orgId}/webhooks/{webhookId}", wireReq{Method: "GET", Path: "/tenants/beta/webhooks/" + id, Header: hookAdmin}, 404,
					wireErr(wirePlain, 404, "Webhook not found")},
				{"PUT nothing", "PUT /tenants/{orgId}/webhooks/{webhookId}", put(map[string]any{}), 400, wireErr(wireCommand, 400, "Give at least one of url, events, secret, authType")},
				{"PUT empty events", "PUT /tenants/{orgId}/webhooks/{webhookId}", put(map[string]any{"events": []string{}}), 400,
					field(wireCommand, "events", `events cannot be empty; use ["*"] for every event`)},
				{"PUT authValue alone", "PUT /tenants/{orgId}/webhooks/{webhookId}", put(map[string]any{"authValue": "v"}), 400,
					field(wireCommand, "authType", "authHeader and authValue change together with authType")},
				{"PUT ftp URL", "PUT /tenants/{orgId}/webhooks/{webhookId}", put(map[string]any{"url": "ftp://example.com/hook"}), 400, field(wireCommand, "url", "url must use http or https, not ftp")},
				{"PUT bad secret", "PUT /tenants/{orgId}/webhooks/{webhookId}", put(map[string]any{"secret": "whsec_abc"}), 400, field(wireCommand, "secret", badSecret)},
				{"PUT unknown webhook", "PUT /tenants/{orgId}/webhooks/{webhookId}", wireReq{Method: "PUT", Path: "/tenants/acme/webhooks/" + app.NewUUID(), Header: hookAdmin, Body: map[string]any{"events": []string{"*"}}}, 404,
					wireErr(wireCommand, 404, "Webhook not found")},
				{"PUT under another tenant", "PUT /tenants/{orgId}/webhooks/{webhookId}", wireReq{Method: "PUT", Path: "/tenants/beta/webhooks/" + id, Header: hookAdmin, Body: map[string]any{"events": []string{"*"}}}, 404,
					wireErr(wireCommand, 404, "Webhook not found")},
				{"DELETE under another tenant", "DELETE /tenants/{orgId}/webhooks/{webhookId}", wireReq{Method: "DELETE", Path: "/tenants/beta/webhooks/" + id, Header: hookAdmin}, 404,
					wireErr(wireCommand, 404, "Webhook not found")},
				{"PATCH empty url", "PATCH /webhooks/{webhookId}", mine("PATCH", "", map[string]any{"url": ""}), 400, schema(wireCommand, "url", "expected length >= 1")},
				{"PATCH blank url", "PATCH /webhooks/{webhookId}", mine("PATCH", "", map[string]any{"url": "  "}), 400, field(wireCommand, "url", "url is required")},
				{"PATCH without url", "PATCH /webhooks/{webhookId}", mine("PATCH", "", map[string]any{}), 400, wireErr(wireCommand, 400, "Invalid request: url is required", [2]string{"url", "url is required"})},
				{"PATCH ftp url", "PATCH /webhooks/{webhookId}", mine("PATCH", "", map[string]any{"url": "ftp://example.com/hook"}), 400, field(wireCommand, "url", "url must use http or https, not ftp")},
				{"replay bad since", "POST /webhooks/{webhookId}/replay", mine("POST", "/replay", map[string]any{"since": "yesterday"}), 400, field(wirePlain, "since", badSince)},
				{"replay date without time", "POST /webhooks/{webhookId}/replay", mine("POST", "/replay", map[string]any{"since": "2026-01-01"}), 400, field(wirePlain, "since", badSince)},
				{"replay future since", "POST /webhooks/{webhookId}/replay", mine("POST", "/replay", map[string]any{"since": future}), 400, field(wirePlain, "since", "since must not be in the future")},
				{"replay without since", "POST /webhooks/{webhookId}/replay", mine("POST", "/replay", map[string]any{}), 400, wireErr(wirePlain, 400, "Invalid request: since is required", [2]string{"since", "since is required"})},
				{"admin replay future since", "POST /tenants/{orgId}/webhooks/{webhookId}/replay",
					wireReq{Method: "POST", Path: "/tenants/acme/webhooks/" + id + "/replay", Header: hookAdmin, Body: map[string]any{"since": future}}, 400,
					field(wirePlain, "since", "since must not be in the future")},
				{"cursor not a number", "GET /webhooks/{webhookId}/deliveries", mine("GET", "/deliveries?cursor=abc", nil), 400, field(wirePlain, "cursor", badCursor)},
				{"cursor 0", "GET /webhooks/{webhookId}/deliveries", mine("GET", "/deliveries?cursor=0", nil), 400, field(wirePlain, "cursor", badCursor)},
				{"cursor negative", "GET /tenants/{orgId}/webhooks/{webhookId}/deliveries",
					wireReq{Method: "GET", Path: "/tenants/acme/webhooks/" + id + "/deliveries?cursor=-5", Header: hookAdmin}, 400, field(wirePlain, "cursor", badCursor)},
				{"unknown delivery status", "GET /webhooks/{webhookId}/deliveries", mine("GET", "/deliveries?status=bogus", nil), 400,
					schema(wirePlain, "status", `expected value to be one of "pending, delivered, failed, skipped"`)},
				{"unknown delivery", "POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", mine("POST", "/deliveries/99999/redeliver", nil), 404, wireErr(wirePlain, 404, "Delivery not found")},
				{"delivery id not a number", "POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", mine("POST", "/deliveries/abc/redeliver", nil), 400,
					field(wirePlain, "deliveryId", badIDMsg("deliveryId"))},
				{"verify unknown webhook", "POST /webhooks/{webhookId}/verify", wireReq{Method: "POST", Path: "/webhooks/" + app.NewUUID() + "/verify", Key: key}, 404,
					wireErr(wirePlain, 404, "Webhook not found")},
			}
			orgs := []string{"acme", "beta"}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					hookRefused(t, srv, rcv, orgs, c.req, c.status, c.want)
					doc.valid(t, c.route, c.status, wireDo(t, srv, c.req).Raw)
				})
			}

			// At most 20 webhooks per tenant: the 21st is a conflict.
			for n := 2; n <= 20; n++ {
				wireOK(t, srv, create(map[string]any{"url": fmt.Sprintf("%s/n%d", rcv.URL, n)}), http.StatusCreated)
			}
			hookRefused(t, srv, rcv, orgs, create(map[string]any{"url": rcv.URL + "/n21"}), http.StatusConflict,
				wireErr(wireCommand, http.StatusConflict, "A tenant can have at most 20 webhooks"))
			if got := wireOK(t, srv, wireReq{Method: "GET", Path: "/tenants/acme/webhooks", Header: hookAdmin}, http.StatusOK); got["total"] != float64(20) {
				t.Errorf("total after the refused 21st: %v", got["total"])
			}
		})
	}
}

// TestWebhookURLPolicy: with the strict outbound policy (the default of
// `spkey serve`) only https to public addresses is accepted, for the
// admin's create and update and the partner's own URL change alike; a
// name that does not resolve is refused without the resolver's details.
func TestWebhookURLPolicy(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			resolver := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("resolver 10.9.8.7:53 unreachable")
			}}
			// Deliveries time out before they dial: the public address of
			// the accepted webhook below is never contacted.
			srv := testenv.NewServer(t, b, testenv.Options{Safety: &netsafe.Policy{Resolver: resolver}, Webhooks: webhook.Config{Timeout: time.Nanosecond}})
			key := srv.Tenant(t, "acme", false)
			const public = "https://93.184.216.34/hook"
			id, _ := wireOK(t, srv, wireReq{Method: "POST", Path: "/tenants/acme/webhooks", Header: hookAdmin, Body: map[string]any{"url": public}}, http.StatusCreated)["webhookId"].(string)
			hookSettle(t, srv)
			// Its verification got no answer: pending, with the reason.
			got := wireOK(t, srv, wireReq{Method: "GET", Path: "/webhooks/" + id, Key: key}, http.StatusOK)
			if got["status"] != "pending" || got["lastError"] == nil || got["verifiedAt"] != nil {
				t.Errorf("webhook whose verification timed out: %v", got)
			}

			private := " (the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"
			for _, c := range []struct{ url, msg string }{
				{"http://93.184.216.34/hook", "url must use https (the operator can allow http with SPKEY_WEBHOOK_ALLOW_HTTP=true)"},
				{"ftp://93.184.216.34/hook", "url must use https, not ftp"},
				{"https://10.1.2.3/hook", "url host 10.1.2.3 is a private address" + private},
				{"https://127.0.0.1:8080/hook", "url host 127.0.0.1 is a loopback address" + private},
				{"https://169.254.169.254/latest/meta-data", "url host 169.254.169.254 is a link-local address" + private},
				{"https://[::1]/hook", "url host ::1 is a loopback address" + private},
				{"https://hooks.partner.test/hook", "url host hooks.partner.test could not be resolved"},
			} {
				t.Run(c.url, func(t *testing.T) {
					want := wireErr(wireCommand, http.StatusBadRequest, c.msg, [2]string{"url", c.msg})
					for _, r := range []wireReq{
						{Method: "POST", Path: "/tenants/acme/webhooks", Header: hookAdmin, Body: map[string]any{"url": c.url}},
						{Method: "PUT", Path: "/tenants/acme/webhooks/" + id, Header: hookAdmin, Body: map[string]any{"url": c.url}},
						{Method: "PATCH", Path: "/webhooks/" + id, Key: key, Body: map[string]any{"url": c.url}},
					} {
						before := wireSnapshot(t, srv)
						resp := wireDo(t, srv, r)
						if resp.Status != http.StatusBadRequest {
							t.Errorf("%s %s: status %d; body %s", r.Method, r.Path, resp.Status, resp.Raw)
						}
						if diff := cmp.Diff(any(want), resp.JSON); diff != "" {
							t.Errorf("%s %s (-want +got):\n%s", r.Method, r.Path, diff)
						}
						wireUnchanged(t, srv, before)
					}
				})
			}
		})
	}
}

// TestWebhookIdempotentCreate: a create retried with its Idempotency-Key
// gets the first answer (the same webhook) without the secret and creates
// nothing, also after the secret was rotated; the key with another body
// is refused.
func TestWebhookIdempotentCreate(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newHookReceiver(t)
			srv := testenv.NewServer(t, b, testenv.Options{})
			srv.Tenant(t, "acme", false)
			srv.Tenant(t, "beta", false)
			req := func(org, path string) wireReq {
				return wireReq{Method: "POST", Path: "/tenants/" + org + "/webhooks", Body: map[string]any{"url": rcv.URL + path},
					Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey, "Idempotency-Key": "create-1"}}
			}
			first := wireDo(t, srv, req("acme", "/idem"))
			if first.Status != http.StatusCreated || first.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("first create: %d Idempotent-Replayed=%q %s", first.Status, first.Header.Get("Idempotent-Replayed"), first.Raw)
			}
			hookSettle(t, srv)
			before := hookSnapshot(t, srv, rcv, "acme", "beta")
			again := wireDo(t, srv, req("acme", "/idem"))
			if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("retry: %d Idempotent-Replayed=%q", again.Status, again.Header.Get("Idempotent-Replayed"))
			}
			// The first answer without its secret: the record keeps none
			// (GET …/secret reads it).
			want := first.Obj(t)
			secret, _ := want["secret"].(string)
			if !strings.HasPrefix(secret, "whsec_") {
				t.Fatalf("first create answered no secret: %s", first.Raw)
			}
			delete(want, "secret")
			if diff := cmp.Diff(want, again.JSON); diff != "" {
				t.Errorf("retry's answer (-first without its secret +retry):\n%s", diff)
			}
			hookSettle(t, srv)
			hookUnchanged(t, srv, rcv, before, "acme", "beta")
			// After a rotation the key's replay reveals no secret, old or new.
			id, _ := want["webhookId"].(string)
			wireOK(t, srv, wireReq{Method: "PUT", Path: "/tenants/acme/webhooks/" + id, Body: map[string]any{"rotateSecret": true},
				Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}, http.StatusOK)
			hookSettle(t, srv)
			rotated := wireDo(t, srv, req("acme", "/idem"))
			if rotated.Status != http.StatusCreated || rotated.Header.Get("Idempotent-Replayed") != "true" || strings.Contains(string(rotated.Raw), "whsec_") {
				t.Errorf("replay after a rotation: %d %s, want the first answer with no secret", rotated.Status, rotated.Raw)
			}
			if n := len(rcv.received("/idem")); n != 1 {
				t.Errorf("%d verification requests, want 1", n)
			}
			// The same key with another body: refused, nothing created.
			hookRefused(t, srv, rcv, []string{"acme", "beta"}, req("acme", "/other"), http.StatusUnprocessableEntity,
				wireErr(wireCommand, http.StatusUnprocessableEntity, "Idempotency-Key was already used with a different request body"))
			// The same key for another tenant is another request.
			other := wireOK(t, srv, req("beta", "/idem"), http.StatusCreated)
			if other["aggregateId"] != "beta" || other["webhookId"] == first.Obj(t)["webhookId"] {
				t.Errorf("beta's create with the same key: %v", other)
			}
		})
	}
}

// TestWebhookOpenAPI: /openapi.json lists every webhook route with its
// security, success status, answer and body schemas.
func TestWebhookOpenAPI(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	var doc struct {
		Paths map[string]map[string]struct {
			Security    []map[string][]string `json:"security"`
			Tags        []string              `json:"tags"`
			RequestBody *struct {
				Content map[string]struct {
					Schema map[string]any `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema map[string]any `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(wireDo(t, srv, wireReq{Method: "GET", Path: "/openapi.json"}).Raw, &doc); err != nil {
		t.Fatal(err)
	}
	admin := []map[string][]string{{"AdminApiKey": {}, "BearerAuth": {}}}
	partner := []map[string][]string{{"ApiKeyAuth": {}}}
	const ref = "#/components/schemas/"
	for _, c := range []struct {
		route        string
		security     []map[string][]string
		status       string
		answer, body string
		command      bool
	}{
		{"POST /tenants/{orgId}/webhooks", admin, "201", "WebhookCommandOutputWebhookCreatedBody", "WebhookBody", true},
		{"GET /tenants/{orgId}/webhooks", admin, "200", "WebhooksOutputBody", "", false},
		{"GET /tenants/{orgId}/webhooks/{webhookId}", admin, "200", "WebhookItem", "", false},
		{"PUT /tenants/{orgId}/webhooks/{webhookId}", admin, "200", "WebhookCommandOutputWebhookUpdatedBody", "WebhookBody", true},
		{"DELETE /tenants/{orgId}/webhooks/{webhookId}", admin, "200", "WebhookCommandOutputWebhookDeletedBody", "", true},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/verify", admin, "202", "WebhookItem", "", false},
		{"GET /tenants/{orgId}/webhooks/{webhookId}/secret", admin, "200", "SecretOutputBody", "", false},
		{"GET /tenants/{orgId}/webhooks/{webhookId}/deliveries", admin, "200", "DeliveriesOutputBody", "", false},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", admin, "202", "DeliveryItem", "", false},
		{"POST /tenants/{orgId}/webhooks/{webhookId}/replay", admin, "202", "ReplayOutputBody", "ReplayBody", false},
		{"GET /webhooks", partner, "200", "WebhooksOutputBody", "", false},
		{"GET /webhooks/{webhookId}", partner, "200", "WebhookItem", "", false},
		{"PATCH /webhooks/{webhookId}", partner, "200", "WebhookCommandOutputWebhookUpdatedBody", "PatchWebhookInputBody", true},
		{"POST /webhooks/{webhookId}/verify", partner, "202", "WebhookItem", "", false},
		{"GET /webhooks/{webhookId}/secret", partner, "200", "SecretOutputBody", "", false},
		{"GET /webhooks/{webhookId}/deliveries", partner, "200", "DeliveriesOutputBody", "", false},
		{"POST /webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", partner, "202", "DeliveryItem", "", false},
		{"POST /webhooks/{webhookId}/replay", partner, "202", "ReplayOutputBody", "ReplayBody", false},
		{"POST /api-keys/rotate", partner, "201", "IssuedKeyOutputBody", "", false},
	} {
		method, path, _ := strings.Cut(c.route, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is not in /openapi.json", c.route)
			continue
		}
		if diff := cmp.Diff(c.security, op.Security); diff != "" {
			t.Errorf("%s: security (-want +got):\n%s", c.route, diff)
		}
		if got := op.Responses[c.status].Content["application/json"].Schema["$ref"]; got != ref+c.answer {
			t.Errorf("%s: %s answer schema %v, want %s", c.route, c.status, got, c.answer)
		}
		if got := op.Responses["default"].Content["application/json"].Schema["$ref"]; got != ref+"APIError" {
			t.Errorf("%s: error schema %v", c.route, got)
		}
		var body any
		if op.RequestBody != nil {
			body = op.RequestBody.Content["application/json"].Schema["$ref"]
		}
		if want := any(nil); c.body != "" {
			want = ref + c.body
			if body != want {
				t.Errorf("%s: body schema %v, want %v", c.route, body, want)
			}
		} else if body != nil {
			t.Errorf("%s: body schema %v, want none", c.route, body)
		}
		if slices.Contains(op.Tags, "Command") != c.command {
			t.Errorf("%s: tags %v (a command's errors carry success:false)", c.route, op.Tags)
		}
	}
}
