// Package sim is a simulated lock: an MQTT client that plays spkey's
// shadow layout v1 (README "Lock firmware: the shadow layout (v1)") as
// firmware would. It holds the keys spkey desires and reports them back
// exactly, answers open and writeKey requests after a delay (failing a
// share of them on purpose), reports its battery, goes offline and
// online, and presses its doorbell on demand. `spkey sim` runs a fleet of
// them; tests and benchmarks use one directly.
package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// Layout is the shadow layout version the simulator speaks.
const Layout = 1

// FailureMessage is the error a request failed on purpose reports.
const FailureMessage = "simulated failure"

// DefaultFirmware is the firmware a Lock reports when Config.Firmware is
// empty.
const DefaultFirmware = "spkey-sim-1"

// qos of every subscription and publication: at least once.
const qos = 1

// maxHandled bounds the request ids a Lock remembers having acted on;
// spkey reads at most 64 results of each kind, so this is ample.
const maxHandled = 1024

// Config is one simulated lock.
type Config struct {
	// Thing is the lock's thing name (lock-1001), also its client id.
	Thing string
	// Broker is the broker's URL: tcp://host:port (with Username and
	// Password) or ssl://host:port (with TLS holding a client certificate).
	Broker             string
	Username, Password string
	TLS                *tls.Config
	// Delay is how long an open or writeKey request takes.
	Delay time.Duration
	// FailRate is the share (0..1) of requests that fail with
	// FailureMessage.
	FailRate float64
	// MaxAge refuses (failed, "expired") a request whose at is older than
	// this by the lock's clock; 0: never.
	MaxAge time.Duration
	// BatteryEvery is how often the battery drops by one and is reported;
	// 0: never (it is reported at every connection).
	BatteryEvery time.Duration
	// Firmware is the reported firmware (DefaultFirmware when empty).
	Firmware string
	// Print receives one line per action handled (nil: discarded). It may
	// be called from several goroutines, never with a secret.
	Print func(line string)
	// Now is the lock's clock (nil: time.Now); Rand returns a number in
	// [0,1) for FailRate (nil: math/rand/v2).
	Now  func() time.Time
	Rand func() float64
}

// Lock is one simulated lock. New builds it, Start connects it; Offline
// and Online flap it; Close stops it.
type Lock struct {
	cfg    Config
	client paho.Client
	topics topics

	mu       sync.Mutex
	closed   bool
	version  map[string]int64           // newest document version seen, by shadow ("": classic)
	keys     map[string]json.RawMessage // the keys held, as desired
	handled  map[string]map[string]json.RawMessage
	pending  map[string]*time.Timer // "kind/rid" scheduled, not yet done
	cleared  map[string]bool        // "kind/rid" results reported null, not yet gone from reported
	battery  int
	presses  int
	pressTag string
	stop     chan struct{}
	done     sync.WaitGroup
}

// The request kinds of the layout, under desired and reported.
const (
	kindOpen     = "open"
	kindWriteKey = "writeKey"
)

type topics struct{ base, update, get, presence string }

func topicsOf(thing string) topics {
	base := "$aws/things/" + thing + "/shadow"
	return topics{base: base, update: base + "/update", get: base + "/get", presence: "$aws/things/" + thing + "/presence"}
}

// New returns a Lock of cfg, not connected. It returns an error for an
// empty Thing or Broker or a FailRate outside 0..1.
func New(cfg Config) (*Lock, error) {
	switch {
	case cfg.Thing == "":
		return nil, errors.New("sim: a lock needs a thing name")
	case cfg.Broker == "":
		return nil, errors.New("sim: a lock needs a broker URL (tcp://host:port or ssl://host:port)")
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
	if cfg.Firmware == "" {
		cfg.Firmware = DefaultFirmware
	}
	l := &Lock{cfg: cfg, topics: topicsOf(cfg.Thing), keys: map[string]json.RawMessage{}, version: map[string]int64{},
		handled: map[string]map[string]json.RawMessage{kindOpen: {}, kindWriteKey: {}},
		pending: map[string]*time.Timer{}, cleared: map[string]bool{}, battery: 100,
		pressTag: fmt.Sprintf("%x", cfg.Now().UnixNano()), stop: make(chan struct{})}
	opts := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.Thing).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10*time.Second).
		SetConnectTimeout(10*time.Second).SetKeepAlive(30*time.Second).
		SetOnConnectHandler(l.onConnect).
		// The presence topic (README, "Presence"): what an external broker
		// tells spkey; the embedded broker sees the connection itself.
		SetWill(l.topics.presence, `{"online":false}`, qos, false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { l.print("connection lost: %v", err) })
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	} else {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	l.client = paho.NewClient(opts)
	return l, nil
}

// Thing returns the lock's thing name.
func (l *Lock) Thing() string { return l.cfg.Thing }

// Start connects the lock (retrying until ctx ends) and starts its
// battery clock. It returns ctx's error when the first connection did not
// succeed in time; the lock keeps trying until Close.
func (l *Lock) Start(ctx context.Context) error {
	if err := l.Online(ctx); err != nil {
		return err
	}
	if l.cfg.BatteryEvery > 0 {
		l.done.Add(1)
		go l.batteryLoop()
	}
	return nil
}

// Online connects the lock; on every connection it subscribes to its
// shadow's answers, reports its state and asks for the whole document, and
// so catches up on what it missed. It returns when connected, or ctx's
// error (the lock keeps trying).
func (l *Lock) Online(ctx context.Context) error {
	tok := l.client.Connect()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return fmt.Errorf("sim: connect %s: %w", l.cfg.Thing, ctx.Err())
	}
}

// Offline disconnects the lock; requests it was acting on still finish
// and are reported when it is online again.
func (l *Lock) Offline() {
	if l.client.IsConnectionOpen() {
		// A clean disconnect sends no will.
		l.client.Publish(l.topics.presence, qos, false, `{"online":false}`).WaitTimeout(time.Second)
	}
	l.client.Disconnect(250)
	l.print("offline")
}

// Connected reports whether the lock is online.
func (l *Lock) Connected() bool { return l.client.IsConnectionOpen() }

// Close disconnects the lock and stops its timers and battery clock.
func (l *Lock) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.stop)
	for _, t := range l.pending {
		t.Stop()
	}
	l.mu.Unlock()
	l.done.Wait()
	if l.client.IsConnectionOpen() {
		l.client.Publish(l.topics.presence, qos, false, `{"online":false}`).WaitTimeout(time.Second)
	}
	l.client.Disconnect(250)
}

// Press presses the doorbell: a new pressId with the lock's time. It
// returns the pressId, or an error when the lock is not connected.
func (l *Lock) Press() (string, error) {
	l.mu.Lock()
	l.presses++
	id := fmt.Sprintf("p-%s-%d", l.pressTag, l.presses)
	l.mu.Unlock()
	if !l.Connected() {
		return "", fmt.Errorf("sim: %s is offline: the press is lost", l.cfg.Thing)
	}
	l.report("", map[string]any{"doorbell": map[string]any{"pressId": id, "at": l.cfg.Now().Unix()}})
	l.print("doorbell pressed (%s)", id)
	return id, nil
}

func (l *Lock) print(format string, args ...any) {
	l.cfg.Print(l.cfg.Thing + ": " + fmt.Sprintf(format, args...))
}

// onConnect runs in its own goroutine (paho) after every connection: it
// subscribes to the answers of the classic shadow and of the key pages,
// reports its state and gets every shadow.
func (l *Lock) onConnect(c paho.Client) {
	for _, base := range []string{l.topics.base, l.topics.base + "/name/+"} {
		for _, suffix := range []string{"/update/delta", "/update/documents", "/get/accepted", "/get/rejected"} {
			topic := base + suffix
			tok := c.Subscribe(topic, qos, l.onMessage)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				l.print("subscribe %s failed: %v", topic, tok.Error())
				return
			}
		}
	}
	l.mu.Lock()
	battery := l.battery
	l.mu.Unlock()
	l.print("online")
	l.publish(l.topics.presence, []byte(`{"online":true}`))
	l.report("", map[string]any{"layout": Layout, "lock": "locked", "battery": battery, "firmware": l.cfg.Firmware})
	l.publish(l.topics.get, []byte(`{}`))
	for i := range lock.KeyPages {
		l.publish(l.topics.base+"/name/"+fmt.Sprintf("%s%02d", lock.KeyPagePrefix, i)+"/get", []byte(`{}`))
	}
}

// shadowOf returns the shadow an answer topic is about: "" for the
// classic shadow, the name of a named one.
func (l *Lock) shadowOf(topic string) string {
	rest, ok := strings.CutPrefix(topic, l.topics.base+"/name/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// publish sends payload without waiting in the caller (paho's handlers
// must not block); a failure is printed.
func (l *Lock) publish(topic string, payload []byte) {
	tok := l.client.Publish(topic, qos, false, payload)
	go func() {
		if tok.WaitTimeout(30*time.Second) && tok.Error() != nil {
			l.print("publish %s failed: %v", topic, tok.Error())
		}
	}()
}

// report publishes reported as an update of the reported state of shadow
// shadowName ("": the classic shadow).
func (l *Lock) report(shadowName string, reported map[string]any) {
	b, err := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}})
	if err != nil {
		l.print("encode report: %v", err)
		return
	}
	topic := l.topics.update
	if shadowName != "" {
		topic = l.topics.base + "/name/" + shadowName + "/update"
	}
	l.publish(topic, b)
}

func (l *Lock) batteryLoop() {
	defer l.done.Done()
	t := time.NewTicker(l.cfg.BatteryEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		l.battery--
		if l.battery < 5 {
			l.battery = 100 // a fresh battery
		}
		b := l.battery
		l.mu.Unlock()
		if l.Connected() {
			l.report("", map[string]any{"battery": b})
			l.print("battery %d%%", b)
		}
	}
}
