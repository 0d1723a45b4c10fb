package notify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds or waitTimeout passes; state describes
// what was last seen, for the failure message.
func waitFor(t testing.TB, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", waitTimeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testConfig is a fast engine: short retries and polls.
func testConfig() outbox.Config {
	return outbox.Config{RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		Lease: 5 * time.Second, MaxAttempts: 20}
}

// fixture is tenant "acme" owning lock 7 with residents Alice (e-mail,
// no phone) and Bob (phone, no e-mail), served by a running engine.
type fixture struct {
	t          *testing.T
	st         *store.Store
	svc        *app.Service
	hub        *notify.Hub
	eng        *outbox.Engine
	key        app.Principal
	alice, bob string
}

func newFixture(t *testing.T, b testenv.Backend, cfg outbox.Config, chans ...notify.Channel) *fixture {
	t.Helper()
	st := testenv.OpenStore(t, b)
	f := &fixture{t: t, st: st, hub: notify.NewHub()}
	f.eng = outbox.New(st, cfg, testLogger(t))
	notify.Register(f.eng, st, f.hub, testLogger(t), chans...)
	st.SetRouter(f.eng)
	f.svc = app.New(st, app.Options{Channels: app.Channels{Email: true, Hook: true}}, testenv.Discard())
	d := testenv.SeedDoorbell(t, f.svc)
	f.key, f.alice, f.bob = d.Key, d.Alice, d.Bob
	runEngine(t, f.eng)
	return f
}

// runEngine runs e until the test ends, then stops it and waits for Run
// to return.
func runEngine(t *testing.T, e *outbox.Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine %s: %v", e.Node(), err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("engine %s did not stop", e.Node())
		}
	})
}

// ring rings lock 7 with the tenant's key and returns the ring id.
func (f *fixture) ring(in app.RingInput) string {
	f.t.Helper()
	res, err := f.svc.RingDoorbell(context.Background(), app.Call{P: f.key}, 7, in)
	if err != nil {
		f.t.Fatal(err)
	}
	return res.RingID
}

// user is a resident's own principal.
func (f *fixture) user(id string) app.Principal {
	return app.Principal{Kind: app.UserCaller, UserID: id}
}

// delivery returns the row of the ring's notification to userID through
// consumer (found is false when there is none).
func (f *fixture) delivery(ringID, userID, consumer string) (store.Delivery, bool) {
	f.t.Helper()
	ds, err := f.st.Deliveries(context.Background(), []string{ringID}, userID)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, d := range ds {
		if d.Consumer == consumer && d.EventType == doorbell.TypeDoorbellRang {
			return d, true
		}
	}
	return store.Delivery{}, false
}

// waitDelivery waits until the row is in status and returns it.
func (f *fixture) waitDelivery(ringID, userID, consumer, status string) store.Delivery {
	f.t.Helper()
	var d store.Delivery
	waitFor(f.t, fmt.Sprintf("%s row of %s to be %s", consumer, userID, status), func() (bool, string) {
		var found bool
		d, found = f.delivery(ringID, userID, consumer)
		return found && d.Status == status, fmt.Sprintf("%+v", d)
	})
	return d
}

// waitFailedAttempt waits until the row has failed at least once and is
// still pending.
func (f *fixture) waitFailedAttempt(ringID, userID, consumer string) store.Delivery {
	f.t.Helper()
	var d store.Delivery
	waitFor(f.t, fmt.Sprintf("a failed attempt on the %s row of %s", consumer, userID), func() (bool, string) {
		var found bool
		d, found = f.delivery(ringID, userID, consumer)
		return found && d.Status == store.StatusPending && d.Attempts >= 1 && d.LastError != "", fmt.Sprintf("%+v", d)
	})
	return d
}

func (f *fixture) attempts(outboxID int64) []store.Attempt {
	f.t.Helper()
	a, err := f.st.Attempts(context.Background(), outboxID)
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

// testLogger writes warnings and errors into the test log until the test
// ends, and drops them afterwards (goroutines may outlive a test by a hair).
func testLogger(t *testing.T) *slog.Logger {
	w := &guardedWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type guardedWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *guardedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// reserveAddr returns a loopback address nothing listens on (yet).
func reserveAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// --- a real SMTP server (go-smtp) ---

// smtpMsg is one DATA the SMTP server read.
type smtpMsg struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool
	User     string
	Accepted bool
}

// Header parses the message's header.
func (m smtpMsg) Header(t testing.TB) mail.Header {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, m.Data)
	}
	return msg.Header
}

// smtpServer is an in-process SMTP relay recording what it gets.
type smtpServer struct {
	Addr string
	// DataReply decides the answer to the n-th DATA (0-based); nil accepts.
	DataReply func(n int) error
	// User and Pass, when set, are required (AUTH PLAIN).
	User, Pass string

	srv  *gosmtp.Server
	mu   sync.Mutex
	msgs []smtpMsg
}

type smtpMode int

const (
	smtpPlain    smtpMode = iota
	smtpSTARTTLS          // offers STARTTLS
	smtpImplicit          // TLS from the first byte
)

// startSMTP serves s on addr ("" = a fresh loopback port) until the test
// ends.
func startSMTP(t testing.TB, s *smtpServer, addr string, mode smtpMode) *smtpServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) { return &smtpSession{s: s, c: c}, nil }))
	s.srv.Domain = "relay.test"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	switch mode {
	case smtpSTARTTLS:
		s.srv.TLSConfig = selfSigned(t)
	case smtpImplicit:
		l = tls.NewListener(l, selfSigned(t))
	}
	s.Addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = s.srv.Serve(l) }()
	t.Cleanup(func() { s.srv.Close(); <-done })
	return s
}

// Messages returns every DATA seen so far.
func (s *smtpServer) Messages() []smtpMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMsg(nil), s.msgs...)
}

// Accepted returns the messages the server accepted.
func (s *smtpServer) Accepted() []smtpMsg {
	var out []smtpMsg
	for _, m := range s.Messages() {
		if m.Accepted {
			out = append(out, m)
		}
	}
	return out
}

type smtpSession struct {
	s    *smtpServer
	c    *gosmtp.Conn
	from string
	to   []string
	user string
}

func (x *smtpSession) AuthMechanisms() []string {
	if x.s.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (x *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != x.s.User || pass != x.s.Pass {
			return gosmtp.ErrAuthFailed
		}
		x.user = user
		return nil
	}), nil
}

func (x *smtpSession) Mail(from string, _ *gosmtp.MailOptions) error {
	if x.s.User != "" && x.user == "" {
		return gosmtp.ErrAuthRequired
	}
	x.from = from
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := x.c.TLSConnectionState()
	x.s.mu.Lock()
	n := len(x.s.msgs)
	var reply error
	if x.s.DataReply != nil {
		reply = x.s.DataReply(n)
	}
	x.s.msgs = append(x.s.msgs, smtpMsg{From: x.from, To: x.to, Data: b, TLS: isTLS, User: x.user, Accepted: reply == nil})
	x.s.mu.Unlock()
	return reply
}

func (x *smtpSession) Reset()        { x.from, x.to = "", nil }
func (x *smtpSession) Logout() error { return nil }

// selfSigned returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// --- a real HTTP hook receiver ---

// hookReq is one request the receiver got.
type hookReq struct {
	ID      string
	Path    string
	Header  http.Header
	Body    []byte
	At      time.Time
	Payload notify.HookPayload
	Raw     map[string]any
}

// receiver is an HTTP hook endpoint recording every request.
type receiver struct {
	// Reply decides the answer to a request, n being how many requests
	// with the same webhook-id came before; nil answers 204.
	Reply func(r hookReq, n int, w http.ResponseWriter)

	srv  *httptest.Server
	mu   sync.Mutex
	reqs []hookReq
}

// startReceiver serves rc on addr ("" = a fresh loopback port) until the
// test ends.
func startReceiver(t testing.TB, rc *receiver, addr string) *receiver {
	t.Helper()
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		rc.srv.Listener.Close()
		rc.srv.Listener = l
	}
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

// URL is where the receiver listens.
func (rc *receiver) URL() string { return rc.srv.URL }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := hookReq{ID: r.Header.Get("webhook-id"), Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()}
	_ = json.Unmarshal(body, &q.Payload)
	_ = json.Unmarshal(body, &q.Raw)
	rc.mu.Lock()
	n := 0
	for _, p := range rc.reqs {
		if p.ID == q.ID {
			n++
		}
	}
	rc.reqs = append(rc.reqs, q)
	rc.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if rc.Reply == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.Reply(q, n, w)
}

// Requests returns every request so far.
func (rc *receiver) Requests() []hookReq {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookReq(nil), rc.reqs...)
}

// ByID returns the requests carrying webhook-id id.
func (rc *receiver) ByID(id string) []hookReq {
	var out []hookReq
	for _, r := range rc.Requests() {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}
