package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DefaultHubVersion is the version a Hub reports when HubConfig.Version
// is empty.
const DefaultHubVersion = "spkey-sim-hub-1"

// HubConfig is one simulated hub (README "Hubs": the hub shadow layout).
type HubConfig struct {
	// Thing is the hub's thing name (its hubId unless provisioned with
	// another), also its client id.
	Thing string
	// Broker, Username, Password and TLS as in Config.
	Broker             string
	Username, Password string
	TLS                *tls.Config
	// Delay is how long a command takes.
	Delay time.Duration
	// FailRate is the share (0..1) of commands that fail with
	// FailureMessage.
	FailRate float64
	// Version is the reported software version (DefaultHubVersion when
	// empty).
	Version string
	// Print receives one line per command handled (nil: discarded); never
	// a secret (Wi-Fi credentials are not printed).
	Print func(line string)
	// Now is the hub's clock (nil: time.Now); Rand returns a number in
	// [0,1) for FailRate (nil: math/rand/v2).
	Now  func() time.Time
	Rand func() float64
}

// Node is a Matter device the hub commissioned.
type Node struct {
	NodeID     int64  `json:"nodeId"`
	DeviceUUID string `json:"deviceUuid"`
	Code       string `json:"-"`
}

// Hub is one simulated hub: it answers the commands spkey puts into its
// classic shadow (commission_with_code, get_nodes, server_info,
// set_wifi_credentials; anything else fails as unknown) by reporting
// commands.{requestId}, and reports its version and uptime.
type Hub struct {
	cfg     HubConfig
	client  paho.Client
	topics  topics
	started time.Time

	mu      sync.Mutex
	closed  bool
	version int64
	handled map[string]json.RawMessage // results reported, by request id
	pending map[string]*time.Timer
	cleared map[string]bool
	nodes   []Node
}

// pairingCode is upstream's commissioning code: 11 or 21 digits, or a QR
// payload.
var pairingCode = regexp.MustCompile(`^(\d{11}|\d{21}|MT:[0-9A-Z.-]{1,250})$`)

// NewHub returns a Hub of cfg, not connected. It returns an error for an
// empty Thing or Broker or a FailRate outside 0..1.
func NewHub(cfg HubConfig) (*Hub, error) {
	switch {
	case cfg.Thing == "":
		return nil, errors.New("sim: a hub needs a thing name")
	case cfg.Broker == "":
		return nil, errors.New("sim: a hub needs a broker URL (tcp://host:port or ssl://host:port)")
	case cfg.FailRate < 0 || cfg.FailRate > 1:
		return nil, fmt.Errorf("sim: fail rate %v: want 0..1", cfg.FailRate)
	}
	if cfg.Print == nil {
		cfg.Print = func(string) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Version == "" {
		cfg.Version = DefaultHubVersion
	}
	h := &Hub{cfg: cfg, topics: topicsOf(cfg.Thing), started: cfg.Now(),
		handled: map[string]json.RawMessage{}, pending: map[string]*time.Timer{}, cleared: map[string]bool{}}
	opts := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.Thing).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10*time.Second).
		SetConnectTimeout(10*time.Second).SetKeepAlive(30*time.Second).
		SetOnConnectHandler(h.onConnect).
		SetWill(h.topics.presence, `{"online":false}`, qos, false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { h.print("connection lost: %v", err) })
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	} else {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	h.client = paho.NewClient(opts)
	return h, nil
}

// Thing returns the hub's thing name.
func (h *Hub) Thing() string { return h.cfg.Thing }

// Start connects the hub, retrying until ctx ends; it returns ctx's error
// when the first connection did not succeed in time.
func (h *Hub) Start(ctx context.Context) error {
	tok := h.client.Connect()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close disconnects the hub and stops its pending commands.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for _, t := range h.pending {
		t.Stop()
	}
	h.mu.Unlock()
	if h.client.IsConnectionOpen() {
		h.client.Publish(h.topics.presence, qos, false, `{"online":false}`).WaitTimeout(time.Second)
	}
	h.client.Disconnect(250)
}

// Nodes returns the devices the hub commissioned, in order.
func (h *Hub) Nodes() []Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Node(nil), h.nodes...)
}

func (h *Hub) print(format string, args ...any) {
	h.cfg.Print(h.cfg.Thing + ": " + fmt.Sprintf(format, args...))
}

func (h *Hub) onConnect(c paho.Client) {
	for _, s := range []string{"/update/delta", "/update/documents", "/get/accepted", "/get/rejected"} {
		if t := c.Subscribe(h.topics.base+s, qos, h.onMessage); t.WaitTimeout(10*time.Second) && t.Error() != nil {
			h.print("subscribe %s: %v", s, t.Error())
		}
	}
	h.report(nil)
	h.publish(h.topics.get, []byte(`{}`))
	h.print("online")
}

func (h *Hub) publish(topic string, payload []byte) {
	tok := h.client.Publish(topic, qos, false, payload)
	go func() {
		if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
			h.print("publish %s: %v", topic, tok.Error())
		}
	}()
}

// report publishes commands (nil: none) with the hub's version and uptime.
func (h *Hub) report(commands map[string]any) {
	reported := map[string]any{"version": h.cfg.Version, "uptimeSeconds": int64(h.cfg.Now().Sub(h.started).Seconds())}
	if len(commands) > 0 {
		reported["commands"] = commands
	}
	b, err := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}})
	if err == nil {
		h.publish(h.topics.update, b)
	}
}

// hubDoc is the part of an answer the hub reads.
type hubDoc struct {
	State struct {
		Desired  hubState `json:"desired"`
		Reported hubState `json:"reported"`
	} `json:"state"`
	Version int64 `json:"version"`
}

type hubState struct {
	Commands map[string]json.RawMessage `json:"commands"`
}

func (h *Hub) onMessage(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	var d hubDoc
	switch {
	case strings.HasSuffix(topic, "/get/rejected"):
		return
	case strings.HasSuffix(topic, "/update/documents"):
		var docs struct {
			Current hubDoc `json:"current"`
		}
		if json.Unmarshal(m.Payload(), &docs) != nil {
			return
		}
		h.reconcile(docs.Current, true, false)
	case strings.HasSuffix(topic, "/get/accepted"):
		if json.Unmarshal(m.Payload(), &d) != nil {
			return
		}
		h.reconcile(d, true, true)
	case strings.HasSuffix(topic, "/update/delta"):
		var delta struct {
			State   hubState `json:"state"`
			Version int64    `json:"version"`
		}
		if json.Unmarshal(m.Payload(), &delta) != nil {
			return
		}
		d.Version, d.State.Desired = delta.Version, delta.State
		h.reconcile(d, false, false)
	}
}

// reconcile schedules the desired commands neither handled nor pending,
// reports again a result lost while offline (on a get), and reports null,
// once, the results whose command is gone from desired. whole says d is
// the whole document.
func (h *Hub) reconcile(d hubDoc, whole, fetched bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || d.Version < h.version {
		return
	}
	h.version = d.Version
	desired, reported := d.State.Desired.Commands, d.State.Reported.Commands
	out := map[string]any{}
	for _, rid := range sortedIDs(desired) {
		entry := desired[rid]
		if isNull(entry) {
			continue
		}
		if _, ok := reported[rid]; ok && whole {
			continue
		}
		if result, ok := h.handled[rid]; ok {
			if fetched {
				out[rid] = result
			}
			continue
		}
		if h.pending[rid] != nil {
			continue
		}
		h.pending[rid] = time.AfterFunc(h.cfg.Delay, func() { h.act(rid, entry) })
	}
	if whole {
		for rid := range union(h.handled, reported) {
			if e, ok := desired[rid]; ok && !isNull(e) {
				continue
			}
			delete(h.handled, rid)
			if _, ok := reported[rid]; !ok {
				delete(h.cleared, rid)
				continue
			}
			if h.cleared[rid] && !fetched {
				continue
			}
			if len(h.cleared) >= maxHandled {
				clear(h.cleared)
			}
			h.cleared[rid] = true
			out[rid] = nil
		}
	}
	if len(out) > 0 {
		go h.report(out)
	}
}

// act runs command rid and reports its result.
func (h *Hub) act(rid string, entry json.RawMessage) {
	var cmd struct {
		Command string         `json:"command"`
		Args    map[string]any `json:"args"`
	}
	_ = json.Unmarshal(entry, &cmd)
	result := map[string]any{}
	fail := func(msg string) { result["result"], result["error"] = "failed", msg }
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	delete(h.pending, rid)
	switch {
	case h.cfg.FailRate > 0 && h.cfg.Rand() < h.cfg.FailRate:
		fail(FailureMessage)
	case cmd.Command == "commission_with_code":
		code, _ := cmd.Args["code"].(string)
		if !pairingCode.MatchString(code) {
			fail("invalid commissioning code")
			break
		}
		n := Node{NodeID: int64(len(h.nodes) + 1), DeviceUUID: newUUID(), Code: code}
		h.nodes = append(h.nodes, n)
		result["result"], result["output"] = "succeeded", map[string]any{"nodeId": n.NodeID, "deviceUuid": n.DeviceUUID}
	case cmd.Command == "get_nodes":
		nodes := append([]Node{}, h.nodes...)
		result["result"], result["output"] = "succeeded", map[string]any{"nodes": nodes}
	case cmd.Command == "server_info":
		result["result"], result["output"] = "succeeded", map[string]any{"version": h.cfg.Version, "uptimeSeconds": int64(h.cfg.Now().Sub(h.started).Seconds())}
	case cmd.Command == "set_wifi_credentials":
		if ssid, _ := cmd.Args["ssid"].(string); ssid == "" {
			fail("ssid is required")
			break
		}
		result["result"] = "succeeded"
	default:
		fail(fmt.Sprintf("unknown command %q", cmd.Command))
	}
	b, _ := json.Marshal(result)
	if len(h.handled) >= maxHandled {
		for id := range h.handled {
			delete(h.handled, id)
			break
		}
	}
	h.handled[rid] = b
	h.mu.Unlock()
	if result["result"] == "succeeded" {
		h.print("command %s %s succeeded", cmd.Command, rid)
	} else {
		h.print("command %s %s failed: %v", cmd.Command, rid, result["error"])
	}
	h.report(map[string]any{rid: json.RawMessage(b)})
}
