package httpapi_test

import (
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// presenceDevice is a device connected to the fixture's broker; conn is
// its TCP connection, to drop without a DISCONNECT.
type presenceDevice struct {
	c    paho.Client
	conn net.Conn
}

func connectDevice(t *testing.T, f *deviceFixture, thing, password string) *presenceDevice {
	t.Helper()
	d := &presenceDevice{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + f.srv.MQTTAddr).SetClientID(thing).SetUsername(thing).SetPassword(password).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(deviceWait).SetProtocolVersion(4).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", u.Host, deviceWait)
			d.conn = conn
			return conn, err
		})
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d
}

// presenceOf is what basic-info and details say of lock id's device.
func presenceOf(t *testing.T, f *deviceFixture, id string) (online bool, lastSeen string) {
	t.Helper()
	info := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/locks/" + id + "/basic-info", Key: f.keyA}, http.StatusOK)
	det := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/locks/" + id + "/details", Key: f.keyA}, http.StatusOK)
	online, _ = info["online"].(bool)
	lastSeen, _ = info["lastSeen"].(string)
	if det["online"] != info["online"] || det["lastSeen"] != info["lastSeen"] {
		// The two reads may straddle a change: read again.
		return presenceOf(t, f, id)
	}
	return online, lastSeen
}

// presenceEvents lists the presence events of lock id as partners read
// them (GET /locks/{id}/events).
func presenceEvents(t *testing.T, f *deviceFixture, id string) []string {
	t.Helper()
	got := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/locks/" + id + "/events", Key: f.keyA}, http.StatusOK)
	evs, _ := got["events"].([]any)
	out := []string{}
	for _, e := range evs {
		m, _ := e.(map[string]any)
		if typ, _ := m["type"].(string); typ == "LockDeviceConnected" || typ == "LockDeviceDisconnected" {
			ev, _ := m["event"].(map[string]any)
			if ev["lockId"] == nil || ev["uuid"] == nil || ev["timestamp"] == nil {
				t.Errorf("%s payload %v: want lockId, uuid and timestamp", typ, ev)
			}
			out = append(out, typ)
		}
	}
	return out
}

func waitPresence(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(deviceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, deviceWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func equalTypes(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestPresence: a device's connect and its clean or abrupt end show in
// basic-info and details (online, lastSeen) and as partner-visible events
// on the lock's stream; a flapping device writes one pair, not one per
// flap.
func TestPresence(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newDeviceFixture(t, b, true)
			wireOK(t, f.srv, wireReq{Method: "POST", Path: "/locks/2/CreateLock", Key: f.keyA, Body: map[string]any{"index": 2, "uuid": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"}}, http.StatusCreated)
			password := func(id string) string {
				pw := wireOK(t, f.srv, wireReq{Method: "POST", Path: "/locks/" + id + "/device/credentials", Key: f.keyA, Body: map[string]any{"kind": "password"}}, http.StatusCreated)
				s, _ := pw["password"].(string)
				return s
			}
			pw1, pw2 := password("1"), password("2")
			if online, seen := presenceOf(t, f, "1"); online || seen != "" {
				t.Fatalf("never connected: online %v, lastSeen %q; want offline, no lastSeen", online, seen)
			}

			// Connect, then a clean disconnect.
			d := connectDevice(t, f, "lock-1", pw1)
			var connectedAt string
			waitPresence(t, "lock 1 online", func() bool {
				online, seen := presenceOf(t, f, "1")
				connectedAt = seen
				return online && seen != ""
			})
			waitPresence(t, "LockDeviceConnected", func() bool { return equalTypes(presenceEvents(t, f, "1"), "LockDeviceConnected") })
			// On the embedded broker its own presence is authoritative: a
			// device saying it is offline while connected changes nothing.
			if tok := d.c.Publish("$aws/things/lock-1/presence", 1, false, `{"online":false}`); !tok.WaitTimeout(deviceWait) || tok.Error() != nil {
				t.Fatalf("publish presence: %v", tok.Error())
			}
			time.Sleep(300 * time.Millisecond) // a negative check: nothing may happen
			if online, _ := presenceOf(t, f, "1"); !online {
				t.Fatal("the device's own {\"online\":false} took it offline on the embedded broker")
			}
			d.c.Disconnect(250)
			waitPresence(t, "lock 1 offline", func() bool {
				online, seen := presenceOf(t, f, "1")
				return !online && seen >= connectedAt && seen != ""
			})
			waitPresence(t, "LockDeviceDisconnected", func() bool {
				return equalTypes(presenceEvents(t, f, "1"), "LockDeviceConnected", "LockDeviceDisconnected")
			})

			// Connect, then the TCP connection dropped without a DISCONNECT.
			d = connectDevice(t, f, "lock-2", pw2)
			waitPresence(t, "lock 2 online", func() bool { online, _ := presenceOf(t, f, "2"); return online })
			if err := d.conn.Close(); err != nil {
				t.Fatal(err)
			}
			waitPresence(t, "lock 2 offline after the dropped connection", func() bool {
				online, seen := presenceOf(t, f, "2")
				return !online && seen != ""
			})
			waitPresence(t, "LockDeviceDisconnected after the dropped connection", func() bool {
				return equalTypes(presenceEvents(t, f, "2"), "LockDeviceConnected", "LockDeviceDisconnected")
			})

			// Flapping inside the window: the row follows, the events do not.
			_, before := presenceOf(t, f, "2")
			for i := 0; i < 5; i++ {
				d = connectDevice(t, f, "lock-2", pw2)
				waitPresence(t, "lock 2 online again", func() bool {
					online, seen := presenceOf(t, f, "2")
					return online && seen > before
				})
				d.c.Disconnect(250)
				waitPresence(t, "lock 2 offline again", func() bool {
					online, seen := presenceOf(t, f, "2")
					before = seen
					return !online
				})
			}
			if got := presenceEvents(t, f, "2"); !equalTypes(got, "LockDeviceConnected", "LockDeviceDisconnected") {
				t.Fatalf("events after 5 flaps: %v, want one LockDeviceConnected and one LockDeviceDisconnected", got)
			}
		})
	}
}
