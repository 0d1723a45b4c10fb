package devices_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestAbsentShadow: get and delete of a shadow that never existed are
// answered 404 and create nothing.
func TestAbsentShadow(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			d := e.dial(t, "thing-2")
			notFound := `{"code":404,"message":"No shadow exists with name: 'thing-2'","timestamp":` + T + `,"clientToken":"c"}`
			for _, op := range []string{"get", "delete"} {
				got := d.request(t, op, `{"clientToken":"c"}`, 1)
				if diff := cmp.Diff(msg{d.topic(op + "/rejected"), notFound}, got[0]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", op, diff)
				}
			}
			if _, found := storedShadow(t, e.st, "thing-2", ""); found {
				t.Error("a shadow row was created")
			}
		})
	}
}

// TestNamedShadows: a named shadow has its own document and versions,
// apart from the classic shadow and from other named ones.
func TestNamedShadows(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			d := e.dial(t, "thing-3")
			got := d.request(t, "name/keys/update", `{"state":{"reported":{"slots":2}}}`, 2)
			want := msg{d.topic("name/keys/update/accepted"), `{"state":{"reported":{"slots":2}},"metadata":{"reported":{"slots":{"timestamp":` + T + `}}},"version":1,"timestamp":` + T + `}`}
			if diff := cmp.Diff(want, got[0]); diff != "" {
				t.Errorf("named update (-want +got):\n%s", diff)
			}
			got = d.request(t, "get", ``, 1)
			if got[0].Topic != d.topic("get/rejected") {
				t.Errorf("classic get after a named update: %v, want get/rejected", got[0])
			}
			got = d.request(t, "name/other/get", ``, 1)
			if diff := cmp.Diff(msg{d.topic("name/other/get/rejected"), `{"code":404,"message":"No shadow exists with name: 'thing-3~other'","timestamp":` + T + `}`}, got[0]); diff != "" {
				t.Errorf("other named get (-want +got):\n%s", diff)
			}
			got = d.request(t, "update", `{"state":{"reported":{"lock":"closed"}}}`, 2)
			if got[0].Topic != d.topic("update/accepted") {
				t.Fatalf("classic update: %v", got[0])
			}
			classic, _ := storedShadow(t, e.st, "thing-3", "")
			named, _ := storedShadow(t, e.st, "thing-3", "keys")
			if classic.Version != 1 || named.Version != 1 || classic.Reported["slots"] != nil || named.Reported["lock"] != nil {
				t.Errorf("classic %+v and named %+v are not apart", classic, named)
			}
		})
	}
}

// TestOtherThingsShadow: a device can neither read another thing's
// answers nor change its shadow; the gateway itself drops a request whose
// topic names another thing than its sender's, and ignores publications
// that are no request.
func TestOtherThingsShadow(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			a := e.dial(t, "thing-a")
			codes := a.subscribe(t, "$aws/things/thing-b/shadow/+/+", "$aws/things/+/shadow/#")
			if diff := cmp.Diff(map[string]byte{"$aws/things/thing-b/shadow/+/+": 0x80, "$aws/things/+/shadow/#": 0x80}, codes); diff != "" {
				t.Errorf("SUBACK codes (-want +got):\n%s", diff)
			}
			// The broker drops it (at QoS 0; at QoS 1 it disconnects an MQTT
			// 3.1.1 device); a's own request after it is the barrier.
			if tok := a.c.Publish("$aws/things/thing-b/shadow/update", 0, false, `{"state":{"reported":{"lock":"open"}}}`); !tok.WaitTimeout(waitLimit) {
				t.Fatal("forged publish: no PUBACK")
			}
			if got := a.request(t, "get", ``, 1); got[0].Topic != a.topic("get/rejected") {
				t.Errorf("a's own get: %v, want get/rejected", got[0])
			}

			// The gateway's own check, for a transport that would let it through.
			ctx := context.Background()
			for _, c := range []struct{ name, thing, topic string }{
				{"forged", "thing-a", "$aws/things/thing-b/shadow/update"},
				{"forged named", "thing-a", "$aws/things/thing-b/shadow/name/keys/delete"},
				{"answer topic", "thing-a", "$aws/things/thing-a/shadow/update/accepted"},
				{"no shadow topic", "thing-a", "$aws/things/thing-a/jobs/notify"},
				{"unknown operation", "thing-a", "$aws/things/thing-a/shadow/patch"},
			} {
				if got := devices.Handle(ctx, e.gw, c.thing, c.topic, []byte(`{"state":{"reported":{"lock":"open"}}}`)); got != nil {
					t.Errorf("%s: answered %v", c.name, got)
				}
			}
			if _, found := storedShadow(t, e.st, "thing-b", ""); found {
				t.Error("thing-b has a shadow")
			}
			if _, found := storedShadow(t, e.st, "thing-b", "keys"); found {
				t.Error("thing-b has a keys shadow")
			}
			if _, status := logged(t, e.st, "thing-b"); len(status) != 0 {
				t.Errorf("thing-b has logged statuses: %v", status)
			}
			st := e.gw.Stats()
			if diff := cmp.Diff(devices.Stats{Handled: 1, Forged: 2, Ignored: 3}, st); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStoreFailure: a request the store cannot run is answered 500 on its
// /rejected topic, with the request's clientToken.
func TestStoreFailure(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			got := devices.Handle(ctx, e.gw, "thing-5", "$aws/things/thing-5/shadow/update", []byte(`{"state":{"reported":{"lock":"open"}},"clientToken":"x"}`))
			want := []devices.Answer{{Topic: "$aws/things/thing-5/shadow/update/rejected", Payload: `{"code":500,"message":"Internal service failure","timestamp":` + T + `,"clientToken":"x"}`}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if _, found := storedShadow(t, e.st, "thing-5", ""); found {
				t.Error("the shadow was stored")
			}
			if n := e.gw.Stats().Failed; n != 1 {
				t.Errorf("Failed = %d, want 1", n)
			}
		})
	}
}
