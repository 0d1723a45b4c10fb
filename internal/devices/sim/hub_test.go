package sim_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const simHubID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"

// hubEnv is a server, a super key, hub simHubID provisioned and
// credentialed through the API, and a simulated hub connected as it.
type hubEnv struct {
	srv   *testenv.Server
	api   *sim.API
	hub   *sim.Hub
	lines *lines
}

func newHubEnv(t *testing.T, b testenv.Backend, cfg sim.HubConfig) *hubEnv {
	t.Helper()
	ctx := context.Background()
	srv := testenv.NewServer(t, b, testenv.Options{Devices: true})
	api := &sim.API{Base: srv.URL, Key: srv.Tenant(t, "org-hub", true)}
	if created, err := api.EnsureHub(ctx, simHubID, "SN-1", "H1"); err != nil || !created {
		t.Fatalf("provision: created %v, %v", created, err)
	}
	if again, err := api.EnsureHub(ctx, simHubID, "SN-1", "H1"); err != nil || again {
		t.Fatalf("provision again: created %v, %v; want the hub left alone", again, err)
	}
	creds, err := api.HubCredentials(ctx, simHubID, "password")
	if err != nil {
		t.Fatal(err)
	}
	e := &hubEnv{srv: srv, api: api, lines: &lines{}}
	cfg.Thing, cfg.Print = creds.ThingName, e.lines.add
	cfg.Broker, cfg.Username, cfg.Password = "tcp://"+creds.MQTTEndpoint, creds.Username, creds.Password
	if e.hub, err = sim.NewHub(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.hub.Close)
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := e.hub.Start(sctx); err != nil {
		t.Fatalf("start the sim hub: %v", err)
	}
	e.waitReported(t, "the first report", func(r map[string]any) bool { return r["version"] == sim.DefaultHubVersion })
	return e
}

func (e *hubEnv) waitReported(t *testing.T, what string, ok func(reported map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		raw, found, err := e.srv.Store.Shadow(context.Background(), simHubID, "")
		if err != nil {
			t.Fatal(err)
		}
		var d shadowDoc
		if found {
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
		}
		if d.Reported != nil && ok(d.Reported) {
			return d.Reported
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reported within %v; reported %v; hub printed %v", what, wait, d.Reported, e.lines.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result waits for the hub's reported result of request rid.
func (e *hubEnv) result(t *testing.T, rid string) map[string]any {
	t.Helper()
	r := e.waitReported(t, "the result of "+rid, func(r map[string]any) bool {
		_, ok := section(section(r, "commands"), rid)["result"]
		return ok
	})
	return section(section(r, "commands"), rid)
}

// TestHubCommands: the simulated hub answers spkey's hub commands in its
// reported state: server_info and get_nodes with their output, a
// commissioning code with the new node, a bad code and an unknown command
// as failures.
func TestHubCommands(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			e := newHubEnv(t, b, sim.HubConfig{})
			rid, err := e.api.HubCommand(ctx, simHubID, "server_info", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := e.result(t, rid); r["result"] != "succeeded" || section(r, "output")["version"] != sim.DefaultHubVersion {
				t.Errorf("server_info: %v", r)
			}
			rid, err = e.api.Commission(ctx, simHubID, "34970112332")
			if err != nil {
				t.Fatal(err)
			}
			r := e.result(t, rid)
			if r["result"] != "succeeded" || section(r, "output")["nodeId"] != float64(1) {
				t.Errorf("commission: %v", r)
			}
			if nodes := e.hub.Nodes(); len(nodes) != 1 || nodes[0].DeviceUUID != section(r, "output")["deviceUuid"] {
				t.Errorf("nodes %v after commissioning, want the one reported in %v", nodes, r)
			}
			rid, err = e.api.HubCommand(ctx, simHubID, "get_nodes", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := e.result(t, rid); r["result"] != "succeeded" || len(section(r, "output")["nodes"].([]any)) != 1 {
				t.Errorf("get_nodes: %v", r)
			}
			rid, err = e.api.HubCommand(ctx, simHubID, "reboot_into_orbit", map[string]any{"now": true})
			if err != nil {
				t.Fatal(err)
			}
			if r := e.result(t, rid); r["result"] != "failed" || r["error"] != `unknown command "reboot_into_orbit"` {
				t.Errorf("unknown command: %v", r)
			}
			rid, err = e.api.HubCommand(ctx, simHubID, "set_wifi_credentials", map[string]any{"ssid": "home", "credentials": "hunter2hunter2"})
			if err != nil {
				t.Fatal(err)
			}
			if r := e.result(t, rid); r["result"] != "succeeded" {
				t.Errorf("set_wifi_credentials: %v", r)
			}
			if e.lines.has("hunter2") {
				t.Errorf("the hub printed the Wi-Fi credentials: %v", e.lines.all)
			}
		})
	}
}

// TestHubFailRate: with FailRate 1 every command fails on purpose.
func TestHubFailRate(t *testing.T) {
	e := newHubEnv(t, testenv.SQLite, sim.HubConfig{FailRate: 1})
	rid, err := e.api.HubCommand(context.Background(), simHubID, "server_info", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.result(t, rid); r["result"] != "failed" || r["error"] != sim.FailureMessage {
		t.Errorf("server_info with FailRate 1: %v", r)
	}
}
