package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/spkey-dev/spkey/internal/domain/hub"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const (
	hubA = "4a1b2c3d-0000-4e5f-8a9b-0c1d2e3f4a01"
	hubB = "4a1b2c3d-0000-4e5f-8a9b-0c1d2e3f4a02"
	hubX = "4a1b2c3d-0000-4e5f-8a9b-0c1d2e3f4aff" // never provisioned
	hubU = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a" // a user id
)

// hubEnv is a device fixture (deviceFixture: org-a, org-b, super org-s)
// whose answers are checked against upstream's response schemas.
type hubEnv struct {
	*deviceFixture
	schemas *jsonschema.Compiler
	doc     openapiDoc
	// validated lists "METHOD op status" of the answers checked against
	// upstream's schemas.
	validated map[string]bool
}

func newHubEnv(t *testing.T, b testenv.Backend) *hubEnv {
	t.Helper()
	e := &hubEnv{deviceFixture: newDeviceFixture(t, b, true)}
	doc, res := openapiLoadUpstream(t)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(openapiUpstreamURL, res); err != nil {
		t.Fatalf("load upstream document: %v", err)
	}
	e.schemas, e.doc, e.validated = c, doc, map[string]bool{}
	return e
}

// call sends r, requires status and, when upstream documents that status
// of the route with a body, validates the answer against its schema.
func (e *hubEnv) call(t *testing.T, r wireReq, status int) map[string]any {
	t.Helper()
	resp := wireDo(t, e.srv, r)
	if resp.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Method, r.Path, resp.Status, status, resp.Raw)
	}
	e.validate(t, r, resp)
	m, _ := resp.JSON.(map[string]any)
	return m
}

func (e *hubEnv) validate(t *testing.T, r wireReq, resp wireResp) {
	t.Helper()
	path := r.Path
	if i := strings.Index(path, "?"); i >= 0 {
		path = path[:i]
	}
	parts := strings.Split(path, "/") // "", "hubs", id, op...
	if len(parts) < 4 || parts[1] != "hubs" {
		return
	}
	op := "/hubs/{id}/" + strings.Join(parts[3:], "/")
	var up struct {
		Responses map[string]struct {
			Content json.RawMessage `json:"content"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(e.doc.Paths[op][strings.ToLower(r.Method)], &up); err != nil || up.Responses[strconv.Itoa(resp.Status)].Content == nil {
		return // not upstream's, or a status upstream documents without a body (or not at all)
	}
	sch, err := e.schemas.Compile(openapiUpstreamURL + openapiPointer(r.Method, op, resp.Status))
	if err != nil {
		t.Fatalf("compile upstream schema: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(resp.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s %s: answer %s does not match upstream's %d schema: %v", r.Method, op, resp.Raw, resp.Status, err)
	}
	e.validated[r.Method+" "+op+" "+strconv.Itoa(resp.Status)] = true
}

// requireValidated fails unless every upstream-documented status in want
// was produced and validated.
func (e *hubEnv) requireValidated(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !e.validated[w] {
			t.Errorf("no answer %s was validated against upstream's schema", w)
		}
	}
}

func hubReq(key, id, op string, body map[string]any) wireReq {
	if body != nil {
		if _, has := body["hubId"]; !has {
			body["hubId"] = id
		}
	}
	m := "POST"
	if op == "status" {
		m = "GET"
	}
	return wireReq{Method: m, Path: "/hubs/" + id + "/" + op, Key: key, Body: body}
}

// hubEvents counts the stored hub events.
func hubEvents(t *testing.T, e *hubEnv) int64 {
	t.Helper()
	ctx := context.Background()
	snaps, err := e.srv.Store.Snapshots(ctx, hub.AggregateType)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range snaps {
		l, err := e.srv.Store.StreamLen(ctx, hub.AggregateType, s.AggregateID)
		if err != nil {
			t.Fatal(err)
		}
		n += l
	}
	return n
}

// hubShadow is the stored classic shadow document of thing ("" if none).
func hubShadow(t *testing.T, e *hubEnv, thing string) string {
	t.Helper()
	doc, _, err := e.srv.Store.Shadow(context.Background(), thing, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// hubDevice is a paho client connected as a hub's thing, recording the
// deltas of its classic shadow.
type hubDevice struct {
	c      paho.Client
	thing  string
	mu     sync.Mutex
	deltas []map[string]any
}

func connectHub(t *testing.T, e *hubEnv, thing, password string) *hubDevice {
	t.Helper()
	d := &hubDevice{thing: thing}
	opts := paho.NewClientOptions().AddBroker("tcp://" + e.srv.MQTTAddr).SetClientID(thing).SetUsername(thing).SetPassword(password).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(deviceWait).SetProtocolVersion(4)
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	tok := d.c.Subscribe("$aws/things/"+thing+"/shadow/update/delta", 1, func(_ paho.Client, m paho.Message) {
		var v map[string]any
		if json.Unmarshal(m.Payload(), &v) == nil {
			d.mu.Lock()
			d.deltas = append(d.deltas, v)
			d.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return d
}

// command waits for the delta carrying command requestID and returns it.
func (d *hubDevice) command(t *testing.T, requestID string) map[string]any {
	t.Helper()
	var got map[string]any
	waitPresence(t, "delta of command "+requestID, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, v := range d.deltas {
			st, _ := v["state"].(map[string]any)
			cmds, _ := st["commands"].(map[string]any)
			if c, ok := cmds[requestID].(map[string]any); ok {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

func (d *hubDevice) report(t *testing.T, reported map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}})
	if tok := d.c.Publish("$aws/things/"+d.thing+"/shadow/update", 1, false, b); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("report: %v", tok.Error())
	}
}

// online provisions nothing: it issues password credentials for hub id
// (with key) and connects a device as its thing, waiting until status
// says it is online.
func (e *hubEnv) online(t *testing.T, key, id, thing string) *hubDevice {
	t.Helper()
	cred := e.call(t, wireReq{Method: "POST", Path: "/hubs/" + id + "/device/credentials", Key: key, Body: map[string]any{"kind": "password"}}, http.StatusCreated)
	if cred["thingName"] != thing || cred["username"] != thing {
		t.Fatalf("credentials %v: want thing %s", cred, thing)
	}
	pw, _ := cred["password"].(string)
	d := connectHub(t, e, thing, pw)
	waitPresence(t, id+" online", func() bool {
		st := e.call(t, hubReq(key, id, "status", nil), http.StatusOK)
		return st["online"] == true
	})
	return d
}

func eventOf(t *testing.T, m map[string]any, typ string) map[string]any {
	t.Helper()
	ev, _ := m["event"].(map[string]any)
	if ev == nil || ev["type"] != typ {
		t.Fatalf("answer %v: want event %s", m, typ)
	}
	data, _ := ev["data"].(map[string]any)
	return data
}

// TestHubLifecycleE2E: provision, claim (refused while the hub is
// offline, then with a real MQTT client connected as the hub), roles with
// one primary per site, commands through the shadow, re-claim and suspend;
// every answer matches upstream's schema for its status.
func TestHubLifecycleE2E(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newHubEnv(t, b)
			prov := map[string]any{"serial": "SN-1", "model": "spk-hub-2", "vendorName": "SmartphoneKey"}
			e.call(t, hubReq(e.keyA, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "M"}), http.StatusForbidden)
			got := e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", prov), http.StatusCreated)
			if d := eventOf(t, got, "HubProvisioned"); d["thingName"] != hubA || d["hubId"] != hubA || d["vendorName"] != "SmartphoneKey" {
				t.Errorf("HubProvisioned %v: thingName defaults to hubId", d)
			}
			again := e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "spk-hub-2"}), http.StatusOK)
			if again["event"] != nil || again["version"] != float64(1) {
				t.Errorf("provision again: %v, want event null at version 1", again)
			}
			e.call(t, hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"serial": "SN-2", "model": "spk-hub-2", "thingName": "hub-b"}), http.StatusCreated)

			// Offline: 502, nothing recorded.
			before := hubEvents(t, e)
			claim := map[string]any{"siteId": "site-1", "userId": hubU}
			e.call(t, hubReq(e.keyA, hubA, "ClaimHub", claim), http.StatusBadGateway)
			if n := hubEvents(t, e); n != before {
				t.Fatalf("an offline claim recorded %d events", n-before)
			}
			st := e.call(t, hubReq(e.keyS, hubA, "status", nil), http.StatusOK)
			if st["status"] != "Provisioned" || st["online"] != false || st["orgId"] != "" {
				t.Errorf("status before the claim: %v", st)
			}
			// An unclaimed hub's credentials are the factory's (super key).
			e.call(t, wireReq{Method: "POST", Path: "/hubs/" + hubA + "/device/credentials", Key: e.keyA, Body: map[string]any{"kind": "password"}}, http.StatusForbidden)
			devA := e.online(t, e.keyS, hubA, hubA)
			devB := e.online(t, e.keyS, hubB, "hub-b")

			// A normal key cannot claim into another org.
			e.call(t, hubReq(e.keyA, hubA, "ClaimHub", map[string]any{"siteId": "site-1", "userId": hubU, "orgId": "org-b"}), http.StatusForbidden)
			got = e.call(t, hubReq(e.keyA, hubA, "ClaimHub", claim), http.StatusOK)
			if d := eventOf(t, got, "HubClaimed"); d["orgId"] != "org-a" || d["siteId"] != "site-1" || d["claimedBy"] != hubU {
				t.Errorf("HubClaimed %v", d)
			}
			e.call(t, hubReq(e.keyA, hubA, "ClaimHub", claim), http.StatusBadRequest) // already claimed
			e.call(t, hubReq(e.keyB, hubA, "status", nil), http.StatusForbidden)
			// A super key claims across orgs.
			e.call(t, hubReq(e.keyS, hubB, "ClaimHub", map[string]any{"siteId": "site-1", "userId": hubU, "orgId": "org-a"}), http.StatusOK)

			st = e.call(t, hubReq(e.keyA, hubA, "status", nil), http.StatusOK)
			if st["status"] != "Claimed" || st["orgId"] != "org-a" || st["siteId"] != "site-1" || st["online"] != true || st["lastSeen"] == nil || st["claimedAt"] == float64(0) {
				t.Errorf("status after the claim: %v", st)
			}

			// One primary per site: B's promotion demotes A.
			got = e.call(t, hubReq(e.keyA, hubA, "SetHubRole", map[string]any{"isPrimary": true, "userId": hubU}), http.StatusOK)
			if d := eventOf(t, got, "HubRoleSet"); d["isPrimary"] != true || d["setBy"] != hubU {
				t.Errorf("HubRoleSet %v", d)
			}
			if st := e.call(t, hubReq(e.keyA, hubA, "status", nil), http.StatusOK); st["isPrimary"] != true {
				t.Errorf("A after its promotion: %v", st)
			}
			e.call(t, hubReq(e.keyA, hubB, "SetHubRole", map[string]any{"isPrimary": true, "userId": hubU}), http.StatusOK)
			if st := e.call(t, hubReq(e.keyA, hubA, "status", nil), http.StatusOK); st["isPrimary"] != false {
				t.Errorf("A after B's promotion: %v, want secondary", st)
			}
			if st := e.call(t, hubReq(e.keyA, hubB, "status", nil), http.StatusOK); st["isPrimary"] != true {
				t.Errorf("B after its promotion: %v", st)
			}
			same := e.call(t, hubReq(e.keyA, hubB, "SetHubRole", map[string]any{"isPrimary": true, "userId": hubU}), http.StatusOK)
			if same["event"] != nil {
				t.Errorf("same role again: %v, want event null", same)
			}

			// Commands reach the hub's shadow.
			got = e.call(t, hubReq(e.keyA, hubA, "SendHubCommand", map[string]any{"command": "set_wifi_credentials", "args": map[string]any{"ssid": "home"}}), http.StatusOK)
			ridA, _ := got["requestId"].(string)
			if got["event"] != nil || ridA == "" || got["offline"] != false {
				t.Fatalf("SendHubCommand answer %v", got)
			}
			if c := devA.command(t, ridA); c["command"] != "set_wifi_credentials" || c["args"].(map[string]any)["ssid"] != "home" || c["at"] == nil {
				t.Errorf("delta of SendHubCommand: %v", c)
			}
			got = e.call(t, hubReq(e.keyA, hubB, "CommissionDevice", map[string]any{"commissioningCode": "MT:Y.K9042C00KA0648G00"}), http.StatusOK)
			ridB, _ := got["requestId"].(string)
			if c := devB.command(t, ridB); c["command"] != hub.CommandCommission || c["args"].(map[string]any)["code"] != "MT:Y.K9042C00KA0648G00" {
				t.Errorf("delta of CommissionDevice: %v", c)
			}

			// What the hub reports shows in its status.
			devA.report(t, map[string]any{"version": "1.4.2", "uptimeSeconds": 3600, "commands": map[string]any{ridA: map[string]any{"result": "succeeded"}}})
			waitPresence(t, "reported version", func() bool {
				st := e.call(t, hubReq(e.keyA, hubA, "status", nil), http.StatusOK)
				return st["version"] == "1.4.2" && st["uptimeSeconds"] == float64(3600)
			})

			// Re-claim keeps the previous org and site in the event.
			e.call(t, hubReq(e.keyA, hubB, "ReClaimHub", map[string]any{"newOrgId": "org-b", "newSiteId": "site-9", "userId": hubU}), http.StatusBadRequest)
			got = e.call(t, hubReq(e.keyA, hubB, "ReClaimHub", map[string]any{"newOrgId": "org-b", "newSiteId": "site-9", "reason": "sold", "userId": hubU}), http.StatusOK)
			if d := eventOf(t, got, "HubReClaimed"); d["previousOrgId"] != "org-a" || d["previousSiteId"] != "site-1" || d["newOrgId"] != "org-b" || d["newSiteId"] != "site-9" || d["reason"] != "sold" {
				t.Errorf("HubReClaimed %v", d)
			}
			e.call(t, hubReq(e.keyA, hubB, "status", nil), http.StatusForbidden)
			if st := e.call(t, hubReq(e.keyB, hubB, "status", nil), http.StatusOK); st["orgId"] != "org-b" || st["isPrimary"] != false {
				t.Errorf("B after the re-claim: %v", st)
			}
			e.call(t, hubReq(e.keyA, hubA, "ReClaimHub", map[string]any{"newOrgId": "nobody", "newSiteId": "s", "reason": "r", "userId": hubU}), http.StatusBadRequest)

			got = e.call(t, hubReq(e.keyA, hubA, "SuspendHub", map[string]any{"reason": "stolen", "userId": hubU}), http.StatusOK)
			if d := eventOf(t, got, "HubSuspended"); d["reason"] != "stolen" || d["suspendedBy"] != hubU {
				t.Errorf("HubSuspended %v", d)
			}
			e.call(t, hubReq(e.keyA, hubA, "SuspendHub", map[string]any{"reason": "stolen", "userId": hubU}), http.StatusBadRequest)
			if st := e.call(t, hubReq(e.keyA, hubA, "status", nil), http.StatusOK); st["status"] != "Suspended" {
				t.Errorf("status after SuspendHub: %v", st)
			}
			e.call(t, hubReq(e.keyA, hubA, "SetHubRole", map[string]any{"isPrimary": true, "userId": hubU}), http.StatusBadRequest)
			e.call(t, hubReq(e.keyA, hubA, "ReClaimHub", map[string]any{"newOrgId": "org-a", "newSiteId": "s", "reason": "r", "userId": hubU}), http.StatusBadRequest)

			// Revoking the credentials cuts the hub off: it goes offline.
			e.call(t, wireReq{Method: "POST", Path: "/hubs/" + hubB + "/device/revoke", Key: e.keyB}, http.StatusOK)
			waitPresence(t, "B offline after revoke", func() bool {
				return e.call(t, hubReq(e.keyB, hubB, "status", nil), http.StatusOK)["online"] == false
			})
			e.call(t, hubReq(e.keyB, hubB, "SuspendHub", map[string]any{"reason": "gone", "userId": hubU}), http.StatusBadGateway)
			e.requireValidated(t, "POST /hubs/{id}/ProvisionHub 201", "POST /hubs/{id}/ProvisionHub 200",
				"POST /hubs/{id}/ClaimHub 200", "POST /hubs/{id}/ClaimHub 400", "POST /hubs/{id}/ClaimHub 502",
				"POST /hubs/{id}/ReClaimHub 200", "POST /hubs/{id}/ReClaimHub 400",
				"POST /hubs/{id}/SetHubRole 200", "POST /hubs/{id}/SetHubRole 400",
				"POST /hubs/{id}/SuspendHub 200", "POST /hubs/{id}/SuspendHub 400", "POST /hubs/{id}/SuspendHub 502",
				"POST /hubs/{id}/SendHubCommand 200", "POST /hubs/{id}/CommissionDevice 200", "GET /hubs/{id}/status 200")
		})
	}
}

// TestHubBadInput: malformed requests answer 400 with the error envelope
// and record nothing (no event, no shadow change).
func TestHubBadInput(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newHubEnv(t, b)
			e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "M"}), http.StatusCreated)
			e.online(t, e.keyS, hubA, hubA)
			e.call(t, hubReq(e.keyA, hubA, "ClaimHub", map[string]any{"siteId": "site-1", "userId": hubU}), http.StatusOK)
			before, events, shadow := wireSnapshot(t, e.srv), hubEvents(t, e), hubShadow(t, e, hubA)
			cases := []wireReq{
				hubReq(e.keyS, "not-a-uuid", "ProvisionHub", map[string]any{"serial": "S", "model": "M"}),
				hubReq(e.keyS, strings.ToUpper(hubB), "ProvisionHub", map[string]any{"serial": "S", "model": "M"}),
				hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"serial": "", "model": "M"}),
				hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"model": "M"}),
				hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"serial": "S", "model": "M", "thingName": "lock-1"}),
				hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"serial": "S", "model": "M", "thingName": "a/b"}),
				hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"hubId": hubA, "serial": "S", "model": "M"}),
				hubReq(e.keyA, hubA, "CommissionDevice", map[string]any{"commissioningCode": "1234"}),
				hubReq(e.keyA, hubA, "CommissionDevice", map[string]any{"commissioningCode": "1234567890123456789012"}),
				hubReq(e.keyA, hubA, "CommissionDevice", map[string]any{}),
				hubReq(e.keyA, hubA, "SendHubCommand", map[string]any{"command": ""}),
				hubReq(e.keyA, hubA, "SendHubCommand", map[string]any{"command": "x", "args": "not-an-object"}),
				hubReq(e.keyA, hubA, "SendHubCommand", map[string]any{"command": "x", "args": map[string]any{"blob": strings.Repeat("x", 20<<10)}}),
				hubReq(e.keyA, hubA, "SuspendHub", map[string]any{"userId": hubU}),
				hubReq(e.keyA, hubA, "SuspendHub", map[string]any{"reason": "", "userId": hubU}),
				hubReq(e.keyA, hubA, "ReClaimHub", map[string]any{"newOrgId": "org-a", "newSiteId": "s", "userId": hubU}),
				hubReq(e.keyA, hubA, "SetHubRole", map[string]any{"isPrimary": true, "userId": "bob"}),
				hubReq(e.keyA, hubA, "SetHubRole", map[string]any{"userId": hubU}),
				hubReq(e.keyA, hubA, "ClaimHub", map[string]any{"hubId": hubB, "siteId": "s", "userId": hubU}),
				hubReq(e.keyA, hubA, "ClaimHub", map[string]any{"userId": hubU}),
			}
			for _, r := range cases {
				got := e.call(t, r, http.StatusBadRequest)
				if r.Path != "/hubs/not-a-uuid/ProvisionHub" && !strings.Contains(r.Path, strings.ToUpper(hubB)) && !e.validated[r.Method+" /hubs/{id}/"+r.Path[len("/hubs/")+36+1:]+" 400"] {
					t.Errorf("%s: the 400 was not validated against upstream's schema", r.Path)
				}
				if got["success"] != false || got["message"] == "" {
					t.Errorf("%s %v: envelope %v", r.Path, r.Body, got)
				}
			}
			wireUnchanged(t, e.srv, before)
			if n := hubEvents(t, e); n != events {
				t.Errorf("bad input recorded %d hub events", n-events)
			}
			if s := hubShadow(t, e, hubA); s != shadow {
				t.Errorf("bad input changed the hub's shadow:\n%s\n%s", shadow, s)
			}
		})
	}
}

// TestHubAuthz: every hub route refuses no credentials (401), a user
// token (403), another tenant's key (403), a missing hub (404); a
// non-super key claiming into another org gets 403. Nothing is recorded.
func TestHubAuthz(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newHubEnv(t, b)
			e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "M"}), http.StatusCreated)
			e.online(t, e.keyS, hubA, hubA)
			e.call(t, hubReq(e.keyA, hubA, "ClaimHub", map[string]any{"siteId": "site-1", "userId": hubU}), http.StatusOK)
			bodies := map[string]map[string]any{
				"ProvisionHub":       {"serial": "S", "model": "M"},
				"ClaimHub":           {"siteId": "s", "userId": hubU},
				"ReClaimHub":         {"newOrgId": "org-b", "newSiteId": "s", "reason": "r", "userId": hubU},
				"SetHubRole":         {"isPrimary": true, "userId": hubU},
				"SuspendHub":         {"reason": "r", "userId": hubU},
				"SendHubCommand":     {"command": "get_nodes"},
				"CommissionDevice":   {"commissioningCode": "12345678901"},
				"status":             nil,
				"device/credentials": {"kind": "password"},
				"device/revoke":      nil,
			}
			body := func(op, id string) map[string]any {
				src := bodies[op]
				if src == nil {
					return nil
				}
				m := map[string]any{}
				for k, v := range src {
					m[k] = v
				}
				if !strings.HasPrefix(op, "device/") {
					m["hubId"] = id
				}
				return m
			}
			req := func(op, id string) wireReq {
				r := hubReq("", id, op, body(op, id))
				if op == "device/revoke" {
					r.Method = "POST"
				}
				return r
			}
			e.call(t, hubReq(e.keyS, hubB, "ProvisionHub", map[string]any{"serial": "S", "model": "M"}), http.StatusCreated)
			before, events, shadow := wireSnapshot(t, e.srv), hubEvents(t, e), hubShadow(t, e, hubA)
			for op := range bodies {
				t.Run(op, func(t *testing.T) {
					r := req(op, hubA)
					e.call(t, r, http.StatusUnauthorized)
					r.JWT = e.ownerJWT
					e.call(t, r, http.StatusForbidden)
					r.JWT, r.Key = "", e.keyB
					e.call(t, r, http.StatusForbidden) // ClaimHub too: org-a has claimed it
					r = req(op, hubX)
					r.Key = e.keyA
					want := http.StatusNotFound
					if op == "ProvisionHub" {
						want = http.StatusForbidden // super keys only, whatever the hub
					}
					e.call(t, r, want)
					r = req(op, "not-a-uuid")
					r.Key = e.keyS
					e.call(t, r, http.StatusBadRequest) // a path id that is no UUID
				})
			}
			// A normal key's orgId must be its own.
			e.call(t, hubReq(e.keyB, hubB, "ClaimHub", map[string]any{"siteId": "s", "userId": hubU, "orgId": "org-a"}), http.StatusForbidden)
			e.requireValidated(t, "POST /hubs/{id}/ProvisionHub 401", "GET /hubs/{id}/status 404", "POST /hubs/{id}/ClaimHub 404",
				"POST /hubs/{id}/ReClaimHub 404", "POST /hubs/{id}/SetHubRole 404", "POST /hubs/{id}/SuspendHub 404",
				"POST /hubs/{id}/SendHubCommand 404", "POST /hubs/{id}/CommissionDevice 404")
			wireUnchanged(t, e.srv, before)
			if n := hubEvents(t, e); n != events {
				t.Errorf("refused requests recorded %d hub events", n-events)
			}
			if s := hubShadow(t, e, hubA); s != shadow {
				t.Errorf("refused requests changed the hub's shadow")
			}
		})
	}
}

// TestHubCommandOfflineQueues: a command to an offline hub answers
// offline: true and waits under desired.commands in its shadow.
func TestHubCommandOfflineQueues(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newHubEnv(t, b)
			e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "M"}), http.StatusCreated)
			// Offline: the command waits in the shadow (upstream: offline
			// commands queue), and the device finds it when it connects.
			got := e.call(t, hubReq(e.keyS, hubA, "SendHubCommand", map[string]any{"command": "server_info"}), http.StatusOK)
			if got["offline"] != true {
				t.Errorf("answer %v: want offline", got)
			}
			rid, _ := got["requestId"].(string)
			var doc struct {
				Desired map[string]map[string]map[string]any `json:"desired"`
			}
			if err := json.Unmarshal([]byte(hubShadow(t, e, hubA)), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Desired["commands"][rid]["command"] != "server_info" {
				t.Errorf("shadow %s: want the command under desired.commands.%s", hubShadow(t, e, hubA), rid)
			}
		})
	}
}

// TestHubShadowRefuses: a command the shadow refuses (args nested deeper
// than a shadow document may be) answers 502 and changes nothing.
func TestHubShadowRefuses(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			e := newHubEnv(t, b)
			e.call(t, hubReq(e.keyS, hubA, "ProvisionHub", map[string]any{"serial": "SN-1", "model": "M"}), http.StatusCreated)
			e.call(t, hubReq(e.keyS, hubA, "SendHubCommand", map[string]any{"command": "server_info"}), http.StatusOK)
			before, shadow := wireSnapshot(t, e.srv), hubShadow(t, e, hubA)
			deep := map[string]any{}
			for i := 0; i < 10; i++ {
				deep = map[string]any{"n": deep}
			}
			got := e.call(t, hubReq(e.keyS, hubA, "SendHubCommand", map[string]any{"command": "x", "args": deep}), http.StatusBadGateway)
			if got["success"] != false {
				t.Errorf("envelope %v", got)
			}
			e.requireValidated(t, "POST /hubs/{id}/SendHubCommand 502")
			wireUnchanged(t, e.srv, before)
			if s := hubShadow(t, e, hubA); s != shadow {
				t.Errorf("a refused command changed the shadow")
			}
		})
	}
}
