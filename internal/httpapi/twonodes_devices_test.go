package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestTwoNodesExternalBroker: two spkey nodes on one PostgreSQL database
// join one external broker (a mochi broker run here, as Mosquitto 2 does
// not share $ topics) in the same share group; a simulated lock is
// connected to that broker. Commands sent alternately to either node,
// each awaited on the other node, all succeed; the lock acts once per
// request and the lock's events hold each transition once: every report
// was handled by one node only.
func TestTwoNodesExternalBroker(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	brokerAddr := allowAllBroker(t)
	brokerURL := "mqtt://spkey:any-password@" + brokerAddr
	dbURL := testenv.PostgresURL(t)
	node := func() *testenv.Server {
		st, err := server.OpenStore(context.Background(), server.StoreConfig{DB: dbURL}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return testenv.NewServer(t, testenv.Postgres, testenv.Options{Store: st, MQTTURL: brokerURL})
	}
	a, b := node(), node()
	if a.Gateway == nil || b.Gateway == nil || a.MQTTAddr != "" || b.MQTTAddr != "" {
		t.Fatalf("gateways %v %v, embedded brokers %q %q: want a gateway on the external broker and no embedded broker", a.Gateway, b.Gateway, a.MQTTAddr, b.MQTTAddr)
	}
	key := a.Tenant(t, "org-a", false)
	ea := &devEnv{srv: a, key: key, lines: &simLines{}}
	eb := &devEnv{srv: b, key: key, lines: ea.lines}
	api := &sim.API{Base: a.URL, Key: key}
	if created, err := api.EnsureLock(context.Background(), e2eLock); err != nil || !created {
		t.Fatalf("create lock %d: created %v, %v", e2eLock, created, err)
	}
	// The external broker authenticates the devices (here: everyone), so
	// spkey issues no credentials; the lock logs in with its thing name.
	thing := lock.ThingName(e2eLock)
	ea.creds = sim.Credentials{ThingName: thing}
	eb.creds = ea.creds
	l, err := sim.New(sim.Config{Thing: thing, Broker: "tcp://" + brokerAddr, Username: thing, Password: "lock-password",
		Delay: 20 * time.Millisecond, Print: ea.lines.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	ea.peers = []*testenv.Server{eb.srv}
	ea.connect(t, l)

	nodes := []*devEnv{ea, eb}
	name := []string{"A", "B"}
	// other is the node that did not send command i: it reads the action.
	sender := func(i int) (*devEnv, *devEnv, string) { return nodes[i%2], nodes[(i+1)%2], name[i%2] }

	// Opens, alternating nodes, each awaited on the other one.
	const opens = 20
	offlines := 0
	var rids []string
	offline := map[string]bool{} // the command's answer, by requestId
	for i := range opens {
		from, to, via := sender(i)
		rid := fmt.Sprintf("two-nodes-open-%02d", i)
		got := from.command(t, "OpenLock", map[string]any{"requestId": rid, "reason": "via " + via})
		if got["offline"] == true {
			offlines++
		}
		checkAnswer(t, got, "LockOpenRequested", rid, got["offline"] == true)
		offline[rid] = got["offline"] == true
		to.waitAction(t, rid, "succeeded")
		rids = append(rids, rid)
	}
	// The sim does not publish the presence topic (README "Presence"):
	// with an external broker the nodes then hold the lock offline and
	// queue; either answer is right as long as every open succeeded.
	t.Logf("%d of %d opens answered offline", offlines, opens)

	// The lock now says it is online, as firmware does on an external
	// broker (the sim does not): one node records it, both read it.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("presence-of-" + thing).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(e2eWait))
	if tok := pub.Connect(); !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	if tok := pub.Publish(devices.PresenceTopic(thing), 1, false, `{"online":true}`); !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		t.Fatalf("publish presence: %v", tok.Error())
	}
	waitOnline(t, key, true, a, b)

	// Keys, alternating nodes, each awaited on the other one.
	const keys = 10
	var keyIDs []string
	for i := range keys {
		from, to, _ := sender(i)
		k := fmt.Sprintf("two-nodes-key-%02d", i)
		got := from.command(t, "AddKey", map[string]any{"keyUuid": k, "keyIndexNumber": i + 1})
		// Online on both nodes: the key's action is pending at once.
		rid := checkAnswer(t, got, "KeyAdded", "", false)
		if act := to.waitAction(t, rid, "succeeded"); act["action"] != "AddKey" || act["keyUuid"] != k {
			t.Errorf("AddKey action %v; want AddKey of %s", act, k)
		}
		rids = append(rids, rid)
		keyIDs = append(keyIDs, k)
	}

	// The lock acted once per open, whichever node received its report.
	for _, rid := range rids[:opens] {
		if n := ea.lines.count("open " + rid + " succeeded"); n != 1 {
			t.Errorf("the lock opened %d times for %s; printed:\n%s", n, rid, ea.lines)
		}
	}
	// Keys are written through the key pages, not as writeKey requests.
	for _, k := range keyIDs {
		if n := ea.lines.count("key " + k + " stored"); n != 1 {
			t.Errorf("the lock stored key %s %d times; printed:\n%s", k, n, ea.lines)
		}
	}
	// Each transition once per request: no report handled twice.
	// A KeyAdded names its key, not its request: count it by key.
	trails, added := map[string][]string{}, map[string]int{}
	for _, ev := range ea.events(t) {
		data, _ := ev["event"].(map[string]any)
		if ev["type"] == "KeyAdded" {
			added[fmt.Sprint(data["keyUuid"])]++
			continue
		}
		rid, _ := data["requestId"].(string)
		if rid == "" {
			continue
		}
		if ev["type"] == "LockActionUpdated" {
			trails[rid] = append(trails[rid], fmt.Sprint(data["status"]))
		} else {
			trails[rid] = append(trails[rid], fmt.Sprint(ev["type"]))
		}
	}
	for i, rid := range rids {
		trail := trails[rid]
		if i < opens {
			if len(trail) == 0 || trail[0] != "LockOpenRequested" {
				t.Errorf("events of %s: %v; want LockOpenRequested first", rid, trail)
				continue
			}
			trail = trail[1:]
		}
		if !oneTrail(trail, offline[rid]) {
			t.Errorf("events of %s: %v; want pending or queued, at most one delivered, then succeeded, each once", rid, trails[rid])
		}
	}
	if len(trails) != len(rids) {
		t.Errorf("events name %d requests, want %d: %v", len(trails), len(rids), trails)
	}
	for _, k := range keyIDs {
		if added[k] != 1 {
			t.Errorf("%d KeyAdded events of %s, want 1", added[k], k)
		}
	}
	if len(added) != keys {
		t.Errorf("KeyAdded events of %d keys, want %d: %v", len(added), keys, added)
	}
	// Both nodes read the same lock: its keys, each once.
	for _, e := range nodes {
		got := e.detailKeys(t)
		slices.Sort(got)
		if !slices.Equal(got, keyIDs) {
			t.Errorf("details keys on %s: %v; want %v once each", e.srv.URL, got, keyIDs)
		}
	}
	// The broker shared the lock's requests between the nodes.
	sa, sb := a.Gateway.Stats(), b.Gateway.Stats()
	t.Logf("node A handled %d requests, node B %d", sa.Handled, sb.Handled)
	if sa.Handled == 0 || sb.Handled == 0 || sa.Failed+sb.Failed != 0 {
		t.Errorf("gateway stats A %+v, B %+v; want requests handled on both nodes and none failed", sa, sb)
	}
}

// TestTwoNodesExternalPresence: with an external broker each presence
// message reaches one node of the share group; whichever it was, both
// nodes answer a command by the recorded presence: online after
// {"online":true}, offline after {"online":false}. (The broker picks the
// member at random, so a few rounds make it likely that the two messages
// of a round reach different nodes.)
func TestTwoNodesExternalPresence(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	brokerAddr := allowAllBroker(t)
	dbURL := testenv.PostgresURL(t)
	node := func() *testenv.Server {
		st, err := server.OpenStore(context.Background(), server.StoreConfig{DB: dbURL}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return testenv.NewServer(t, testenv.Postgres, testenv.Options{Store: st, MQTTURL: "mqtt://" + brokerAddr})
	}
	a, b := node(), node()
	key := a.Tenant(t, "org-a", false)
	if created, err := (&sim.API{Base: a.URL, Key: key}).EnsureLock(context.Background(), e2eLock); err != nil || !created {
		t.Fatalf("create lock %d: created %v, %v", e2eLock, created, err)
	}
	thing := lock.ThingName(e2eLock)
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("presence-of-" + thing).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(e2eWait))
	if tok := pub.Connect(); !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	const rounds = 6
	n := 0
	for round := range rounds {
		for _, want := range []bool{true, false} {
			payload := fmt.Sprintf(`{"online":%v}`, want)
			if tok := pub.Publish(devices.PresenceTopic(thing), 1, false, payload); !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
				t.Fatalf("publish presence: %v", tok.Error())
			}
			waitOnline(t, key, want, a, b)
			for i, srv := range []*testenv.Server{a, b} {
				n++
				rid := fmt.Sprintf("presence-open-%02d", n)
				got := wireOK(t, srv, wireReq{Method: "POST", Path: fmt.Sprintf("/locks/%d/OpenLock", e2eLock), Key: key,
					Body: map[string]any{"requestId": rid}}, http.StatusOK)
				if got["offline"] != !want {
					t.Errorf("round %d, after %s: OpenLock on node %s answered offline %v; want %v (basic-info says online %v)",
						round, payload, []string{"A", "B"}[i], got["offline"], !want, want)
				}
			}
		}
	}
}

// oneTrail reports whether trail (an action's statuses) is each
// transition once: pending then succeeded, or, for a command answered
// offline, queued, at most one delivered, then succeeded.
func oneTrail(trail []string, offline bool) bool {
	if !offline {
		return slices.Equal(trail, []string{"pending", "succeeded"})
	}
	return slices.Equal(trail, []string{"queued", "succeeded"}) || slices.Equal(trail, []string{"queued", "delivered", "succeeded"})
}

// waitOnline waits until lock e2eLock's basic-info says online is want
// on every node.
func waitOnline(t *testing.T, key string, want bool, nodes ...*testenv.Server) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for _, srv := range nodes {
		for {
			info := wireOK(t, srv, wireReq{Method: "GET", Path: fmt.Sprintf("/locks/%d/basic-info", e2eLock), Key: key}, http.StatusOK)
			if info["online"] == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("basic-info of %s: online %v after %v; want %v", srv.URL, info["online"], e2eWait, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// allowAllBroker runs a mochi MQTT broker on a free loopback port that
// lets every client in and everywhere, standing for an external broker
// that shares $ topics; t's cleanup stops it. It returns its address.
func allowAllBroker(t *testing.T) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: testenv.Discard()})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "external", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if !strings.HasPrefix(ln.Address(), "127.0.0.1:") {
		t.Fatalf("broker address %q", ln.Address())
	}
	return ln.Address()
}

// allowAll lets every client connect, publish and subscribe.
type allowAll struct{ mqtt.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
