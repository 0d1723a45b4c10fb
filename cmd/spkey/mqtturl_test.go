package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/devices/mqttclient/mosquittotest"
)

// TestServeMQTTURL: `spkey serve` with SPKEY_MQTT_URL joins an external
// Mosquitto, prints the broker without its password, and answers a
// device's shadow request there.
func TestServeMQTTURL(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{Users: map[string]string{"spkey": "spkey-secret-pw", "lock-5": "lock-pw"},
		ACL: "user spkey\ntopic readwrite $aws/things/#\n\npattern readwrite $aws/things/%c/#"})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--mqtt-share-group", "off"},
			[]string{"SPKEY_MQTT_URL=" + mq.URL("spkey", "spkey-secret-pw"), "SPKEY_LOG_LEVEL=error"}, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "devices:") {
				lines <- sc.Text()
			}
		}
	}()
	select {
	case banner := <-lines:
		if !strings.Contains(banner, "external broker mqtt://spkey:xxxxx@"+mq.Addr) || strings.Contains(banner, "spkey-secret-pw") {
			t.Errorf("banner %q: want the external broker, password hidden", banner)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no banner within 30s")
	}

	msgs := make(chan paho.Message, 4)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr).SetClientID("lock-5").
		SetUsername("lock-5").SetPassword("lock-pw").SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	s := "$aws/things/lock-5/shadow"
	if tok := c.Subscribe(s+"/get/rejected", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := c.Publish(s+"/get", 1, false, `{}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-msgs:
		if m.Topic() != s+"/get/rejected" || !strings.Contains(string(m.Payload()), `"code":404`) {
			t.Fatalf("answer on %s: %s; want a 404 on get/rejected", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from spkey over the external broker")
	}
}

// TestMQTTURLErrors: --mqtt-url with an embedded listener, a bad URL, or
// a broker that refuses spkey fails with a message naming the setting,
// never the password.
func TestMQTTURLErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"with a listener", []string{"--mqtt-url", "mqtt://127.0.0.1:1", "--mqtt-addr", "127.0.0.1:0"}, "--mqtt-url excludes the embedded broker: drop --mqtt-addr"},
		{"not mqtt", []string{"--mqtt-url", "http://u:hunter2@127.0.0.1:1"}, "--mqtt-url: mqttclient: broker URL scheme"},
		{"unreachable", []string{"--mqtt-url", "mqtt://u:hunter2@127.0.0.1:1"}, "--mqtt-url mqtt://u:xxxxx@127.0.0.1:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, c.args...)
			err := run(context.Background(), args, []string{"SPKEY_LOG_LEVEL=error"}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("%v: got %v; want an error with %q, without the password", args, err, c.want)
			}
		})
	}
}
