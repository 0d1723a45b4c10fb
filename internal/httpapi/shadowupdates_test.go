package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// Partner Shadow Updates end to end: a real server with its MQTT broker, a
// paho client as the lock's device, and partners' webhook receivers on
// loopback.

const shadowUpdateSchemas = "../../../shared/upstream/eventbridge-schemas.yaml"

// shadowUpdateSchema compiles upstream's WebhookEvent envelope with its
// detail held to ShadowUpdate. Upstream's ShadowUpdate types desiredState
// as an object "serialized as string in raw event": the delivery is the
// raw event, so it is held to a string like the three other states.
func shadowUpdateSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile(shadowUpdateSchemas)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("upstream schema %s is absent", shadowUpdateSchemas)
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", shadowUpdateSchemas, err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	schemas["WebhookEvent"].(map[string]any)["properties"].(map[string]any)["detail"] = map[string]any{"$ref": "#/components/schemas/ShadowUpdate"}
	props := schemas["ShadowUpdate"].(map[string]any)["properties"].(map[string]any)
	if _, ok := props["desiredState"]; !ok {
		t.Fatal("upstream ShadowUpdate has no desiredState")
	}
	props["desiredState"] = map[string]any{"type": "string"}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("eventbridge.json", parsed); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("eventbridge.json#/components/schemas/WebhookEvent")
	if err != nil {
		t.Fatalf("compile upstream WebhookEvent/ShadowUpdate: %v", err)
	}
	return sch
}

// shadowDevice is a lock's device: a paho client logged in with the
// lock's password, that waits for the gateway's answers.
type shadowDevice struct {
	thing  string
	c      paho.Client
	answer chan string // "accepted" or "rejected", per update answered
}

func newShadowDevice(t *testing.T, srv *testenv.Server, key string, id int64) *shadowDevice {
	t.Helper()
	api := &sim.API{Base: srv.URL, Key: key}
	ctx := context.Background()
	if created, err := api.EnsureLock(ctx, id); err != nil || !created {
		t.Fatalf("create lock %d: created %v, %v", id, created, err)
	}
	creds, err := api.Credentials(ctx, id, "password")
	if err != nil {
		t.Fatal(err)
	}
	d := &shadowDevice{thing: creds.ThingName, answer: make(chan string, 16)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID(creds.ThingName).SetUsername(creds.Username).
		SetPassword(creds.Password).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(deviceWait).SetProtocolVersion(4)
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", creds.ThingName, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	for _, res := range []string{"accepted", "rejected"} {
		for _, tp := range []string{"$aws/things/" + d.thing + "/shadow/update/" + res, "$aws/things/" + d.thing + "/shadow/name/+/update/" + res} {
			if tok := d.c.Subscribe(tp, 1, func(_ paho.Client, _ paho.Message) { d.answer <- res }); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
				t.Fatalf("subscribe %s: %v", tp, tok.Error())
			}
		}
	}
	return d
}

// update publishes body to shadow name ("": classic) and returns the
// gateway's answer.
func (d *shadowDevice) update(t *testing.T, name, body string) string {
	t.Helper()
	topic := "$aws/things/" + d.thing + "/shadow/update"
	if name != "" {
		topic = "$aws/things/" + d.thing + "/shadow/name/" + name + "/update"
	}
	if tok := d.c.Publish(topic, 1, false, body); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
	select {
	case a := <-d.answer:
		return a
	case <-time.After(deviceWait):
		t.Fatalf("no answer to %s within %v", topic, deviceWait)
	}
	return ""
}

// shadowUpdates returns what rcv got at path with detail-type "Shadow
// Update", oldest first.
func shadowUpdates(rcv *hookReceiver, path string) []hookRequest {
	var out []hookRequest
	for _, r := range rcv.received(path) {
		if r.Body["detail-type"] == "Shadow Update" {
			out = append(out, r)
		}
	}
	return out
}

// waitShadowUpdates waits until rcv got n Shadow Updates at path.
func waitShadowUpdates(t *testing.T, rcv *hookReceiver, path string, n int) []hookRequest {
	t.Helper()
	deadline := time.Now().Add(deviceWait)
	for {
		got := shadowUpdates(rcv, path)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d Shadow Updates within %v, want %d", path, len(got), deviceWait, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedShadow is the stored shadow name of thing, as JSON.
func storedShadow(t *testing.T, srv *testenv.Server, thing, name string) map[string]any {
	t.Helper()
	raw, found, err := srv.Store.Shadow(context.Background(), thing, name)
	if err != nil || !found {
		t.Fatalf("shadow %s/%q: found %v, %v", thing, name, found, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkShadowUpdate holds one delivered Shadow Update to upstream's shape
// (schema), its exact fields, its signature, and its states to the stored
// shadow; it returns the parsed deltaState.
func checkShadowUpdate(t *testing.T, sch *jsonschema.Schema, srv *testenv.Server, r hookRequest, secret, org, thing, name string) map[string]any {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("Shadow Update does not fit upstream's WebhookEvent/ShadowUpdate: %v\n%s", err, r.Raw)
	}
	if !r.SignedBy(t, secret) {
		t.Errorf("Shadow Update not signed with the webhook's secret: %v", r.Header)
	}
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	if diff := cmp.Diff([]string{"account", "detail", "detail-type", "id", "region", "resources", "source", "time", "version"}, keys(r.Body)); diff != "" {
		t.Errorf("envelope fields (-want +got):\n%s", diff)
	}
	if r.Body["source"] != "spk.iot.shadow" || r.Body["version"] != "0" || r.Body["id"] != r.Header.Get("webhook-id") {
		t.Errorf("envelope %s: want source spk.iot.shadow, version \"0\", id = webhook-id %q", r.Raw, r.Header.Get("webhook-id"))
	}
	if res, _ := r.Body["resources"].([]any); res == nil || len(res) != 0 {
		t.Errorf("resources %v, want []", r.Body["resources"])
	}
	detail, _ := r.Body["detail"].(map[string]any)
	want := []string{"deltaState", "desiredState", "metadata", "partnerId", "reportedState", "thingName", "version"}
	if name != "" {
		want = append(want, "shadowName")
		sort.Strings(want)
	}
	if diff := cmp.Diff(want, keys(detail)); diff != "" {
		t.Errorf("detail fields (-want +got):\n%s", diff)
	}
	if detail["partnerId"] != org || detail["thingName"] != thing || (name != "" && detail["shadowName"] != name) {
		t.Errorf("detail %v: want partnerId %s, thingName %s, shadowName %q", detail, org, thing, name)
	}
	parse := func(field string) map[string]any {
		s, ok := detail[field].(string)
		if !ok {
			t.Fatalf("detail.%s is %T, want a JSON string", field, detail[field])
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("detail.%s %q: %v", field, s, err)
		}
		return m
	}
	stored := storedShadow(t, srv, thing, name)
	orEmpty := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		return m
	}
	if detail["version"] != stored["version"] {
		t.Errorf("detail.version %v, stored shadow's %v", detail["version"], stored["version"])
	}
	if diff := cmp.Diff(orEmpty(stored["reported"]), parse("reportedState")); diff != "" {
		t.Errorf("reportedState vs the stored reported section (-stored +sent):\n%s", diff)
	}
	if diff := cmp.Diff(orEmpty(stored["desired"]), parse("desiredState")); diff != "" {
		t.Errorf("desiredState vs the stored desired section (-stored +sent):\n%s", diff)
	}
	if diff := cmp.Diff(orEmpty(stored["metadata"]), parse("metadata")); diff != "" {
		t.Errorf("metadata vs the stored metadata (-stored +sent):\n%s", diff)
	}
	return parse("deltaState")
}

// TestShadowUpdateWebhook: a lock's device updates reach its tenant's
// webhook subscribed to "Shadow Update" as upstream's Shadow Update; a
// tenant subscribed to other events gets none; another tenant never gets
// one; a refused update, a get and spkey's own commands send nothing.
func TestShadowUpdateWebhook(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		sch := shadowUpdateSchema(t)
		rcv := newHookReceiver(t)
		srv := testenv.NewServer(t, b, testenv.Options{Devices: true})
		keyA, keyB, keyC := srv.Tenant(t, "org-a", false), srv.Tenant(t, "org-b", false), srv.Tenant(t, "org-c", false)
		hook := func(org, path string, events []string) (id, secret string) {
			created := wireOK(t, srv, wireReq{Method: "POST", Path: "/tenants/" + org + "/webhooks", Header: hookAdmin,
				Body: map[string]any{"url": rcv.URL + path, "events": events}}, http.StatusCreated)
			id, _ = created["webhookId"].(string)
			secret, _ = created["secret"].(string)
			return id, secret
		}
		hookA, secretA := hook("org-a", "/a", []string{"Shadow Update"})
		hook("org-b", "/b", []string{"*"})
		hook("org-c", "/c", []string{"OrganizationSet"})
		hookSettle(t, srv)

		devA := newShadowDevice(t, srv, keyA, 1001)
		devB := newShadowDevice(t, srv, keyB, 1002)
		devC := newShadowDevice(t, srv, keyC, 1003)
		thing := devA.thing

		// In sync: a report alone.
		if a := devA.update(t, "", `{"state":{"reported":{"layout":1,"lock":"locked"}}}`); a != "accepted" {
			t.Fatalf("first report: %s", a)
		}
		got := waitShadowUpdates(t, rcv, "/a", 1)
		if delta := checkShadowUpdate(t, sch, srv, got[0], secretA, "org-a", thing, ""); len(delta) != 0 || got[0].Body["detail"].(map[string]any)["deltaState"] != "{}" {
			t.Errorf("deltaState of a shadow in sync: %v, want \"{}\"", got[0].Body["detail"].(map[string]any)["deltaState"])
		}

		// Out of sync: the delta is the difference.
		if a := devA.update(t, "", `{"state":{"desired":{"lock":"unlocked"}}}`); a != "accepted" {
			t.Fatalf("desired update: %s", a)
		}
		got = waitShadowUpdates(t, rcv, "/a", 2)
		if diff := cmp.Diff(map[string]any{"lock": "unlocked"}, checkShadowUpdate(t, sch, srv, got[1], secretA, "org-a", thing, "")); diff != "" {
			t.Errorf("deltaState out of sync (-want +got):\n%s", diff)
		}
		if got[0].Body["id"] == got[1].Body["id"] {
			t.Errorf("two updates share the id %v", got[0].Body["id"])
		}
		// The delivery log names them as sent.
		hookSettle(t, srv)
		log := wireOK(t, srv, wireReq{Method: "GET", Path: "/tenants/org-a/webhooks/" + hookA + "/deliveries", Header: hookAdmin}, http.StatusOK)
		var logged []string
		for _, d := range log["deliveries"].([]any) {
			m := d.(map[string]any)
			logged = append(logged, fmt.Sprintf("%v %v %v", m["eventType"], m["eventId"], m["status"]))
		}
		for _, r := range got {
			if want := fmt.Sprintf("Shadow Update %v delivered", r.Body["id"]); !slices.Contains(logged, want) {
				t.Errorf("delivery log %v lacks %q", logged, want)
			}
		}

		// A key page: its name is on the detail.
		if a := devA.update(t, "keys-07", `{"state":{"reported":{"layout":1}}}`); a != "accepted" {
			t.Fatalf("key page report: %s", a)
		}
		got = waitShadowUpdates(t, rcv, "/a", 3)
		checkShadowUpdate(t, sch, srv, got[2], secretA, "org-a", thing, "keys-07")

		// Refused updates send nothing and change nothing.
		before := storedShadow(t, srv, thing, "")
		for _, bad := range []string{`{"state":{"reported":{"layout":2}}}`, `{"state":`, `{"state":{"reported":{"layout":1}},"version":1}`} {
			if a := devA.update(t, "", bad); a != "rejected" {
				t.Fatalf("update %s: %s, want rejected", bad, a)
			}
		}
		// Nor do an update of a named shadow that is not the lock's (not a
		// key page), nor a command's desired state.
		if a := devA.update(t, "other", `{"state":{"reported":{"x":1}}}`); a != "accepted" {
			t.Fatalf("other shadow: %s", a)
		}
		wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/1001/OpenLock", Key: keyA, Body: map[string]any{}}, http.StatusOK)
		hookSettle(t, srv)
		if n := len(shadowUpdates(rcv, "/a")); n != 3 {
			t.Errorf("org-a got %d Shadow Updates after refused updates, another shadow and a command, want 3", n)
		}
		// The command did write the shadow (its desired open request).
		if after := storedShadow(t, srv, thing, ""); after["version"] == before["version"] {
			t.Errorf("the command left the shadow's version at %v", before["version"])
		}

		// org-b ("*") gets its own lock's updates only; org-c (other
		// events) gets its events but no Shadow Update.
		if a := devB.update(t, "", `{"state":{"reported":{"layout":1}}}`); a != "accepted" {
			t.Fatalf("org-b report: %s", a)
		}
		if a := devC.update(t, "", `{"state":{"reported":{"layout":1}}}`); a != "accepted" {
			t.Fatalf("org-c report: %s", a)
		}
		gotB := waitShadowUpdates(t, rcv, "/b", 1)
		hookSettle(t, srv)
		for _, r := range shadowUpdates(rcv, "/b") {
			if d := r.Body["detail"].(map[string]any); d["thingName"] != devB.thing || d["partnerId"] != "org-b" {
				t.Errorf("org-b got a Shadow Update of %v for %v", d["thingName"], d["partnerId"])
			}
		}
		if len(shadowUpdates(rcv, "/b")) != 1 || len(gotB) != 1 {
			t.Errorf("org-b got %d Shadow Updates, want 1", len(shadowUpdates(rcv, "/b")))
		}
		if n := len(shadowUpdates(rcv, "/c")); n != 0 {
			t.Errorf("org-c (subscribed to OrganizationSet) got %d Shadow Updates", n)
		}
		var types []string
		for _, r := range rcv.received("/c") {
			types = append(types, fmt.Sprint(r.Body["detail-type"]))
		}
		if !slices.Contains(types, "OrganizationSet") {
			t.Errorf("org-c got %v, want its OrganizationSet", types)
		}
		if n := len(shadowUpdates(rcv, "/a")); n != 3 {
			t.Errorf("org-a got %d Shadow Updates after the other tenants' updates, want 3", n)
		}
	})
}
