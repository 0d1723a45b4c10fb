package server_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient/mosquittotest"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestNodeExternalBrokerPresence: on an external broker the devices'
// presence messages say who is online: {"online":true} after the
// connect, and the will {"online":false} when the connection drops
// without a DISCONNECT; a message that is no presence changes nothing.
func TestNodeExternalBrokerPresence(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{Users: map[string]string{"spkey": "spkey-pw", "lock-7": "lock-pw"},
		ACL: "user spkey\ntopic readwrite $aws/things/#\n\npattern readwrite $aws/things/%c/#"})
	node, _, _ := newNode(t, testenv.SQLite, server.Config{Devices: server.DevicesConfig{MQTTURL: mq.URL("spkey", "spkey-pw"),
		MQTTClient: mqttclient.Config{NoShare: true, ClientID: "spkey-node-1"}}})
	ctx := context.Background()
	if _, err := node.Svc.CreateLock(ctx, app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}, 7, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer node.Stop()

	var conn net.Conn
	topic := devices.PresenceTopic("lock-7")
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://"+mq.Addr).SetClientID("lock-7").
		SetUsername("lock-7").SetPassword("lock-pw").SetAutoReconnect(false).SetProtocolVersion(4).
		SetConnectTimeout(mqttWait).SetWill(topic, `{"online":false}`, 1, false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			var err error
			conn, err = net.DialTimeout("tcp", u.Host, mqttWait)
			return conn, err
		}))
	if tok := c.Connect(); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	publish := func(payload string) {
		t.Helper()
		if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", payload, tok.Error())
		}
	}
	presence := func() (online, found bool) {
		p, found, err := node.Store.Presence(ctx, "lock-7")
		if err != nil {
			t.Fatal(err)
		}
		return p.Online, found
	}
	types := func() []string {
		recs, err := node.Store.Stream(ctx, lock.AggregateType, "7", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			if r.Type == lock.TypeLockDeviceConnected || r.Type == lock.TypeLockDeviceDisconnected {
				out = append(out, r.Type)
			}
		}
		return out
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(mqttWait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, mqttWait)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Not presence messages: nothing recorded. The valid message after
	// them is handled after them (one thing's messages are in order).
	publish(`{"online":"yes"}`)
	publish(`not json`)
	publish(`{"online":true}`)
	// Recorded in the store only (every node reads it there), not in the
	// node's gateway: another node of the group may get the offline.
	wait("online", func() bool { online, _ := presence(); return online && !node.Gateway().Online("lock-7") })
	wait("LockDeviceConnected", func() bool { return len(types()) == 1 && types()[0] == lock.TypeLockDeviceConnected })

	// The connection drops: the broker publishes the will.
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	wait("offline by the will", func() bool { online, found := presence(); return found && !online && !node.Gateway().Online("lock-7") })
	wait("LockDeviceDisconnected", func() bool { return len(types()) == 2 && types()[1] == lock.TypeLockDeviceDisconnected })
}
