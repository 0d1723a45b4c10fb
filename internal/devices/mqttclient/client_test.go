package mqttclient_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient/mosquittotest"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const waitLimit = 10 * time.Second

var testNow = time.Unix(1_700_000_000, 0)

// noShare is the setting Mosquitto 2.0 needs: it does not deliver $
// topics to shared subscriptions (see the package doc).
func noShare(c *mqttclient.Config) { c.NoShare = true }

// dial connects a transport to url with short timeouts; t's cleanup
// closes it.
func dial(t *testing.T, url string, mod func(*mqttclient.Config)) *mqttclient.Client {
	t.Helper()
	cfg := mqttclient.Config{URL: url, ConnectTimeout: 3 * time.Second, PublishTimeout: time.Second, MaxReconnectDelay: time.Second, KeepAlive: 2 * time.Second, Log: testenv.Logger(t)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := mqttclient.Dial(cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// gateway starts a gateway over tr on st.
func gateway(t *testing.T, st *store.Store, tr devices.Transport) *devices.Gateway {
	t.Helper()
	g := devices.New(st, devices.Config{Now: func() time.Time { return testNow }}, testenv.Logger(t))
	if err := g.Start(tr); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	return g
}

type msg struct{ Topic, Payload string }

// device is a paho client of thing on the broker, collecting the answers
// to its classic shadow's requests.
type device struct {
	thing string
	c     paho.Client
	got   chan msg
}

func newDevice(t *testing.T, addr, thing, user, password string) *device {
	t.Helper()
	d := &device{thing: thing, got: make(chan msg, 256)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(thing).
		SetUsername(user).SetPassword(password).
		SetAutoReconnect(false).SetConnectTimeout(waitLimit).SetCleanSession(true).SetOrderMatters(true)
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect device %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	tok := d.c.Subscribe("$aws/things/"+thing+"/shadow/+/+", 1, func(_ paho.Client, m paho.Message) {
		d.got <- msg{m.Topic(), string(m.Payload())}
	})
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe device %s: %v", thing, tok.Error())
	}
	return d
}

func (d *device) topic(suffix string) string { return "$aws/things/" + d.thing + "/shadow/" + suffix }

func (d *device) publish(t *testing.T, suffix, payload string) {
	t.Helper()
	tok := d.c.Publish(d.topic(suffix), 1, false, payload)
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", suffix, tok.Error())
	}
}

func (d *device) next(t *testing.T) msg {
	t.Helper()
	select {
	case m := <-d.got:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("%s: no answer within %v", d.thing, waitLimit)
		return msg{}
	}
}

// quiet fails when the device receives anything within d.
func (d *device) quiet(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case m := <-d.got:
		t.Fatalf("%s: unexpected message %s %s", d.thing, m.Topic, m.Payload)
	case <-time.After(within):
	}
}

// eventually waits until cond holds, failing after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", waitLimit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGatewayOverMosquitto: a gateway on the transport answers a device's
// shadow update and get through Mosquitto, and its own answers, which
// come back to it through the shared subscription, are ignored, not
// handled as requests.
func TestGatewayOverMosquitto(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	st := testenv.OpenStore(t, testenv.SQLite)
	tr := dial(t, mq.URL("", ""), noShare)
	g := gateway(t, st, tr)
	d := newDevice(t, mq.Addr, "thing-1", "", "")

	d.publish(t, "update", `{"state":{"reported":{"lock":"closed"}},"clientToken":"t1"}`)
	if m := d.next(t); m.Topic != d.topic("update/accepted") || !strings.Contains(m.Payload, `"version":1`) || !strings.Contains(m.Payload, `"clientToken":"t1"`) {
		t.Fatalf("first answer: %+v; want update/accepted, version 1, t1", m)
	}
	if m := d.next(t); m.Topic != d.topic("update/documents") {
		t.Fatalf("second answer: %+v; want update/documents", m)
	}
	d.publish(t, "get", `{"clientToken":"g1"}`)
	if m := d.next(t); m.Topic != d.topic("get/accepted") || !strings.Contains(m.Payload, `"lock":"closed"`) || !strings.Contains(m.Payload, `"clientToken":"g1"`) {
		t.Fatalf("get answer: %+v; want get/accepted with lock closed, g1", m)
	}
	// The three answers came back to the gateway: ignored, not handled.
	eventually(t, "the gateway's answers seen and ignored", func() bool { return g.Stats().Ignored == 3 })
	d.quiet(t, 200*time.Millisecond)
	if s := g.Stats(); s.Handled != 2 || s.Forged != 0 || s.Failed != 0 {
		t.Fatalf("gateway stats %+v; want 2 handled, nothing forged or failed", s)
	}
	if s := tr.Stats(); s.Received != 5 || s.Dropped != 0 || s.Connects != 1 {
		t.Fatalf("transport stats %+v; want 5 received, none dropped, 1 connect", s)
	}
}

// TestShareGroupSplitsWork: two transports in one share group, each with
// its gateway on the same store, on a broker that shares $ topics (mochi,
// run as an external broker): every request is handled once, by one of
// them, and both get some.
func TestShareGroupSplitsWork(t *testing.T) {
	addr := mochiBroker(t)
	st := testenv.OpenStore(t, testenv.SQLite)
	g1 := gateway(t, st, dial(t, "mqtt://"+addr, nil))
	g2 := gateway(t, st, dial(t, "mqtt://"+addr, nil))
	d := newDevice(t, addr, "thing-1", "", "")
	const n = 20
	for i := 1; i <= n; i++ {
		d.publish(t, "update", `{"state":{"reported":{"n":`+itoa(i)+`}}}`)
		if m := d.next(t); m.Topic != d.topic("update/accepted") || !strings.Contains(m.Payload, `"version":`+itoa(i)+`,`) {
			t.Fatalf("request %d: answer %+v; want update/accepted version %d", i, m, i)
		}
		if m := d.next(t); m.Topic != d.topic("update/documents") {
			t.Fatalf("request %d: answer %+v; want update/documents", i, m)
		}
	}
	d.quiet(t, 300*time.Millisecond) // no second answer to any request
	s1, s2 := g1.Stats(), g2.Stats()
	if s1.Handled+s2.Handled != n || s1.Handled == 0 || s2.Handled == 0 {
		t.Fatalf("handled %d + %d; want %d in all, split between both", s1.Handled, s2.Handled, n)
	}
	// The 2n answers came back to the group once each, and were ignored.
	eventually(t, "every answer seen once by the group", func() bool { return g1.Stats().Ignored+g2.Stats().Ignored == 2*n })
}

// TestShareGroupMosquitto: on Mosquitto (non-$ topics, which it does
// share), two transports of one group receive each message once between
// them, and a transport of another group receives them all.
func TestShareGroupMosquitto(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	var a, b, other atomic.Int64
	for _, s := range []struct {
		group string
		n     *atomic.Int64
	}{{"spkey", &a}, {"spkey", &b}, {"audit", &other}} {
		tr := dial(t, mq.URL("", ""), func(c *mqttclient.Config) { c.ShareGroup = s.group })
		n := s.n
		if err := tr.Subscribe("fleet/+/req", func(thing, topic string, payload []byte) { n.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	pub := newDevice(t, mq.Addr, "publisher", "", "")
	const n = 20
	for i := 0; i < n; i++ {
		tok := pub.c.Publish("fleet/"+itoa(i)+"/req", 1, false, "x")
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	eventually(t, "every message received by each group", func() bool { return a.Load()+b.Load() == n && other.Load() == n })
	time.Sleep(200 * time.Millisecond) // let a duplicate, if any, arrive
	if a.Load()+b.Load() != n || a.Load() == 0 || b.Load() == 0 || other.Load() != n {
		t.Fatalf("group spkey got %d + %d, group audit %d; want %d split between both, and %d", a.Load(), b.Load(), other.Load(), n, n)
	}
}

// TestReconnect: the broker is killed and restarted on the same port;
// the transport reconnects, subscribes again, and the gateway answers.
func TestReconnect(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	st := testenv.OpenStore(t, testenv.SQLite)
	tr := dial(t, mq.URL("", ""), noShare)
	g := gateway(t, st, tr)

	mq.Stop()
	eventually(t, "the transport sees the connection lost", func() bool { return !tr.Connected() })
	mq.Restart()
	eventually(t, "the transport reconnected and subscribed again", func() bool {
		s := tr.Stats()
		return tr.Connected() && s.Connects == 2 && s.Subscribed == 2
	})
	d := newDevice(t, mq.Addr, "thing-1", "", "")
	d.publish(t, "get", `{"clientToken":"after"}`)
	if m := d.next(t); m.Topic != d.topic("get/rejected") || !strings.Contains(m.Payload, `"code":404`) {
		t.Fatalf("answer after reconnect: %+v; want get/rejected 404 (no shadow yet)", m)
	}
	if s := g.Stats(); s.Handled != 1 {
		t.Fatalf("gateway stats %+v; want 1 handled", s)
	}
}

// TestPublishBounded: Publish fails fast while the broker is down, and
// within PublishTimeout when the broker stops answering.
func TestPublishBounded(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	tr := dial(t, mq.URL("", ""), func(c *mqttclient.Config) { c.PublishTimeout = 500 * time.Millisecond; c.KeepAlive = time.Minute })
	if err := tr.Publish("$aws/things/x/shadow/get/accepted", []byte("{}"), 1); err != nil {
		t.Fatalf("publish while up: %v", err)
	}

	mq.Pause() // connected, but no PUBACK comes
	start := time.Now()
	err := tr.Publish("$aws/things/x/shadow/get/accepted", []byte("{}"), 1)
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("publish to a paused broker: %v after %v; want an error within ~500ms", err, took)
	}
	mq.Stop()
	eventually(t, "the transport sees the connection lost", func() bool { return !tr.Connected() })
	start = time.Now()
	err = tr.Publish("$aws/things/x/shadow/get/accepted", []byte("{}"), 1)
	if took := time.Since(start); !errors.Is(err, mqttclient.ErrNotConnected) || took > 100*time.Millisecond {
		t.Fatalf("publish while down: %v after %v; want ErrNotConnected at once", err, took)
	}
	_ = tr.Close()
	if err := tr.Publish("$aws/things/x/shadow/get/accepted", []byte("{}"), 1); !errors.Is(err, mqttclient.ErrClosed) {
		t.Fatalf("publish after Close: %v; want ErrClosed", err)
	}
}

// TestACLAndCredentials: with the README's ACL and passwords, spkey logs
// in with the URL's credentials, a device may not write another thing's
// topics, and a wrong password fails Dial without showing it.
func TestACLAndCredentials(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{
		Users: map[string]string{"spkey": "spkey-pw", "thing-a": "a-pw", "thing-b": "b-pw"},
		ACL:   "user spkey\ntopic readwrite $aws/things/#\n\npattern readwrite $aws/things/%c/#",
	})
	if _, err := mqttclient.Dial(mqttclient.Config{URL: mq.URL("spkey", "wrong-secret"), ConnectTimeout: 3 * time.Second}); err == nil || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("dial with a wrong password: %v; want an error without the password", err)
	}
	st := testenv.OpenStore(t, testenv.SQLite)
	g := gateway(t, st, dial(t, mq.URL("spkey", "spkey-pw"), noShare))
	a := newDevice(t, mq.Addr, "thing-a", "thing-a", "a-pw")
	b := newDevice(t, mq.Addr, "thing-b", "thing-b", "b-pw")

	// thing-a writes thing-b's shadow: Mosquitto drops it (MQTT 3.1.1 still
	// PUBACKs), the gateway never sees it.
	tok := a.c.Publish(b.topic("update"), 1, false, `{"state":{"reported":{"lock":"open"}}}`)
	if !tok.WaitTimeout(waitLimit) {
		t.Fatal("forged publish: no PUBACK")
	}
	a.publish(t, "get", `{"clientToken":"a"}`)
	if m := a.next(t); m.Topic != a.topic("get/rejected") {
		t.Fatalf("thing-a's get: %+v; want get/rejected (no shadow)", m)
	}
	b.quiet(t, 200*time.Millisecond)
	if _, found, err := st.Shadow(t.Context(), "thing-b", ""); err != nil || found {
		t.Fatalf("thing-b's shadow: found %v, %v; want none", found, err)
	}
	if s := g.Stats(); s.Handled != 1 {
		t.Fatalf("gateway stats %+v; want only thing-a's get handled", s)
	}
}

// TestConfigErrors: bad settings fail Dial with a clear error, and the
// password never shows.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  mqttclient.Config
		want string
	}{
		{mqttclient.Config{URL: "http://u:hunter2@h:1"}, "scheme"},
		{mqttclient.Config{URL: "mqtt://u:hunter2@:1883"}, "no host"},
		{mqttclient.Config{URL: "mqtt://u:hunter2@h:1883/x"}, "no path"},
		{mqttclient.Config{URL: "mqtt://h:1883", ShareGroup: "a/b"}, "share group"},
		{mqttclient.Config{URL: "mqtt://h:1883", CAFile: "ca.pem"}, "mqtts"},
		{mqttclient.Config{URL: "mqtts://h:8883", CAFile: "/nonexistent/ca.pem"}, "CA file"},
		{mqttclient.Config{URL: "mqtt://h:1883", Workers: -1}, "negative"},
	} {
		_, err := mqttclient.Dial(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Dial(%+v): %v; want an error with %q and no password", c.cfg, err, c.want)
		}
	}
	for raw, want := range map[string]string{
		"mqtt://h":            "tcp://h:1883",
		"mqtts://u:p@h":       "ssl://h:8883",
		"mqtt://[::1]:1884":   "tcp://[::1]:1884",
		"mqtts://h:9000/":     "ssl://h:9000",
		"mqtt://spkey:pw@h:1": "tcp://h:1",
	} {
		if got, _, _, _, err := mqttclient.ParseURL(raw); err != nil || got != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	if _, u, p, _, _ := mqttclient.ParseURL("mqtt://spkey:s%40cret@h"); u != "spkey" || p != "s@cret" {
		t.Errorf("credentials %q %q; want spkey s@cret", u, p)
	}
}

// TestSlowThingDoesNotBlockOthers: a handler stuck on one thing holds up
// that thing's later messages (in order) but not another thing's.
func TestSlowThingDoesNotBlockOthers(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	tr := dial(t, mq.URL("", ""), func(c *mqttclient.Config) { c.Workers = 4; c.NoShare = true })
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) }) // Close waits for the handler
	var fastSeen atomic.Int64
	slowOrder := make(chan string, 8)
	err := tr.Subscribe("$aws/things/+/shadow/#", func(thing, topic string, payload []byte) {
		switch thing {
		case "slow":
			slowOrder <- string(payload)
			if string(payload) == "1" {
				<-release
			}
		default:
			fastSeen.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A thing on another worker than "slow".
	fast := ""
	for i := 0; fast == ""; i++ {
		if name := "fast-" + itoa(i); mqttclient.WorkerOf(name, 4) != mqttclient.WorkerOf("slow", 4) {
			fast = name
		}
	}
	pub := newDevice(t, mq.Addr, "publisher", "", "")
	for _, p := range []string{"1", "2", "3"} {
		tok := pub.c.Publish("$aws/things/slow/shadow/update", 1, false, p)
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	tok := pub.c.Publish("$aws/things/"+fast+"/shadow/update", 1, false, "x")
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	eventually(t, "the other thing handled while the slow one is stuck", func() bool { return fastSeen.Load() == 1 })
	once.Do(func() { close(release) })
	for _, want := range []string{"1", "2", "3"} {
		select {
		case got := <-slowOrder:
			if got != want {
				t.Fatalf("slow thing's message %q; want %q (in order)", got, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("slow thing's message %q not handled", want)
		}
	}
}

// mochiBroker runs a mochi MQTT broker that lets everyone in, as an
// external broker that shares $ topics, on a free port; t's cleanup
// stops it.
func mochiBroker(t *testing.T) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: testenv.Discard()})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Address()
}

// allowHook lets every client connect, publish and subscribe.
type allowHook struct{ mqtt.HookBase }

func (h *allowHook) ID() string { return "allow-all" }

func (h *allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func itoa(i int) string { return strconv.Itoa(i) }

// TestTLS: an mqtts:// URL with --mqtt-ca-file reaches a Mosquitto whose
// certificate that CA signed; without the CA file the certificate is
// refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	authority, err := ca.New(time.Now(), "test device CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authority.ServerCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _, err := authority.PEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"server.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		"ca.pem":     caPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mq := mosquittotest.Start(t, mosquittotest.Options{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")})
	if _, err := mqttclient.Dial(mqttclient.Config{URL: mq.URL("", ""), ConnectTimeout: 3 * time.Second}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial without the CA file: %v; want a certificate error", err)
	}
	tr := dial(t, mq.URL("", ""), func(c *mqttclient.Config) { c.CAFile = filepath.Join(dir, "ca.pem") })
	if err := tr.Publish("spkey-test/tls", []byte("x"), 1); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
}

// TestQueueFullDrops: when a thing's worker is stuck and its queue full,
// further messages are dropped and counted, not buffered without bound;
// the rest are handled once the worker moves on.
func TestQueueFullDrops(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	tr := dial(t, mq.URL("", ""), func(c *mqttclient.Config) { c.Workers, c.QueueSize, c.NoShare = 1, 2, true })
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) }) // Close waits for the handler
	var handled atomic.Int64
	if err := tr.Subscribe("$aws/things/+/shadow/#", func(string, string, []byte) { <-release; handled.Add(1) }); err != nil {
		t.Fatal(err)
	}
	pub := newDevice(t, mq.Addr, "publisher", "", "")
	const n = 8
	for i := 0; i < n; i++ {
		tok := pub.c.Publish("$aws/things/slow/shadow/update", 1, false, itoa(i))
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	eventually(t, "every message queued or dropped", func() bool { s := tr.Stats(); return s.Received+s.Dropped == n })
	s := tr.Stats()
	if s.Received > 3 || s.Dropped < n-3 {
		t.Fatalf("stats %+v; want at most 3 taken (1 running, 2 queued), the rest dropped", s)
	}
	once.Do(func() { close(release) })
	eventually(t, "the queued messages handled", func() bool { return handled.Load() == s.Received })
}
