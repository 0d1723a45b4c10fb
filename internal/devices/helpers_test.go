package devices_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/devices/broker"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const waitLimit = 5 * time.Second

// testNow is the gateway's clock in the tests: every shadow timestamp is T.
var testNow = time.Unix(1_700_000_000, 0)

// T is testNow in the shadow payloads.
const T = "1700000000"

// secret is the password of thing's device.
func secret(thing string) string { return "test-secret-" + thing }

// testAuth lets a device in as the thing of its username when its password
// is that thing's secret; certificates are refused.
type testAuth struct{}

func (testAuth) Password(_ context.Context, username string, password []byte) (string, error) {
	if string(password) != secret(username) {
		return "", fmt.Errorf("user %q: %w", username, broker.ErrDenied)
	}
	return username, nil
}

func (testAuth) Certificate(context.Context, *x509.Certificate) (string, error) {
	return "", broker.ErrDenied
}

// env is a store, a broker on 127.0.0.1:0 and a started gateway over them.
type env struct {
	st *store.Store
	br *broker.Broker
	gw *devices.Gateway
}

func newEnv(t *testing.T, b testenv.Backend) *env {
	t.Helper()
	st := testenv.OpenStore(t, b)
	br, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Auth: testAuth{}, Log: testenv.Discard()})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { _ = br.Close() })
	gw := devices.New(st, devices.Config{Now: func() time.Time { return testNow }}, testenv.Logger(t))
	if err := gw.Start(br); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	return &env{st: st, br: br, gw: gw}
}

// msg is one message a device received.
type msg struct{ Topic, Payload string }

// device is a paho client connected as a thing, collecting the answers to
// its shadows' requests.
type device struct {
	thing string
	c     paho.Client
	got   chan msg
}

// dial connects a device as thing and subscribes it to the answer topics
// of its classic and named shadows.
func (e *env) dial(t *testing.T, thing string) *device {
	t.Helper()
	d := &device{thing: thing, got: make(chan msg, 64)}
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + e.br.Addr()).
		SetClientID(thing).
		SetUsername(thing).
		SetPassword(secret(thing)).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitLimit).
		SetCleanSession(true).
		SetProtocolVersion(4).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			d.got <- msg{m.Topic(), string(m.Payload())}
		})
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	prefix := "$aws/things/" + thing + "/shadow/"
	codes := d.subscribe(t, prefix+"+/+", prefix+"name/+/+/+")
	for f, c := range codes {
		if c != 1 {
			t.Fatalf("subscribe %s: SUBACK %#x", f, c)
		}
	}
	return d
}

// subscribe subscribes at QoS 1 and returns each filter's SUBACK code
// (0x80: refused).
func (d *device) subscribe(t *testing.T, filters ...string) map[string]byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := d.c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()
}

// publish publishes at QoS 1 on the device's shadow topic suffix (e.g.
// "update", "name/keys/get") and waits for the PUBACK.
func (d *device) publish(t *testing.T, suffix, payload string) {
	t.Helper()
	topic := "$aws/things/" + d.thing + "/shadow/" + suffix
	tok := d.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next waits for the device's next message.
func (d *device) next(t *testing.T) msg {
	t.Helper()
	select {
	case m := <-d.got:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("%s: no message within %v", d.thing, waitLimit)
		return msg{}
	}
}

// request publishes payload on suffix and returns the n answers that
// follow.
func (d *device) request(t *testing.T, suffix, payload string, n int) []msg {
	t.Helper()
	d.publish(t, suffix, payload)
	out := make([]msg, n)
	for i := range out {
		out[i] = d.next(t)
	}
	return out
}

// topic is the device's shadow topic with suffix.
func (d *device) topic(suffix string) string { return "$aws/things/" + d.thing + "/shadow/" + suffix }
