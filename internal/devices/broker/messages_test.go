package broker_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/broker"
)

func TestDeviceToServer(t *testing.T) {
	e := start(t, nil)
	a := e.mustDial(t, "lock-a")
	a.publish(t, "$aws/things/lock-a/shadow/update", `{"state":{"reported":{"locked":true}}}`)

	waitFor(t, "the server to get the publication", func() bool { return len(e.rec.msgs()) == 1 })
	want := []message{{"lock-a", "$aws/things/lock-a/shadow/update", `{"state":{"reported":{"locked":true}}}`}}
	if diff := cmp.Diff(want, e.rec.msgs()); diff != "" {
		t.Errorf("server got (-want +got):\n%s", diff)
	}
}

func TestServerToDevice(t *testing.T) {
	e := start(t, nil)
	a := e.mustDial(t, "lock-a")
	b := e.mustDial(t, "lock-b")
	for thing, d := range map[string]*device{"lock-a": a, "lock-b": b} {
		filter := "$aws/things/" + thing + "/shadow/#"
		if got := d.subscribe(t, filter); got[filter] != 1 {
			t.Fatalf("subscribe %s: SUBACK %v, want QoS 1 granted", filter, got)
		}
	}

	if err := e.b.Publish("$aws/things/lock-a/shadow/update/delta", []byte(`{"state":{"locked":false}}`), 1); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "lock-a to get the delta", func() bool { return len(a.messages()) == 1 })
	want := []message{{"", "$aws/things/lock-a/shadow/update/delta", `{"state":{"locked":false}}`}}
	if diff := cmp.Diff(want, a.messages()); diff != "" {
		t.Errorf("lock-a got (-want +got):\n%s", diff)
	}
	// The node's own publications do not come back to its Subscribe.
	if got := e.rec.msgs(); len(got) != 0 {
		t.Errorf("server Subscribe got the node's own publication: %v", got)
	}
	// lock-b is a sync point: a publication to it after the delta arrives
	// after anything the delta could have brought it.
	if err := e.b.Publish("$aws/things/lock-b/shadow/get/accepted", []byte(`{}`), 0); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "lock-b to get its message", func() bool { return len(b.messages()) == 1 })
	if diff := cmp.Diff([]message{{"", "$aws/things/lock-b/shadow/get/accepted", `{}`}}, b.messages()); diff != "" {
		t.Errorf("lock-b got (-want +got):\n%s", diff)
	}
}

func TestPublishRefusesBadArguments(t *testing.T) {
	e := start(t, func(c *broker.Config) { c.MaxPayload = 16 })
	tests := []struct {
		name    string
		topic   string
		payload string
		qos     byte
	}{
		{"wildcard topic", "$aws/things/+/shadow", "", 0},
		{"empty topic", "", "", 0},
		{"qos 2", "$aws/things/a/shadow", "", 2},
		{"payload over the maximum", "$aws/things/a/shadow", strings.Repeat("x", 17), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.b.Publish(tt.topic, []byte(tt.payload), tt.qos); err == nil {
				t.Error("Publish succeeded, want an error")
			}
		})
	}
}

func TestDeviceStaysInsideItsThing(t *testing.T) {
	e := start(t, nil)
	a := e.mustDial(t, "lock-a")
	b := e.mustDial(t, "lock-b")
	b.subscribe(t, "$aws/things/lock-b/#")

	// Subscriptions: only filters inside lock-a's own prefix are granted.
	got := a.subscribe(t,
		"$aws/things/lock-a/shadow/#",
		"$aws/things/lock-a/+/update",
		"#",
		"$aws/things/+/shadow/#",
		"$aws/things/lock-b/shadow/#",
		"$aws/things/lock-a",
		"$share/g/$aws/things/lock-a/shadow/#",
		"$SYS/#",
	)
	want := map[string]byte{
		"$aws/things/lock-a/shadow/#":          1,
		"$aws/things/lock-a/+/update":          1,
		"#":                                    0x80,
		"$aws/things/+/shadow/#":               0x80,
		"$aws/things/lock-b/shadow/#":          0x80,
		"$aws/things/lock-a":                   0x80,
		"$share/g/$aws/things/lock-a/shadow/#": 0x80,
		"$SYS/#":                               0x80,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	if got := e.b.Stats().RefusedSubscribes; got != 6 {
		t.Errorf("RefusedSubscribes = %d, want 6", got)
	}

	// Publications outside lock-a's prefix are dropped (QoS 0: MQTT 3.1.1
	// has no negative acknowledgement), logged and counted.
	for _, topic := range []string{"$aws/things/lock-b/shadow/update", "$aws/things/lock-b", "lock-b/anything", "$aws/things/lock-a"} {
		tok := a.Publish(topic, 0, false, "forged")
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	waitFor(t, "four refused publications", func() bool { return e.b.Stats().RefusedPublishes == 4 })

	// A message lock-b may get, after the forged ones: it must be the
	// only one lock-b sees.
	b.publish(t, "$aws/things/lock-b/shadow/update", "real")
	// The PUBACK can overtake the delivery of b's own message to itself.
	waitFor(t, "lock-b to get its own message", func() bool { return len(b.messages()) > 0 })
	if err := e.b.Publish("$aws/things/lock-b/shadow/update/delta", []byte("delta"), 1); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "lock-b to get the delta", func() bool { return len(b.messages()) > 1 })
	wantB := []message{{"", "$aws/things/lock-b/shadow/update", "real"}, {"", "$aws/things/lock-b/shadow/update/delta", "delta"}}
	if diff := cmp.Diff(wantB, b.messages()); diff != "" {
		t.Errorf("lock-b got (-want +got):\n%s", diff)
	}
	// The server saw lock-b's own message with lock-b's identity, nothing forged.
	if diff := cmp.Diff([]message{{"lock-b", "$aws/things/lock-b/shadow/update", "real"}}, e.rec.msgs()); diff != "" {
		t.Errorf("server got (-want +got):\n%s", diff)
	}

	// lock-a gets nothing of lock-b's even so: a message on its own
	// topic is the sync point.
	if err := e.b.Publish("$aws/things/lock-a/shadow/update/delta", []byte("for a"), 0); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "lock-a to get its delta", func() bool { return len(a.messages()) > 0 })
	if diff := cmp.Diff([]message{{"", "$aws/things/lock-a/shadow/update/delta", "for a"}}, a.messages()); diff != "" {
		t.Errorf("lock-a got (-want +got):\n%s", diff)
	}

	// A refused publication at QoS 1 closes the connection (mochi, MQTT 3.1.1).
	a.Publish("$aws/things/lock-b/shadow/update", 1, false, "forged")
	select {
	case <-a.lost:
	case <-timeout():
		t.Fatal("lock-a still connected after a refused QoS 1 publication")
	}
}

func TestOversizedPayload(t *testing.T) {
	e := start(t, nil) // default maximum: 128 KiB
	a := e.mustDial(t, "lock-a")

	a.publish(t, "$aws/things/lock-a/shadow/update", strings.Repeat("x", broker.DefaultMaxPayload))
	waitFor(t, "the maximum payload to reach the server", func() bool { return len(e.rec.msgs()) == 1 })

	a.Publish("$aws/things/lock-a/shadow/update", 0, false, strings.Repeat("y", broker.DefaultMaxPayload+1))
	select {
	case <-a.lost:
	case <-timeout():
		t.Fatal("device still connected after an oversized payload")
	}
	waitFor(t, "the device to be reported offline", func() bool { return len(e.rec.events()) == 2 })
	if got := e.b.Stats().OversizedPayloads; got != 1 {
		t.Errorf("OversizedPayloads = %d, want 1", got)
	}
	if got := len(e.rec.msgs()); got != 1 {
		t.Errorf("server got %d messages, want only the first", got)
	}
}

func TestRetainedMessagesAreNotStored(t *testing.T) {
	e := start(t, nil)
	a := e.mustDial(t, "lock-a")
	tok := a.Publish("$aws/things/lock-a/shadow/update", 1, true, "retain me")
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	// Delivered to the current subscriber...
	waitFor(t, "the server to get the retained publication", func() bool { return len(e.rec.msgs()) == 1 })
	// ...but a later subscription gets nothing retained (mochi hands
	// retained messages to an inline subscription inside Subscribe).
	var late []message
	if err := e.b.Subscribe("$aws/things/lock-a/#", func(thing, topic string, payload []byte) {
		late = append(late, message{thing, topic, string(payload)})
	}); err != nil {
		t.Fatal(err)
	}
	if len(late) != 0 {
		t.Errorf("a later subscription got retained messages: %v", late)
	}
}

func TestMaxClients(t *testing.T) {
	e := start(t, func(c *broker.Config) { c.MaxClients = 1 })
	e.mustDial(t, "lock-a")
	e.auth.addPassword("lock-b", "pw", "lock-b")
	if _, err := e.dial(t, deviceOpts{clientID: "lock-b", username: "lock-b", password: "pw"}); err == nil {
		t.Fatal("second device connected beyond MaxClients = 1")
	}
}
