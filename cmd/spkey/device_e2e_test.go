package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
)

// mqttWait bounds every wait on the broker in these tests.
const mqttWait = 20 * time.Second

var devicesRE = regexp.MustCompile(`devices: +mqtt (\S+) \(username \+ password\), mqtts (\S+) \(client certificate\)`)

// waitForBanner reads serve's stdout until it printed its API's base URL
// and the broker's two bound listeners.
func waitForBanner(t *testing.T, r io.Reader) (base, mqttAddr, mqttsAddr string) {
	t.Helper()
	type banner struct{ base, plain, tls string }
	found := make(chan banner, 1)
	go func() {
		var b banner
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				b.base = m[1]
			}
			if m := devicesRE.FindStringSubmatch(sc.Text()); m != nil {
				b.plain, b.tls = m[1], m[2]
				found <- b
				break
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case b := <-found:
		return b.base, b.plain, b.tls
	case <-time.After(60 * time.Second):
		t.Fatal("server did not print its addresses within 60s")
	}
	return "", "", ""
}

// lockDevice is a paho client acting as lock-{id}.
type lockDevice struct {
	paho.Client
	msgs chan paho.Message
}

// connectLock connects a device to addr, its client id the thing name
// username (as the broker requires): over TLS with cert (trusting roots)
// when cert is set, else with username and password. It returns the
// CONNECT's error.
func connectLock(t *testing.T, addr, username, password string, cert *tls.Certificate, roots *x509.CertPool) (*lockDevice, error) {
	t.Helper()
	d := &lockDevice{msgs: make(chan paho.Message, 16)}
	opts := paho.NewClientOptions().SetClientID(username).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(mqttWait).
		SetCleanSession(true).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	if cert != nil {
		opts.AddBroker("ssl://" + addr)
		opts.SetTLSConfig(&tls.Config{Certificates: []tls.Certificate{*cert}, RootCAs: roots, MinVersion: tls.VersionTLS12})
	} else {
		opts.AddBroker("tcp://" + addr)
		opts.SetUsername(username).SetPassword(password)
	}
	d.Client = paho.NewClient(opts)
	tok := d.Connect()
	if !tok.WaitTimeout(mqttWait) {
		t.Fatalf("connect to %s: no answer within %v", addr, mqttWait)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Disconnect(0) })
	return d, nil
}

// reportBattery publishes a shadow update of thing and returns the
// reported state of its /update/accepted answer.
func (d *lockDevice) reportBattery(t *testing.T, thing string) map[string]any {
	t.Helper()
	s := "$aws/things/" + thing + "/shadow"
	if tok := d.Subscribe(s+"/update/accepted", 1, nil); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := d.Publish(s+"/update", 1, false, `{"state":{"reported":{"layout":1,"battery":80}}}`); !tok.WaitTimeout(mqttWait) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-d.msgs:
		if m.Topic() != s+"/update/accepted" {
			t.Fatalf("got a message on %s, want %s/update/accepted", m.Topic(), s)
		}
		var doc struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if err := json.Unmarshal(m.Payload(), &doc); err != nil {
			t.Fatalf("accepted %s: %v", m.Payload(), err)
		}
		return doc.State.Reported
	case <-time.After(mqttWait):
		t.Fatalf("no /update/accepted within %v", mqttWait)
	}
	return nil
}

// TestDeviceCredentialsE2E: a real `spkey serve` with both MQTT
// listeners; `spkey device credentials` issues a lock's credentials into a
// folder, with which the lock reports its shadow over TLS (client
// certificate) and over plain MQTT (password), and signs a device's CSR;
// after `spkey device revoke` the lock's certificate and password are
// refused.
func TestDeviceCredentialsE2E(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	admin := "device-e2e-admin-key-123"
	data := t.TempDir()
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"},
			[]string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=warn"}, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base, mqttAddr, mqttsAddr := waitForBanner(t, pr)
	ac := client{t: t, base: base}.with("X-Admin-API-Key", admin)
	if st, body := ac.do("POST", "/tenants/acme/register", map[string]any{"orgName": "Acme"}); st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	_, body := ac.do("POST", "/api-keys", map[string]any{"orgId": "acme", "orgName": "Acme"})
	key, _ := body["apiKey"].(string)
	kc := client{t: t, base: base}.with("X-API-Key", key)
	if st, body := kc.do("POST", "/locks/1001/CreateLock", map[string]any{"index": 1, "uuid": "6f1c2a9e-0b7e-4d3e-9a55-2f0c5e4b1a11", "serialNumber": "SN-1001"}); st != 201 {
		t.Fatalf("create lock: %d %v", st, body)
	}

	out := filepath.Join(t.TempDir(), "lock-1001")
	var stdout strings.Builder
	if err := run(ctx, []string{"device", "credentials", "lock", "1001", "--out", out, "--data", data}, nil, &stdout, io.Discard); err != nil {
		t.Fatalf("device credentials: %v", err)
	}
	for _, want := range []string{"thing:     lock-1001", "username:  lock-1001"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("device credentials printed %q, want a line %q", stdout.String(), want)
		}
	}
	modes := map[string]fs.FileMode{}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		modes[e.Name()] = info.Mode().Perm()
	}
	wantModes := map[string]fs.FileMode{certFile: 0o644, keyFile: 0o600, caFile: 0o644, passwordFile: 0o600}
	if diff := cmp.Diff(wantModes, modes); diff != "" {
		t.Errorf("files in --out (-want +got):\n%s", diff)
	}
	// A second issue into the same folder is refused: it would mix two
	// sets of credentials.
	if err := run(ctx, []string{"device", "credentials", "lock", "1001", "--out", out, "--data", data}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("second issue into %s: %v, want an error saying it already holds the files", out, err)
	}

	cert, err := tls.LoadX509KeyPair(filepath.Join(out, certFile), filepath.Join(out, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(out, caFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	password, err := os.ReadFile(filepath.Join(out, passwordFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"layout": float64(1), "battery": float64(80)}
	for _, c := range []struct {
		name     string
		addr     string
		password string
		cert     *tls.Certificate
	}{
		{"certificate over TLS", mqttsAddr, "", &cert},
		{"username and password", mqttAddr, string(password), nil},
	} {
		d, err := connectLock(t, c.addr, "lock-1001", c.password, c.cert, roots)
		if err != nil {
			t.Fatalf("%s: connect: %v", c.name, err)
		}
		if diff := cmp.Diff(want, d.reportBattery(t, "lock-1001")); diff != "" {
			t.Errorf("%s: reported state accepted (-want +got):\n%s", c.name, diff)
		}
		d.Disconnect(0)
	}

	// --csr: spkey signs the device's own key and writes none.
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "anything"}}, devKey)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(t.TempDir(), "device.csr")
	if err := os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	outCSR := filepath.Join(t.TempDir(), "lock-1001-csr")
	if err := run(ctx, []string{"device", "credentials", "lock", "1001", "--out", outCSR, "--csr", csrFile, "--data", data}, nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("device credentials --csr: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outCSR, keyFile)); !os.IsNotExist(err) {
		t.Errorf("--csr wrote %s (%v), want no key", keyFile, err)
	}
	certPEM, err := os.ReadFile(filepath.Join(outCSR, certFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("%s holds no PEM block", certFile)
	}
	csrCert := tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: devKey}
	d, err := connectLock(t, mqttsAddr, "lock-1001", "", &csrCert, roots)
	if err != nil {
		t.Fatalf("certificate from --csr: connect: %v", err)
	}
	if diff := cmp.Diff(want, d.reportBattery(t, "lock-1001")); diff != "" {
		t.Errorf("certificate from --csr: reported state accepted (-want +got):\n%s", diff)
	}
	d.Disconnect(0)

	stdout.Reset()
	if err := run(ctx, []string{"device", "revoke", "lock", "1001", "--data", data}, nil, &stdout, io.Discard); err != nil {
		t.Fatalf("device revoke: %v", err)
	}
	if !strings.Contains(stdout.String(), "lock-1001") {
		t.Errorf("device revoke printed %q, want the thing name", stdout.String())
	}
	if _, err := connectLock(t, mqttsAddr, "lock-1001", "", &cert, roots); err == nil {
		t.Error("certificate after revoke: connected, want refused")
	}
	if _, err := connectLock(t, mqttAddr, "lock-1001", string(password), nil, nil); err == nil {
		t.Error("password after revoke: connected, want refused")
	}
}

// TestDeviceErrors: the device layer's settings and commands fail with a
// message naming what is wrong, and leave nothing behind.
func TestDeviceErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// Nothing listens there: a command that got as far as opening the
	// store would fail on the connection instead.
	const pg = "postgres://nobody@127.0.0.1:1/none?sslmode=disable"
	on := []string{"--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		// Without a CA folder on PostgreSQL the CA is in the database: the
		// command gets as far as connecting to it.
		{"serve on PostgreSQL without a CA folder", append([]string{"serve", "--addr", "127.0.0.1:0", "--db", pg}, on...), "127.0.0.1:1"},
		{"busy plain port", []string{"serve", "--addr", "127.0.0.1:0", "--mqtt-addr", busy.Addr().String(), "--mqtts-addr", "off"}, "--mqtt-addr " + busy.Addr().String()},
		{"busy TLS port", []string{"serve", "--addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtts-addr", busy.Addr().String()}, "--mqtts-addr " + busy.Addr().String()},
		{"listener without a host", []string{"serve", "--addr", "127.0.0.1:0", "--mqtt-addr", "1884"}, "--mqtt-addr must be host:port"},
		{"credentials for a missing lock", []string{"device", "credentials", "lock", "999", "--out", "creds"}, "lock 999 does not exist"},
		{"credentials without --out", []string{"device", "credentials", "lock", "999"}, "--out DIR is required"},
		{"credentials of something else", []string{"device", "credentials", "hub", "999", "--out", "creds"}, `want "lock", got "hub"`},
		{"credentials on PostgreSQL without a CA folder", []string{"device", "credentials", "lock", "1", "--out", "creds", "--db", pg}, "127.0.0.1:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			var args []string
			for _, a := range c.args {
				if a == "creds" {
					a = filepath.Join(dir, a)
				}
				args = append(args, a)
			}
			args = append(args, "--data", data)
			err := run(context.Background(), args, []string{"SPKEY_LOG_LEVEL=error"}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v: got %v, want an error with %q", args, err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "creds")); !os.IsNotExist(err) {
				t.Errorf("--out folder exists after the failure (%v)", err)
			}
		})
	}
}
