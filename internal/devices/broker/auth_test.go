package broker_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/broker"
)

func TestPasswordConnect(t *testing.T) {
	e := start(t, nil)
	e.auth.addPassword("user-a", "secret", "lock-a")
	e.auth.addPassword("bad-thing", "secret", "lock/+")

	tests := []struct {
		name string
		opts deviceOpts
		ok   bool
	}{
		{"right password", deviceOpts{clientID: "lock-a", username: "user-a", password: "secret"}, true},
		{"empty client id gets the thing name", deviceOpts{username: "user-a", password: "secret"}, true},
		{"wrong password", deviceOpts{clientID: "lock-a", username: "user-a", password: "nope"}, false},
		{"unknown user", deviceOpts{clientID: "lock-a", username: "nobody", password: "secret"}, false},
		{"no credentials", deviceOpts{clientID: "lock-a"}, false},
		{"client id of another thing", deviceOpts{clientID: "lock-b", username: "user-a", password: "secret"}, false},
		{"authenticator returns an invalid thing name", deviceOpts{clientID: "lock/+", username: "bad-thing", password: "secret"}, false},
		{"will on another thing's topic", deviceOpts{clientID: "lock-a", username: "user-a", password: "secret", willTopic: "$aws/things/lock-b/shadow/update"}, false},
		{"retained will", deviceOpts{clientID: "lock-a", username: "user-a", password: "secret", willTopic: "$aws/things/lock-a/gone", willRetain: true}, false},
		{"will on its own topic", deviceOpts{clientID: "lock-a", username: "user-a", password: "secret", willTopic: "$aws/things/lock-a/gone"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.b.Stats().RefusedConnects
			d, err := e.dial(t, tt.opts)
			if got := err == nil; got != tt.ok {
				t.Fatalf("connect ok = %v (err %v), want %v", got, err, tt.ok)
			}
			if tt.ok {
				d.Disconnect(0)
				return
			}
			if got := e.b.Stats().RefusedConnects; got != before+1 {
				t.Errorf("RefusedConnects = %d, want %d", got, before+1)
			}
		})
	}
}

func TestCertificateConnect(t *testing.T) {
	e := start(t, nil)
	known := e.ca.issue(t, "lock-c", false)
	e.auth.addCert(known.Leaf, "lock-c")
	unknown := e.ca.issue(t, "lock-d", false) // right CA, but the Authenticator denies it (revoked)
	other := newCA(t, "someone else's CA")
	foreign := other.issue(t, "lock-c", false)
	e.auth.addCert(foreign.Leaf, "lock-c") // even if the Authenticator knew it, TLS refuses it first

	tests := []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"certificate of the CA, known", known, true},
		{"certificate of the CA, denied by the Authenticator", unknown, false},
		{"certificate of another CA", foreign, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.dial(t, deviceOpts{clientID: "lock-c", cert: &tt.cert})
			if got := err == nil; got != tt.ok {
				t.Fatalf("connect ok = %v (err %v), want %v", got, err, tt.ok)
			}
			if tt.ok {
				d.publish(t, "$aws/things/lock-c/shadow/update", "{}")
				waitFor(t, "the server to get the publication", func() bool { return len(e.rec.msgs()) > 0 })
				want := []message{{"lock-c", "$aws/things/lock-c/shadow/update", "{}"}}
				if diff := cmp.Diff(want, e.rec.msgs()); diff != "" {
					t.Errorf("server got (-want +got):\n%s", diff)
				}
				d.Disconnect(0)
			}
		})
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	auth := newFakeAuth()
	tests := []struct {
		name string
		cfg  broker.Config
	}{
		{"no authenticator", broker.Config{Addr: "127.0.0.1:0"}},
		{"no listener", broker.Config{Auth: auth}},
		{"tls address without tls config", broker.Config{TLSAddr: "127.0.0.1:0", Auth: auth}},
		{"tls without client certificates", broker.Config{TLSAddr: "127.0.0.1:0", Auth: auth, TLS: &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven}}},
		{"unbindable address", broker.Config{Addr: "127.0.0.1:-1", Auth: auth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := broker.Start(context.Background(), tt.cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("Start succeeded, want an error")
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	e := start(t, nil)
	d := e.mustDial(t, "lock-a")
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-d.lost:
	case <-timeout():
		t.Fatal("device still connected after Close")
	}
	if err := e.b.Publish("$aws/things/lock-a/x", nil, 0); err == nil {
		t.Error("Publish after Close succeeded, want ErrClosed")
	}
	want := []presenceEvent{{"lock-a", true}, {"lock-a", false}}
	if diff := cmp.Diff(want, e.rec.events()); diff != "" {
		t.Errorf("presence (-want +got):\n%s", diff)
	}
}
