package creds_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/broker"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const waitLimit = 5 * time.Second

// publication is a device's message as the broker's node side saw it.
type publication struct{ Thing, Topic string }

// dial connects a paho client as thing: on the TLS listener with cert
// when tlsCfg is set, else on the plain listener with the password. It
// returns the CONNECT's error.
func dial(t *testing.T, br *broker.Broker, thing string, tlsCfg *tls.Config, password string) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().
		SetClientID(thing).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitLimit).
		SetCleanSession(true).
		SetProtocolVersion(4)
	if tlsCfg != nil {
		opts.AddBroker("ssl://" + br.TLSAddr()).SetTLSConfig(tlsCfg)
	} else {
		opts.AddBroker("tcp://" + br.Addr()).SetUsername(thing).SetPassword(password)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitLimit) {
		t.Fatalf("connect %s: no answer within %v", thing, waitLimit)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// TestBrokerEndToEnd runs the real broker with the Authenticator: a lock
// connects with its issued password on the plain listener, another with
// its issued certificate on the TLS listener, and the node sees each
// one's publication under the thing it authenticated as; after their
// credentials are revoked, new connections of both are refused.
func TestBrokerEndToEnd(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			serverCert, err := e.ca.ServerCert([]string{"127.0.0.1"}, e.now, validity)
			if err != nil {
				t.Fatal(err)
			}
			br, err := broker.Start(ctx, broker.Config{
				Addr:    "127.0.0.1:0",
				TLSAddr: "127.0.0.1:0",
				TLS:     e.ca.ServerTLS(serverCert),
				Auth:    e.auth,
				Log:     testenv.Logger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = br.Close() })
			seen := make(chan publication, 8)
			if err := br.Subscribe("$aws/things/+/shadow/update", func(thing, topic string, _ []byte) {
				seen <- publication{thing, topic}
			}); err != nil {
				t.Fatal(err)
			}

			_, password, err := e.issuer.IssuePassword(ctx, "lock-1", e.now)
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := e.issuer.IssueCertificate(ctx, "lock-2", e.now, validity)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			certTLS := e.ca.ClientTLS(pair)

			byPassword, err := dial(t, br, "lock-1", nil, password)
			if err != nil {
				t.Fatalf("connect lock-1 with its password: %v", err)
			}
			byCert, err := dial(t, br, "lock-2", certTLS, "")
			if err != nil {
				t.Fatalf("connect lock-2 with its certificate: %v", err)
			}
			for thing, c := range map[string]paho.Client{"lock-1": byPassword, "lock-2": byCert} {
				topic := "$aws/things/" + thing + "/shadow/update"
				tok := c.Publish(topic, 1, false, `{"state":{"reported":{"lock":"locked"}}}`)
				if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
					t.Fatalf("publish as %s: %v", thing, tok.Error())
				}
				select {
				case got := <-seen:
					if diff := cmp.Diff(publication{thing, topic}, got); diff != "" {
						t.Errorf("publication (-want +got):\n%s", diff)
					}
				case <-time.After(waitLimit):
					t.Fatalf("the node did not see %s's publication within %v", thing, waitLimit)
				}
			}

			for _, thing := range []string{"lock-1", "lock-2"} {
				if err := e.issuer.Revoke(ctx, thing, e.now.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			refused := map[string]string{}
			if _, err := dial(t, br, "lock-1", nil, password); err != nil {
				refused["lock-1"] = "refused"
			}
			if _, err := dial(t, br, "lock-2", certTLS, ""); err != nil {
				refused["lock-2"] = "refused"
			}
			if diff := cmp.Diff(map[string]string{"lock-1": "refused", "lock-2": "refused"}, refused); diff != "" {
				t.Errorf("connections after the revoke (-want +got):\n%s", diff)
			}
			if got := br.Stats().RefusedConnects; got != 2 {
				t.Errorf("broker refused %d connects, want 2 (by the Authenticator, after the TLS handshake)", got)
			}
		})
	}
}
