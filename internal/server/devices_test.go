package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient/mosquittotest"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const mqttWait = 20 * time.Second

// TestNodeDevices: a node with both listeners creates its device CA in
// CADir, authenticates devices against the store's credentials and
// answers their shadow requests through its gateway; Stop closes the
// broker. A node without listeners runs no broker.
func TestNodeDevices(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			node, _, _ := newNode(t, b, server.Config{Devices: server.DevicesConfig{MQTTAddr: "127.0.0.1:0", MQTTSAddr: "127.0.0.1:0", CADir: dir}})
			if err := node.Start(context.Background()); err != nil {
				t.Fatalf("start: %v", err)
			}
			defer node.Stop()
			if node.MQTTAddr() == "" || node.MQTTSAddr() == "" || node.Gateway() == nil {
				t.Fatalf("MQTTAddr %q, MQTTSAddr %q, gateway %v: want both listeners and a gateway", node.MQTTAddr(), node.MQTTSAddr(), node.Gateway())
			}
			for _, f := range []string{ca.CertFile, ca.KeyFile} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("device CA file: %v", err)
				}
			}
			authority, err := ca.LoadOrCreateDir(dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			_, password, err := creds.NewIssuer(node.Store, authority).IssuePassword(context.Background(), "lock-7", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			msgs := make(chan paho.Message, 4)
			c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + node.MQTTAddr()).SetClientID("lock-7").
				SetUsername("lock-7").SetPassword(password).SetAutoReconnect(false).SetProtocolVersion(4).
				SetConnectTimeout(mqttWait).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m }))
			if tok := c.Connect(); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer c.Disconnect(0)
			s := "$aws/things/lock-7/shadow"
			if tok := c.Subscribe(s+"/get/rejected", 1, nil); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			if tok := c.Publish(s+"/get", 1, false, `{}`); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			// No shadow yet: the gateway answers AWS's 404.
			select {
			case m := <-msgs:
				if m.Topic() != s+"/get/rejected" || !strings.Contains(string(m.Payload()), `"code":404`) {
					t.Fatalf("answer on %s: %s, want a 404 on %s/get/rejected", m.Topic(), m.Payload(), s)
				}
			case <-time.After(mqttWait):
				t.Fatal("the gateway did not answer the get")
			}

			addr := node.MQTTAddr()
			node.Stop()
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				t.Errorf("dial %s after Stop: connected, want refused", addr)
			}
		})
	}
	off, _, _ := newNode(t, testenv.SQLite, server.Config{})
	if err := off.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer off.Stop()
	if off.MQTTAddr() != "" || off.MQTTSAddr() != "" || off.Gateway() != nil {
		t.Errorf("node without listeners: MQTTAddr %q, MQTTSAddr %q, gateway %v; want none", off.MQTTAddr(), off.MQTTSAddr(), off.Gateway())
	}
}

// TestTestenvDevices: test servers run a broker only when asked.
func TestTestenvDevices(t *testing.T) {
	plain := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	if plain.MQTTAddr != "" || plain.MQTTSAddr != "" || plain.CADir != "" {
		t.Errorf("default test server: MQTTAddr %q, MQTTSAddr %q, CADir %q; want no broker", plain.MQTTAddr, plain.MQTTSAddr, plain.CADir)
	}
	dev := testenv.NewServer(t, testenv.SQLite, testenv.Options{Devices: true})
	for _, addr := range []string{dev.MQTTAddr, dev.MQTTSAddr} {
		conn, err := net.DialTimeout("tcp", addr, mqttWait)
		if err != nil {
			t.Fatalf("dial the broker at %q: %v", addr, err)
		}
		conn.Close()
	}
	if _, err := os.Stat(filepath.Join(dev.CADir, ca.CertFile)); err != nil {
		t.Errorf("device CA: %v", err)
	}
}

// TestDeviceCAInDatabase: without a CA folder the device CA lives in the
// database: the first load creates it, every later load (another node's)
// reads the same one, and a node started without a folder serves TLS
// with a certificate of that CA.
func TestDeviceCAInDatabase(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			st := testenv.OpenStore(t, b)
			now := time.Now()
			first, err := server.LoadDeviceCA(context.Background(), st, "", now)
			if err != nil {
				t.Fatal(err)
			}
			again, err := server.LoadDeviceCA(context.Background(), st, "", now.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if ca.Fingerprint(first.Certificate()) != ca.Fingerprint(again.Certificate()) {
				t.Fatal("a second load made another CA")
			}
			// A folder still wins when given.
			dir, err := server.LoadDeviceCA(context.Background(), st, t.TempDir(), now)
			if err != nil {
				t.Fatal(err)
			}
			if ca.Fingerprint(dir.Certificate()) == ca.Fingerprint(first.Certificate()) {
				t.Fatal("the folder's CA is the database's")
			}
		})
	}
}

// TestNodeDevicesStartErrors: Start refuses a device layer it cannot run,
// saying why, and starts nothing.
func TestNodeDevicesStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		name string
		cfg  server.DevicesConfig
		want string
	}{
		{"busy port", server.DevicesConfig{MQTTAddr: busy.Addr().String(), CADir: "ca"}, busy.Addr().String()},
		{"bad host", server.DevicesConfig{MQTTSAddr: "127.0.0.1:0", CADir: "ca", Hosts: []string{"not a host"}}, "invalid host name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.cfg.CADir != "" {
				c.cfg.CADir = filepath.Join(t.TempDir(), c.cfg.CADir)
			}
			node, _, _ := newNode(t, testenv.SQLite, server.Config{Devices: c.cfg})
			err := node.Start(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start: %v, want an error with %q", err, c.want)
			}
			if node.MQTTAddr() != "" || node.Gateway() != nil {
				t.Errorf("after a failed Start: MQTTAddr %q, gateway %v; want none", node.MQTTAddr(), node.Gateway())
			}
		})
	}
}

// TestNodeExternalBroker: a node with MQTTURL joins an external Mosquitto
// (no embedded listener, no device CA) and its gateway answers a device's
// shadow request there; a listener with MQTTURL is a config error; Stop
// disconnects from the broker.
func TestNodeExternalBroker(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{Users: map[string]string{"spkey": "spkey-pw", "lock-7": "lock-pw"},
		ACL: "user spkey\ntopic readwrite $aws/things/#\n\npattern readwrite $aws/things/%c/#"})
	bad, _, _ := newNode(t, testenv.SQLite, server.Config{Devices: server.DevicesConfig{MQTTURL: mq.URL("spkey", "spkey-pw"), MQTTAddr: "127.0.0.1:0"}})
	if err := bad.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "MQTTURL") {
		bad.Stop()
		t.Fatalf("start with MQTTURL and MQTTAddr: %v; want a config error naming MQTTURL", err)
	}

	// Mosquitto 2.0 shares no $ topics: one node, without a share group.
	node, _, _ := newNode(t, testenv.SQLite, server.Config{Devices: server.DevicesConfig{MQTTURL: mq.URL("spkey", "spkey-pw"),
		MQTTClient: mqttclient.Config{NoShare: true, ClientID: "spkey-node-1"}}})
	if err := node.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer node.Stop()
	if node.MQTTAddr() != "" || node.MQTTSAddr() != "" || node.Gateway() == nil {
		t.Fatalf("MQTTAddr %q, MQTTSAddr %q, gateway %v: want no listener and a gateway", node.MQTTAddr(), node.MQTTSAddr(), node.Gateway())
	}
	msgs := make(chan paho.Message, 4)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr).SetClientID("lock-7").
		SetUsername("lock-7").SetPassword("lock-pw").SetAutoReconnect(false).SetProtocolVersion(4).
		SetConnectTimeout(mqttWait).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m }))
	if tok := c.Connect(); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	s := "$aws/things/lock-7/shadow"
	if tok := c.Subscribe(s+"/get/rejected", 1, nil); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := c.Publish(s+"/get", 1, false, `{}`); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-msgs:
		if m.Topic() != s+"/get/rejected" || !strings.Contains(string(m.Payload()), `"code":404`) {
			t.Fatalf("answer on %s: %s, want a 404 on %s/get/rejected", m.Topic(), m.Payload(), s)
		}
	case <-time.After(mqttWait):
		t.Fatal("the gateway did not answer the get over the external broker")
	}
	if st := node.Gateway().Stats(); st.Handled != 1 {
		t.Errorf("gateway stats %+v; want 1 handled", st)
	}

	// After Stop nobody answers: the node left the broker.
	node.Stop()
	if tok := c.Publish(s+"/get", 1, false, `{}`); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("publish after Stop: %v", tok.Error())
	}
	select {
	case m := <-msgs:
		t.Fatalf("answer after Stop on %s: %s; want none", m.Topic(), m.Payload())
	case <-time.After(300 * time.Millisecond):
	}
}

// TestNodeOwnTLSCert: with TLSCertFile and TLSKeyFile the broker's TLS
// listener presents the operator's certificate (here one of another CA),
// and devices still log in with client certificates of the device CA.
func TestNodeOwnTLSCert(t *testing.T) {
	tmp := t.TempDir()
	other, err := ca.New(time.Now(), "operator CA")
	if err != nil {
		t.Fatal(err)
	}
	own, err := other.ServerCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(tmp, "broker.pem"), filepath.Join(tmp, "broker.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(own.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: own.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "ca")
	node, _, _ := newNode(t, testenv.SQLite, server.Config{Devices: server.DevicesConfig{MQTTSAddr: "127.0.0.1:0", CADir: dir, TLSCertFile: certFile, TLSKeyFile: keyFile}})
	if err := node.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer node.Stop()
	authority, err := ca.LoadOrCreateDir(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, clientKeyPEM, err := creds.NewIssuer(node.Store, authority).IssueCertificate(context.Background(), "lock-8", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := tls.X509KeyPair(certPEM, clientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(roots *x509.CertPool) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: mqttWait}, "tcp", node.MQTTSAddr(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}, ServerName: "127.0.0.1"})
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Handshake()
	}
	if err := dial(other.Pool()); err != nil {
		t.Fatalf("TLS to the broker trusting the operator's CA: %v", err)
	}
	if err := dial(authority.Pool()); err == nil {
		t.Fatal("the broker presented a certificate of the device CA, want the operator's")
	}
}
