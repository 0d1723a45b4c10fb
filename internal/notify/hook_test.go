package notify_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/netsafe/netsafetest"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

func newSecret(t testing.TB) string {
	var k [24]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(k[:])
}

// testSafety lets the hook reach the receivers of these tests: http on
// 127.0.0.1.
var testSafety = netsafe.Policy{AllowHTTP: true, AllowPrivate: true}

func newHook(t testing.TB, url, secret string) *notify.Hook {
	t.Helper()
	h, err := notify.NewHook(notify.HookConfig{URL: url, Secret: secret, Safety: testSafety})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHookRetriedThenDelivered: a receiver answering 500 and then 200 gets
// each resident's delivery twice with the same webhook-id, each request
// signed as Standard Webhooks' own library verifies, and the body as the
// contract says (phoneNumber only for the resident who has one).
func TestHookRetriedThenDelivered(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			secret := newSecret(t)
			rc := startReceiver(t, &receiver{Reply: func(_ hookReq, n int, w http.ResponseWriter) {
				if n == 0 {
					http.Error(w, "not now", http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusOK)
			}}, "")
			f := newFixture(t, b, testConfig(), newHook(t, rc.URL(), secret))
			ringID := f.ring(app.RingInput{VisitorName: "Courier", Message: "Parcel"})
			page, err := f.svc.LockRings(ctx, f.key, 7, "", 1)
			if err != nil || len(page.Rings) != 1 {
				t.Fatal(err, page)
			}
			rangAt := page.Rings[0].Timestamp

			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []struct {
				id, name, phone string
			}{{f.alice, "Alice", ""}, {f.bob, "Bob", "+48123456789"}} {
				d := f.waitDelivery(ringID, u.id, es.ConsumerDoorbellHook, store.StatusDelivered)
				a := f.attempts(d.OutboxID)
				if d.Attempts != 2 || len(a) != 2 || a[0].Outcome != store.OutcomeRetry || a[0].StatusCode != 500 || !strings.Contains(a[0].Error, "not now") ||
					a[1].Outcome != store.StatusDelivered || a[1].StatusCode != 200 {
					t.Fatalf("%s: row %+v, attempts %+v", u.name, d, a)
				}
				id := "msg_" + ringID + "_" + u.id
				reqs := rc.ByID(id)
				if len(reqs) != 2 {
					t.Fatalf("%s: %d requests with webhook-id %s (all: %d)", u.name, len(reqs), id, len(rc.Requests()))
				}
				for _, r := range reqs {
					if err := wh.Verify(r.Body, r.Header); err != nil {
						t.Errorf("%s: signature: %v", u.name, err)
					}
					ts, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
					if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
						t.Errorf("webhook-timestamp %q", r.Header.Get("webhook-timestamp"))
					}
					if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "spkey" {
						t.Errorf("headers: %v", r.Header)
					}
					p := r.Payload
					want := notify.HookPayload{Type: "doorbell.ring", ID: id, RingID: ringID, LockID: 7, Timestamp: rangAt, Source: "api", VisitorName: "Courier",
						Message: "Parcel", Resident: notify.HookResident{UserID: u.id, Name: u.name, PhoneNumber: u.phone}}
					if p != want {
						t.Errorf("%s: payload\n got %+v\nwant %+v", u.name, p, want)
					}
					_, hasPhone := r.Raw["resident"].(map[string]any)["phoneNumber"]
					if hasPhone != (u.phone != "") {
						t.Errorf("%s: phoneNumber present = %v: %s", u.name, hasPhone, r.Body)
					}
				}
				if string(reqs[0].Body) != string(reqs[1].Body) {
					t.Errorf("%s: the retry's body differs", u.name)
				}
			}
			if n := len(rc.Requests()); n != 4 {
				t.Errorf("%d requests, want 4", n)
			}
		})
	}
}

// TestHookClientErrorFails: a 400 fails the row for good after one
// attempt; the error names the status and quotes the body.
func TestHookClientErrorFails(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rc := startReceiver(t, &receiver{Reply: func(_ hookReq, _ int, w http.ResponseWriter) {
				http.Error(w, "unknown phone number format", http.StatusBadRequest)
			}}, "")
			f := newFixture(t, b, testConfig(), newHook(t, rc.URL(), ""))
			ringID := f.ring(app.RingInput{})
			for _, u := range []string{f.alice, f.bob} {
				d := f.waitDelivery(ringID, u, es.ConsumerDoorbellHook, store.StatusFailed)
				if d.Attempts != 1 || !strings.Contains(d.LastError, "400") || !strings.Contains(d.LastError, "unknown phone number format") {
					t.Errorf("row: %+v", d)
				}
				if a := f.attempts(d.OutboxID); len(a) != 1 || a[0].StatusCode != 400 || a[0].Outcome != store.StatusFailed {
					t.Errorf("attempts: %+v", a)
				}
			}
			later := f.ring(app.RingInput{})
			f.waitDelivery(later, f.bob, es.ConsumerDoorbellHook, store.StatusFailed)
			if n := len(rc.ByID("msg_" + ringID + "_" + f.bob)); n != 1 {
				t.Errorf("the failed delivery was sent %d times", n)
			}
			for _, r := range rc.Requests() {
				if r.Header.Get("webhook-signature") != "" {
					t.Errorf("signed without a secret: %q", r.Header.Get("webhook-signature"))
				}
			}
		})
	}
}

// TestHookRetryAfter: a 429 with Retry-After: 1 puts the next attempt at
// least a second after the first.
func TestHookRetryAfter(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rc := startReceiver(t, &receiver{Reply: func(_ hookReq, n int, w http.ResponseWriter) {
				if n == 0 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusAccepted)
			}}, "")
			// RetryMax caps Retry-After too: leave room for one second.
			cfg := testConfig()
			cfg.RetryMax = 5 * time.Second
			f := newFixture(t, b, cfg, newHook(t, rc.URL(), newSecret(t)))
			ringID := f.ring(app.RingInput{})
			d := f.waitFailedAttempt(ringID, f.bob, es.ConsumerDoorbellHook)
			a := f.attempts(d.OutboxID)
			if len(a) != 1 || a[0].StatusCode != 429 {
				t.Fatalf("attempts: %+v", a)
			}
			at, err1 := time.Parse(domain.TimeLayout, a[0].At)
			next, err2 := time.Parse(domain.TimeLayout, d.NextAttemptAt)
			if err1 != nil || err2 != nil || next.Before(at.Add(time.Second)) {
				t.Errorf("attempt at %s, next attempt at %s: want at least a second later (%v %v)", a[0].At, d.NextAttemptAt, err1, err2)
			}
			f.waitDelivery(ringID, f.bob, es.ConsumerDoorbellHook, store.StatusDelivered)
			reqs := rc.ByID("msg_" + ringID + "_" + f.bob)
			if len(reqs) != 2 || reqs[1].At.Sub(reqs[0].At) < time.Second {
				t.Errorf("requests: %d, the second %s after the first", len(reqs), reqs[len(reqs)-1].At.Sub(reqs[0].At))
			}
		})
	}
}

// TestHookAnswers: how the hook classifies what a receiver does, talking
// to the channel directly.
func TestHookAnswers(t *testing.T) {
	ctx := context.Background()
	d := ringDelivery()
	d.User.Phone = "+48123456789"
	final := startReceiver(t, &receiver{}, "")
	long := strings.Repeat("x", 300)
	block := make(chan struct{})
	cases := []struct {
		name    string
		reply   func(w http.ResponseWriter)
		status  string
		code    int
		errHas  string
		after   time.Duration // RetryAfter at least
		timeout time.Duration
	}{
		{"204", func(w http.ResponseWriter) { w.WriteHeader(204) }, store.StatusDelivered, 204, "", 0, 0},
		{"redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", final.URL())
			w.WriteHeader(http.StatusMovedPermanently)
		}, store.StatusFailed, 301, "not followed", 0, 0},
		{"404 with a long body", func(w http.ResponseWriter) { http.Error(w, long, 404) }, store.StatusFailed, 404, "404 Not Found: " + strings.Repeat("x", 200), 0, 0},
		{"408", func(w http.ResponseWriter) { w.WriteHeader(408) }, store.OutcomeRetry, 408, "408", 0, 0},
		{"503 with an HTTP date", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		}, store.OutcomeRetry, 503, "503", 80 * time.Second, 0},
		{"500 ignores Retry-After", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(500)
		}, store.OutcomeRetry, 500, "500", 0, 0},
		{"timeout", func(http.ResponseWriter) { <-block }, store.OutcomeRetry, 0, "Timeout", 0, 200 * time.Millisecond},
	}
	rc := startReceiver(t, &receiver{Reply: func(r hookReq, _ int, w http.ResponseWriter) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.Path, "/"))
		cases[i].reply(w)
	}}, "")
	// Registered after the receiver: runs before its Close, which waits
	// for the blocked handler.
	t.Cleanup(func() { close(block) })
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := notify.NewHook(notify.HookConfig{URL: rc.URL() + "/" + strconv.Itoa(i), Secret: "raw secret bytes", Safety: testSafety,
				Client: &http.Client{Timeout: c.timeout}})
			if err != nil {
				t.Fatal(err)
			}
			r := h.Deliver(ctx, d)
			if r.Status != c.status || r.StatusCode != c.code || (c.errHas == "") != (r.Err == nil) || (r.Err != nil && !strings.Contains(r.Err.Error(), c.errHas)) {
				t.Errorf("got %+v (err %v), want %s %d %q", r, r.Err, c.status, c.code, c.errHas)
			}
			if r.Err != nil && strings.Contains(r.Err.Error(), strings.Repeat("x", 201)) {
				t.Errorf("error quotes more than 200 bytes of the body: %d bytes", len(r.Err.Error()))
			}
			if r.RetryAfter < c.after || (c.after == 0 && r.RetryAfter != 0) {
				t.Errorf("RetryAfter %s, want at least %s", r.RetryAfter, c.after)
			}
		})
	}
	if n := len(final.Requests()); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
	// Signed with a raw (non-whsec_) secret: the key is the secret's bytes.
	wh, err := standardwebhooks.NewWebhookRaw([]byte("raw secret bytes"))
	if err != nil {
		t.Fatal(err)
	}
	reqs := rc.Requests()
	if len(reqs) != len(cases) {
		t.Fatalf("%d requests, want %d", len(reqs), len(cases))
	}
	for _, r := range reqs {
		if err := wh.Verify(r.Body, r.Header); err != nil {
			t.Errorf("raw-secret signature: %v", err)
		}
		if r.Payload.Resident.PhoneNumber != "+48123456789" {
			t.Errorf("payload %s", r.Body)
		}
	}
}

// TestNewHookValidation: bad settings are refused naming the setting, and
// the URL policy's refusals name the operator setting that would allow it.
func TestNewHookValidation(t *testing.T) {
	for _, c := range []struct {
		url, secret string
		safety      netsafe.Policy
		want        string
	}{
		{"", "", testSafety, "SPKEY_NOTIFY_HOOK_URL: url is empty"},
		{"ftp://hooks.example.com/x", "", testSafety, "SPKEY_NOTIFY_HOOK_URL: url must use http or https, not ftp"},
		{"https:///path", "", testSafety, "SPKEY_NOTIFY_HOOK_URL: url must have a host"},
		{"hooks.example.com/ring", "", testSafety, "SPKEY_NOTIFY_HOOK_URL: url must be absolute"},
		{"https://user:pw@hooks.example.com/ring", "", testSafety, "SPKEY_NOTIFY_HOOK_URL: url must not contain a user name or password"},
		{"http://hooks.example.com/ring", "", netsafe.Policy{AllowPrivate: true}, "SPKEY_NOTIFY_HOOK_URL: url must use https (the operator can allow http with SPKEY_WEBHOOK_ALLOW_HTTP=true)"},
		{"http://127.0.0.1:9/ring", "", netsafe.Policy{AllowHTTP: true}, "SPKEY_NOTIFY_HOOK_URL: url host 127.0.0.1 is a loopback address (the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"},
		{"https://hooks.example.com/ring", "whsec_!!not base64!!", testSafety, "SPKEY_NOTIFY_HOOK_SECRET"},
	} {
		_, err := notify.NewHook(notify.HookConfig{URL: c.url, Secret: c.secret, Safety: c.safety})
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.secret != "" && strings.Contains(err.Error(), c.secret)) {
			t.Errorf("NewHook(%q, %q) = %v, want an error with %q", c.url, c.secret, err, c.want)
		}
		if strings.HasPrefix(c.want, "SPKEY_NOTIFY_HOOK_URL") && !errors.Is(err, netsafe.ErrRefused) {
			t.Errorf("NewHook(%q): %v does not match netsafe.ErrRefused", c.url, err)
		}
	}
	h, err := notify.NewHook(notify.HookConfig{URL: "http://127.0.0.1:9/ring", Safety: testSafety})
	if err != nil || h.Consumer() != es.ConsumerDoorbellHook || h.Name() != "hook" {
		t.Errorf("NewHook: %v", err)
	}
}

// TestHookRefusesPrivateAddress: without AllowPrivate, a hook whose name
// resolved to a public address at start-up and resolves to 127.0.0.1 when
// delivering (DNS rebinding, on a real DNS server) is refused by the
// dialer: the receiver sees nothing and the attempt is retried with an
// error saying the address is not allowed.
func TestHookRefusesPrivateAddress(t *testing.T) {
	rc := startReceiver(t, &receiver{}, "")
	dns := netsafetest.NewDNS(t, netip.MustParseAddr("1.1.1.1"))
	u, err := url.Parse(rc.URL())
	if err != nil {
		t.Fatal(err)
	}
	h, err := notify.NewHook(notify.HookConfig{URL: "http://hooks.rebind.example:" + u.Port() + "/ring",
		Safety: netsafe.Policy{AllowHTTP: true, Resolver: dns.Resolver()}})
	if err != nil {
		t.Fatal(err)
	}
	dns.Set(netip.MustParseAddr("127.0.0.1"))
	r := h.Deliver(context.Background(), ringDelivery())
	if r.Status != store.OutcomeRetry || r.Err == nil || !errors.Is(r.Err, netsafe.ErrRefused) ||
		!strings.Contains(r.Err.Error(), "address 127.0.0.1 is not allowed: it is a loopback address") {
		t.Errorf("got %+v (err %v), want a retry refused by the dialer", r, r.Err)
	}
	if n := len(rc.Requests()); n != 0 {
		t.Errorf("the receiver saw %d requests", n)
	}
}

// TestHookSignKnownVector pins the hook's signatures to values computed
// (and checked with an independent HMAC-SHA256) before signing moved to the
// standard-webhooks library, for both kinds of secret the operator may
// give, and the refusal of a "whsec_" secret without a key.
func TestHookSignKnownVector(t *testing.T) {
	body := []byte(`{"type":"lock.opened","id":"evt_1","data":{"lockId":"lk_1","n":42}}`)
	for _, c := range []struct{ secret, want string }{
		{"raw secret bytes", "v1,Md+hKrDN9IvaRKGNqNwmyqY7YWUW8zgjHXSpqxLksiE="},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "v1,tSxHkTljS1KBVwDwogFT8xlW+BK0dMzGn1bXJojbhSg="},
		{"", ""},
	} {
		h := newHook(t, "http://127.0.0.1:9/ring", c.secret)
		if got := h.Sign("msg_ring1_user1", 1764757000, body); got != c.want {
			t.Errorf("secret %q: signature %q, want %q", c.secret, got, c.want)
		}
	}
	const refusal = `SPKEY_NOTIFY_HOOK_SECRET: after "whsec_" must come the key in standard base64`
	for _, bad := range []string{"whsec_", "whsec_!!not base64!!"} {
		_, err := notify.NewHook(notify.HookConfig{URL: "http://127.0.0.1:9/ring", Secret: bad, Safety: testSafety})
		if err == nil || err.Error() != refusal {
			t.Errorf("secret %q: %v, want %q", bad, err, refusal)
		}
	}
}
