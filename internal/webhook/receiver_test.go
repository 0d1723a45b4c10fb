package webhook_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/webhook"
)

// Partner endpoints for the delivery tests: httptest servers that record
// every POST spkey makes, answer as the test scripts them, and check what
// they got the way a partner would (signatures with the reference
// library, bodies against upstream's schemas).

// request is one POST a receiver got.
type request struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Answer int // the status the receiver answered (0: it never answered)
	// Verification is true for a verification POST (body type
	// WebhookVerification); Env is set for an event.
	Verification bool
	Env          envelope
}

// ID is the request's webhook-id header.
func (r request) ID() string { return r.Header.Get("webhook-id") }

// envelope is what a partner decodes (upstream's fields, read back from
// JSON independently of webhook.Envelope).
type envelope struct {
	ID         string   `json:"id"`
	Source     string   `json:"source"`
	DetailType string   `json:"detail-type"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Account    string   `json:"account"`
	Version    string   `json:"version"`
	Resources  []string `json:"resources"`
	Detail     struct {
		PartnerID     string         `json:"partnerId"`
		AggregateType string         `json:"aggregateType"`
		AggregateID   string         `json:"aggregateId"`
		Version       int64          `json:"version"`
		Timestamp     int64          `json:"timestamp"`
		Data          map[string]any `json:"data"`
	} `json:"detail"`
}

// answerFunc decides a receiver's answer to its n-th event request (0-based,
// verification POSTs not counted) and may block.
type answerFunc func(n int, r request) (status int, header http.Header)

// receiver is one partner endpoint.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	reqs     []request
	events   int        // event requests so far
	answer   answerFunc // nil: 204 to everything
	verifyAs int        // status for verification POSTs (0: 204)
}

// newReceiver starts a plain-HTTP receiver (tls: an HTTPS one with
// httptest's own CA), closed at the end of the test.
func newReceiver(t testing.TB, useTLS bool) *receiver {
	r := &receiver{}
	h := http.HandlerFunc(r.serve)
	if useTLS {
		r.srv = httptest.NewTLSServer(h)
	} else {
		r.srv = httptest.NewServer(h)
	}
	t.Cleanup(r.srv.Close)
	return r
}

// URL is where the receiver listens; path is appended.
func (r *receiver) URL(path string) string { return r.srv.URL + path }

// TLS returns a client TLS configuration that trusts the receiver's
// certificate (testenv Options.Webhooks.TLS).
func (r *receiver) TLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(r.srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Answer sets how event requests are answered from now on.
func (r *receiver) Answer(f answerFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

// VerifyAs sets the status verification POSTs get (0: 204).
func (r *receiver) VerifyAs(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifyAs = status
}

func (r *receiver) serve(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	req := request{At: time.Now(), Header: hr.Header.Clone(), Body: body}
	var head struct {
		Type       string `json:"type"`
		DetailType string `json:"detail-type"`
	}
	_ = json.Unmarshal(body, &head)
	req.Verification = head.Type == webhook.VerificationType && head.DetailType == ""
	if !req.Verification {
		_ = json.Unmarshal(body, &req.Env)
	}
	r.mu.Lock()
	status, hdr := http.StatusNoContent, http.Header(nil)
	answer := r.answer
	n := r.events
	if req.Verification {
		if r.verifyAs != 0 {
			status = r.verifyAs
		}
		answer = nil
	} else {
		r.events++
	}
	r.mu.Unlock()
	if answer != nil {
		status, hdr = answer(n, req)
	}
	req.Answer = status
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status))
}

// Requests returns every request answered so far, in arrival order.
func (r *receiver) Requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// Events returns the event requests answered so far.
func (r *receiver) Events() []request {
	var out []request
	for _, q := range r.Requests() {
		if !q.Verification {
			out = append(out, q)
		}
	}
	return out
}

// Delivered returns the event requests answered with 2xx.
func (r *receiver) Delivered() []request {
	var out []request
	for _, q := range r.Events() {
		if q.Answer >= 200 && q.Answer < 300 {
			out = append(out, q)
		}
	}
	return out
}

// Verifications returns the verification POSTs answered so far.
func (r *receiver) Verifications() []request {
	var out []request
	for _, q := range r.Requests() {
		if q.Verification {
			out = append(out, q)
		}
	}
	return out
}

// checkSigned verifies every request with the Standard Webhooks reference
// library under secret.
func checkSigned(t testing.TB, secret string, reqs ...request) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	for _, q := range reqs {
		if err := wh.Verify(q.Body, q.Header); err != nil {
			t.Errorf("request %s (%s) does not verify: %v; webhook-signature %q", q.ID(), q.Env.DetailType, err, q.Header.Get("webhook-signature"))
		}
	}
}

// schema checks envelopes against upstream's EventBridge schemas: the
// whole body against WebhookEvent, and the detail against the schema
// upstream names after its detail-type, where it has one.
type schema struct {
	c   *jsonschema.Compiler
	env *jsonschema.Schema
}

// upstreamSchema loads upstream's schemas; without the file the checks are
// skipped (and the test says so).
func upstreamSchema(t testing.TB) schema {
	t.Helper()
	c := upstreamCompiler(t)
	if c == nil {
		t.Logf("upstream schema %s is absent: envelopes are not checked against it", eventBridgeSchemas)
		return schema{}
	}
	return schema{c: c, env: compileUpstream(t, c, "WebhookEvent")}
}

func (s schema) check(t testing.TB, reqs ...request) {
	t.Helper()
	if s.c == nil {
		return
	}
	for _, q := range reqs {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(q.Body))
		if err != nil {
			t.Fatalf("body of %s is not JSON: %v", q.ID(), err)
		}
		if err := s.env.Validate(inst); err != nil {
			t.Errorf("envelope %s does not match upstream's schema: %v", q.Body, err)
			continue
		}
		// Every detail-type sent here is one upstream describes.
		typed, err := s.c.Compile("eventbridge.json#/components/schemas/" + q.Env.DetailType)
		if err != nil {
			t.Errorf("upstream has no schema for detail-type %q: %v", q.Env.DetailType, err)
			continue
		}
		if err := typed.Validate(inst.(map[string]any)["detail"]); err != nil {
			t.Errorf("detail of %s does not match upstream's %s: %v", q.Body, q.Env.DetailType, err)
		}
	}
}
