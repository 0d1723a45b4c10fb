package portal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const (
	lockID      = 7
	emptyLockID = 8
	aliceEmail  = "alice@example.com"
	bobPhone    = "+48123456789"
)

// fixture is tenant "acme" owning lock 7 with residents Alice (e-mail) and
// Bob (phone only) and lock 8 with nobody, behind a real store and service,
// with the doorbell page mounted on an httptest server.
type fixture struct {
	svc        *app.Service
	key        app.Principal
	alice, bob string
	clock      *fakeClock
	srv        *httptest.Server
	posts      *postLog
}

// postLog keeps the headers of the POSTs the server received.
type postLog struct {
	mu      sync.Mutex
	headers []http.Header
}

func (l *postLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			l.mu.Lock()
			l.headers = append(l.headers, r.Header.Clone())
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (l *postLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]http.Header(nil), l.headers...)
}

func newFixture(t *testing.T, b testenv.Backend, cfg portal.DoorbellConfig) fixture {
	t.Helper()
	ctx := context.Background()
	st := testenv.OpenStore(t, b)
	f := fixture{svc: app.New(st, app.Options{}, testenv.Discard())}
	d := testenv.SeedDoorbell(t, f.svc)
	f.key, f.alice, f.bob = d.Key, d.Alice, d.Bob
	if _, err := f.svc.CreateLock(ctx, app.Call{P: f.key}, emptyLockID, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-666666666666"}); err != nil {
		t.Fatal(err)
	}
	f.clock = &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = f.clock.Now
	}
	mux := http.NewServeMux()
	portal.NewDoorbell(f.svc, cfg, testenv.Logger(t)).Register(mux)
	f.posts = &postLog{}
	f.srv = httptest.NewServer(f.posts.wrap(mux))
	t.Cleanup(f.srv.Close)
	return f
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (f fixture) do(t *testing.T, method, path string, form url.Values, header map[string]string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, string(b)}
}

func (f fixture) rings(t *testing.T, lock int64) []app.RingView {
	t.Helper()
	page, err := f.svc.LockRings(context.Background(), f.key, lock, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	return page.Rings
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b testenv.Backend)) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) { fn(t, b) })
	}
}

func wantStatus(t *testing.T, a answer, status int, contains ...string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", a.status, status, a.body)
	}
	for _, s := range contains {
		if !strings.Contains(a.body, s) {
			t.Fatalf("body lacks %q:\n%s", s, a.body)
		}
	}
}

var styleRE = regexp.MustCompile(`(?s)<style>(.*?)</style>`)

// wantSecurityHeaders checks the headers every answer carries and, on an
// HTML page, that the CSP's style hash is the page's one style sheet.
func wantSecurityHeaders(t *testing.T, a answer) {
	t.Helper()
	csp := a.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "img-src 'self'", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
	if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers: %v", a.header)
	}
	if strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		m := styleRE.FindStringSubmatch(a.body)
		if m == nil {
			t.Fatalf("no <style> in the page")
		}
		sum := sha256.Sum256([]byte(m[1]))
		if want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q does not allow the page's style sheet (%s)", csp, want)
		}
	}
}

// TestDoorbellPageShowsNamesOnly: the page lists the residents by name, with
// one Ring button each and a Ring everybody button, and never shows their
// e-mail address or phone number; it is a script-free, accessible page.
func TestDoorbellPageShowsNamesOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		a := f.do(t, "GET", "/doorbell/7", nil, nil)
		wantStatus(t, a, 200, `<html lang="en">`, `name="viewport"`, ">Alice<", ">Bob<",
			`value="`+f.alice+`" aria-label="Ring Alice">Ring</button>`,
			`value="`+f.bob+`" aria-label="Ring Bob">Ring</button>`,
			`value="">Ring everybody</button>`,
			`<label for="visitorName">`, `<label for="message">`, `maxlength="80"`, `maxlength="280"`, `method="post"`)
		if ct := a.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		wantSecurityHeaders(t, a)
		for _, leak := range []string{aliceEmail, "example.com", bobPhone, "123456789", "<script"} {
			if strings.Contains(a.body, leak) {
				t.Errorf("page contains %q:\n%s", leak, a.body)
			}
		}
	})
}

// TestDoorbellRingEverybody: a post without residentUserId rings every
// resident, records the visitor's name and message with source
// visitor-page, and shows how many residents were told.
func TestDoorbellRingEverybody(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		a := f.do(t, "POST", "/doorbell/7", url.Values{"residentUserId": {""}, "visitorName": {"  Courier  "}, "message": {"Parcel\r\nfor you"}}, nil)
		wantStatus(t, a, 200, "Ringing everybody…", "We told 2 residents")
		wantSecurityHeaders(t, a)
		rings := f.rings(t, lockID)
		if len(rings) != 1 {
			t.Fatalf("rings: %+v", rings)
		}
		r := rings[0]
		if r.Source != "visitor-page" || r.VisitorName != "Courier" || r.Message != "Parcel\nfor you" || len(r.Residents) != 2 {
			t.Fatalf("ring: %+v", r)
		}
	})
}

// TestDoorbellRingOneResident: a resident's Ring button rings only them.
func TestDoorbellRingOneResident(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		a := f.do(t, "POST", "/doorbell/7", url.Values{"residentUserId": {f.alice}, "visitorName": {"Grandma"}}, nil)
		wantStatus(t, a, 200, "Ringing Alice…")
		rings := f.rings(t, lockID)
		if len(rings) != 1 || len(rings[0].Residents) != 1 || rings[0].Residents[0].UserID != f.alice || rings[0].VisitorName != "Grandma" {
			t.Fatalf("rings: %+v", rings)
		}
	})
}

// TestDoorbellEmptyLock: a lock without residents says so and still offers
// a Ring button, which records a ring that notified nobody.
func TestDoorbellEmptyLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		wantStatus(t, f.do(t, "GET", "/doorbell/8", nil, nil), 200, "Nobody is listed at this door yet", `value="">Ring</button>`)
		a := f.do(t, "POST", "/doorbell/8", url.Values{"visitorName": {"Plumber"}}, nil)
		wantStatus(t, a, 200, "Ring recorded", "nobody was notified")
		rings := f.rings(t, emptyLockID)
		if len(rings) != 1 || len(rings[0].Residents) != 0 || rings[0].VisitorName != "Plumber" {
			t.Fatalf("rings: %+v", rings)
		}
	})
}

// TestDoorbellBadInput: input the page must refuse is a 400 page that
// shows the error, keeps (escaped) what the visitor typed, and records
// nothing.
func TestDoorbellBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		long := strings.Repeat("é", 281)
		for _, tc := range []struct {
			name string
			form url.Values
			want []string
		}{
			{"message of 281 characters", url.Values{"visitorName": {"Tom <b>&</b>"}, "message": {long}},
				[]string{"Your message is too long: 281 characters, at most 280.", "Tom &lt;b&gt;&amp;&lt;/b&gt;", ">" + long + "</textarea>", `aria-invalid="true"`}},
			{"name of 81 characters", url.Values{"visitorName": {strings.Repeat("n", 81)}, "message": {"hi"}},
				[]string{"Your name is too long: 81 characters, at most 80.", ">hi</textarea>"}},
			{"name on two lines", url.Values{"visitorName": {"a\nb"}}, []string{"Your name must be one line of text."}},
			{"invalid UTF-8", url.Values{"message": {"\xff"}}, []string{"Your message contains characters we cannot read."}},
			{"someone not living here", url.Values{"residentUserId": {"6f1c2a9e-0b7e-4d3e-9a55-2f0c5e4b1a11"}, "visitorName": {"Ann"}},
				[]string{"That person is not listed at this door any more.", `value="Ann"`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := f.do(t, "POST", "/doorbell/7", tc.form, nil)
				wantStatus(t, a, 400, tc.want...)
				wantStatus(t, a, 400, `role="alert"`, ">Alice<")
				if strings.Contains(a.body, "<b>&</b>") {
					t.Fatal("visitor input was not escaped")
				}
			})
		}
		req, _ := http.NewRequest("POST", f.srv.URL+"/doorbell/7", strings.NewReader(`{"visitorName":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("JSON body: status %d, want 415", res.StatusCode)
		}
		if rings := f.rings(t, lockID); len(rings) != 0 {
			t.Fatalf("bad input recorded rings: %+v", rings)
		}
	})
}

// TestDoorbellRateLimit: after the burst a client gets 429 with an integer
// Retry-After and a page saying how long to wait; nothing more is
// recorded until the wait is over.
func TestDoorbellRateLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		ring := func() answer { return f.do(t, "POST", "/doorbell/7", url.Values{"visitorName": {"Eve"}}, nil) }
		for range 3 {
			wantStatus(t, ring(), 200, "We told 2 residents")
		}
		a := ring()
		wantStatus(t, a, 429, "Please wait 20 seconds before ringing again.", `value="Eve"`)
		if ra := a.header.Get("Retry-After"); ra != "20" {
			t.Fatalf("Retry-After %q, want 20", ra)
		}
		wantSecurityHeaders(t, a)
		f.clock.Advance(15 * time.Second)
		a = ring()
		wantStatus(t, a, 429, "Please wait 5 seconds before ringing again.")
		if ra := a.header.Get("Retry-After"); ra != "5" {
			t.Fatalf("Retry-After %q, want 5", ra)
		}
		if n := len(f.rings(t, lockID)); n != 3 {
			t.Fatalf("%d rings recorded, want 3", n)
		}
		f.clock.Advance(5 * time.Second)
		wantStatus(t, ring(), 200)
		if n := len(f.rings(t, lockID)); n != 4 {
			t.Fatalf("%d rings recorded, want 4", n)
		}
	})
}

// TestDoorbellCrossSitePost: a post another site makes a browser send is
// refused with 403 and records nothing; posts from the page itself (as
// browsers send them) and from non-browser clients go through.
func TestDoorbellCrossSitePost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{PerClient: portal.Limit{Every: time.Second, Burst: 100}})
		form := url.Values{"visitorName": {"Mallory"}}
		for _, h := range []map[string]string{
			{"Origin": "https://evil.example"},
			{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
			{"Origin": "null", "Sec-Fetch-Site": "cross-site"},
			{"Sec-Fetch-Site": "same-site"},
			{"Referer": "https://evil.example/page"},
			{"Origin": "null", "Referer": "https://evil.example/page"},
		} {
			a := f.do(t, "POST", "/doorbell/7", form, h)
			wantStatus(t, a, 403, "Ring from the doorbell page")
			wantSecurityHeaders(t, a)
		}
		if rings := f.rings(t, lockID); len(rings) != 0 {
			t.Fatalf("cross-site posts recorded rings: %+v", rings)
		}
		allowed := []map[string]string{
			// What a current browser sends from our page (Referrer-Policy:
			// no-referrer makes the Origin of a form post null).
			{"Origin": "null", "Sec-Fetch-Site": "same-origin"},
			{"Origin": f.srv.URL, "Sec-Fetch-Site": "same-origin"},
			// An older browser without Sec-Fetch-Site.
			{"Origin": "null"},
			{"Origin": f.srv.URL},
			{"Referer": f.srv.URL + "/doorbell/7"},
			// Not a browser.
			{},
		}
		for _, h := range allowed {
			wantStatus(t, f.do(t, "POST", "/doorbell/7", form, h), 200, "We told 2 residents")
		}
		if n := len(f.rings(t, lockID)); n != len(allowed) {
			t.Fatalf("%d rings, want %d", n, len(allowed))
		}
	})
}

// TestDoorbellUnknownLock: every route answers an unknown or malformed lock
// with the 404 "No doorbell here" page.
func TestDoorbellUnknownLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		for _, tc := range []struct{ method, path string }{
			{"GET", "/doorbell/999"}, {"GET", "/doorbell/abc"}, {"GET", "/doorbell/007"}, {"GET", "/doorbell/-7"},
			{"GET", "/doorbell/99999999999999999999"}, {"POST", "/doorbell/999"}, {"POST", "/doorbell/abc"},
			{"GET", "/doorbell/999/qr.png"}, {"GET", "/doorbell/x/qr.png"},
		} {
			var form url.Values
			if tc.method == "POST" {
				form = url.Values{"visitorName": {"x"}}
			}
			a := f.do(t, tc.method, tc.path, form, nil)
			wantStatus(t, a, 404, "<title>No doorbell here</title>")
			wantSecurityHeaders(t, a)
		}
	})
}

// decodeQR reads the QR code of a PNG. gozxing's finder-pattern search
// misreads about one random code in a thousand (zbarimg reads those
// fine), so an image it cannot locate is read again with PURE_BARCODE,
// the hint meant for generated, axis-aligned codes like ours.
func decodeQR(t *testing.T, body []byte) (string, int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	var res *gozxing.Result
	for _, hints := range []map[gozxing.DecodeHintType]any{nil, {gozxing.DecodeHintType_PURE_BARCODE: true}} {
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		if res, err = zxqr.NewQRCodeReader().Decode(bmp, hints); err == nil {
			break
		}
		t.Logf("decode QR with hints %v: %v", hints, err)
	}
	if res == nil {
		t.Fatal("the QR code does not decode")
	}
	return res.GetText(), img.Bounds().Dx()
}

// TestDoorbellQRCode: qr.png is a cacheable PNG whose QR code decodes to
// exactly the page's absolute URL: derived from the request, or the
// configured PublicURL, with X-Forwarded-Proto honoured only behind a
// trusted proxy; ?size= picks its size within 128..1024.
func TestDoorbellQRCode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b, portal.DoorbellConfig{})
		a := f.do(t, "GET", "/doorbell/7/qr.png", nil, nil)
		wantStatus(t, a, 200)
		if ct, cc := a.header.Get("Content-Type"), a.header.Get("Cache-Control"); ct != "image/png" || !strings.Contains(cc, "max-age=") {
			t.Fatalf("Content-Type %q, Cache-Control %q", ct, cc)
		}
		wantSecurityHeaders(t, a)
		text, size := decodeQR(t, []byte(a.body))
		if text != f.srv.URL+"/doorbell/7" || size != 256 {
			t.Fatalf("QR says %q at %dpx, want %q at 256px", text, size, f.srv.URL+"/doorbell/7")
		}
		if etag := a.header.Get("ETag"); etag == "" {
			t.Error("no ETag")
		} else if again := f.do(t, "GET", "/doorbell/7/qr.png", nil, map[string]string{"If-None-Match": etag}); again.status != http.StatusNotModified {
			t.Errorf("If-None-Match: status %d, want 304", again.status)
		}
		// X-Forwarded-Proto is the client's word unless a proxy is trusted.
		a = f.do(t, "GET", "/doorbell/7/qr.png?size=512", nil, map[string]string{"X-Forwarded-Proto": "https"})
		wantStatus(t, a, 200)
		if text, size := decodeQR(t, []byte(a.body)); text != f.srv.URL+"/doorbell/7" || size != 512 {
			t.Fatalf("QR says %q at %dpx", text, size)
		}
		for _, bad := range []string{"127", "1025", "abc", "", "256px"} {
			wantStatus(t, f.do(t, "GET", "/doorbell/7/qr.png?size="+bad, nil, nil), 400, "size must be")
		}

		proxied := newFixture(t, b, portal.DoorbellConfig{TrustProxy: true})
		a = proxied.do(t, "GET", "/doorbell/7/qr.png", nil, map[string]string{"X-Forwarded-Proto": "https"})
		wantStatus(t, a, 200)
		host := strings.TrimPrefix(proxied.srv.URL, "http://")
		if text, _ := decodeQR(t, []byte(a.body)); text != "https://"+host+"/doorbell/7" {
			t.Fatalf("behind a trusted proxy the QR says %q", text)
		}

		public := newFixture(t, b, portal.DoorbellConfig{PublicURL: "https://door.example.org/"})
		a = public.do(t, "GET", "/doorbell/7/qr.png?size=1024", nil, nil)
		wantStatus(t, a, 200)
		if text, size := decodeQR(t, []byte(a.body)); text != "https://door.example.org/doorbell/7" || size != 1024 {
			t.Fatalf("with PublicURL the QR says %q at %dpx", text, size)
		}
	})
}
