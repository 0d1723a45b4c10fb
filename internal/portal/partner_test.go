package portal_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const (
	oidcClientID     = "spkey-portal"
	oidcClientSecret = "portal-client-secret"
)

// partnerEnv is a real spkey server (API and portal) over a real store,
// with an in-test OIDC issuer that knows the portal as a client. The
// portal's clock (sessions and links) can be moved.
type partnerEnv struct {
	srv    *testenv.Server
	iss    *testenv.Issuer
	secret []byte
	clock  *fakeClock
}

func newPartnerEnv(t *testing.T, b testenv.Backend, tweak func(*portal.PartnerConfig)) *partnerEnv {
	t.Helper()
	e := &partnerEnv{iss: testenv.OIDCIssuer(t), secret: make([]byte, 32), clock: &fakeClock{t: time.Now()}}
	_, _ = rand.Read(e.secret)
	cfg := portal.PartnerConfig{Secret: e.secret, Now: e.clock.Now,
		OIDC: &portal.OIDCConfig{Issuer: e.iss.URL, ClientID: oidcClientID, ClientSecret: oidcClientSecret, Name: "Test ID"}}
	if tweak != nil {
		tweak(&cfg)
	}
	e.srv = testenv.NewServer(t, b, testenv.Options{Mount: func(mux *http.ServeMux, svc *app.Service) {
		p, err := portal.NewPartner(svc, cfg, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		p.Register(mux)
	}})
	e.iss.AddClient(oidcClientID, oidcClientSecret, e.srv.URL+"/portal/callback")
	return e
}

// agent is one browser without JavaScript: a cookie jar, and redirects
// followed only when asked.
type agent struct {
	t    *testing.T
	base string
	c    *http.Client
	last answer
}

func (e *partnerEnv) agent(t *testing.T) *agent {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{t: t, base: e.srv.URL, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (a *agent) do(method, target string, form url.Values, header map[string]string) answer {
	a.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = a.base + target
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.last = answer{res.StatusCode, res.Header, string(b)}
	if loc := res.Header.Get("Location"); loc != "" {
		u, err := res.Request.URL.Parse(loc)
		if err != nil {
			a.t.Fatal(err)
		}
		a.last.header.Set("Location", u.String())
	}
	return a.last
}

func (a *agent) get(path string) answer { a.t.Helper(); return a.do("GET", path, nil, nil) }

// follow GETs path and follows redirects (through the issuer too).
func (a *agent) follow(path string) answer {
	a.t.Helper()
	ans := a.get(path)
	for range 10 {
		if ans.status/100 != 3 {
			return ans
		}
		ans = a.get(ans.header.Get("Location"))
	}
	a.t.Fatalf("too many redirects from %s", path)
	return ans
}

// post sends form with the CSRF token of the last page read.
func (a *agent) post(path string, form url.Values) answer {
	a.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", csrfOf(a.t, a.last.body))
	return a.postRaw(path, form, nil)
}

// postRaw sends form as it is.
func (a *agent) postRaw(path string, form url.Values, header map[string]string) answer {
	a.t.Helper()
	ans := a.do("POST", path, form, header)
	if ans.status == http.StatusSeeOther {
		return a.follow(ans.header.Get("Location"))
	}
	return ans
}

var (
	csrfRE   = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)
	apiKeyRE = regexp.MustCompile(`id="api-key" type="text" readonly value="([A-Za-z0-9]{40})"`)
	maskedRE = regexp.MustCompile(`id="key-masked">([^<]+)<`)
	keyIDRE  = regexp.MustCompile(`name="keyId" value="([^"]*)"`)
)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

func find(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s not in the page:\n%s", re, body)
	}
	return m[1]
}

// signInOIDC signs in through the issuer as email (verified) and returns
// the page the portal lands on.
func (e *partnerEnv) signInOIDC(t *testing.T, a *agent, email string) answer {
	t.Helper()
	e.iss.SetLogin(testenv.Login{Subject: "sub-" + email, Email: email, EmailVerified: true})
	ans := a.follow("/portal/login")
	if ans.status != 200 || !strings.Contains(ans.body, strings.ToLower(email)) {
		t.Fatalf("sign-in as %s landed on %d:\n%s", email, ans.status, ans.body)
	}
	return ans
}

// onboard signs a new partner in and registers orgID; it returns the
// first key and the agent, signed in.
func (e *partnerEnv) onboard(t *testing.T, email, orgID string) (string, *agent) {
	t.Helper()
	a := e.agent(t)
	e.signInOIDC(t, a, email)
	ans := a.post("/portal/onboard", url.Values{"orgId": {orgID}, "orgName": {orgID + " Ltd"}})
	wantStatus(t, ans, 200, `<details id="key-reveal">`)
	return find(t, apiKeyRE, ans.body), a
}

// api calls the JSON API with an API key and returns the status.
func (e *partnerEnv) api(t *testing.T, method, path, key, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// createLock creates lock id with an API key (the lock then belongs to
// the key's org) and returns the status.
func createLock(t *testing.T, e *partnerEnv, key string, id int) int {
	t.Helper()
	return e.api(t, "POST", fmt.Sprintf("/locks/%d/CreateLock", id), key,
		fmt.Sprintf(`{"index":1,"uuid":"6f1c2a9e-0b7e-4d3e-9a55-%012d","serialNumber":"SN-%d"}`, id, id))
}

// TestPartnerOnboardAndRotate: OIDC sign-in leads a new partner to the
// onboarding form; onboarding answers the dashboard with the key inside
// the reveal toggle; the key works on the API; any later GET shows it
// masked only; rotation shows the new key once, the old one is refused
// at once, and posting the same rotation again changes nothing.
func TestPartnerOnboardAndRotate(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	a := e.agent(t)
	ans := a.get("/portal/")
	wantStatus(t, ans, 200, `href="/portal/login"`, "Sign in with Test ID", "one-time sign-in link")
	wantSecurityHeaders(t, ans)
	if cc := ans.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	ans = e.signInOIDC(t, a, "Ops@Acme.example")
	wantStatus(t, ans, 200, `action="/portal/onboard"`, "ops@acme.example")

	ans = a.post("/portal/onboard", url.Values{"orgId": {"acme"}, "orgName": {"Acme Rentals"}})
	wantStatus(t, ans, 200, `<details id="key-reveal">`, `<summary>Reveal API key</summary>`, `id="org-id">acme<`, "shown only this once")
	wantSecurityHeaders(t, ans)
	key := find(t, apiKeyRE, ans.body)
	if masked := find(t, maskedRE, ans.body); masked != key[:8]+"…"+key[36:] {
		t.Errorf("masked %q for key %q", masked, key)
	}
	if got := createLock(t, e, key, 1); got != 201 {
		t.Fatalf("CreateLock with the onboarded key: %d", got)
	}

	ans = a.get("/portal/")
	wantStatus(t, ans, 200, `id="key-masked">`+key[:8]+"…"+key[36:]+"<")
	if strings.Contains(ans.body, key) || strings.Contains(ans.body, "key-reveal") {
		t.Fatalf("a GET after onboarding shows the full key:\n%s", ans.body)
	}

	keyID := find(t, keyIDRE, ans.body)
	ans = a.post("/portal/key/rotate", url.Values{"keyId": {keyID}})
	wantStatus(t, ans, 200, `<details id="key-reveal">`, "previous one no longer works")
	key2 := find(t, apiKeyRE, ans.body)
	if key2 == key {
		t.Fatal("rotation kept the key")
	}
	if got := e.api(t, "GET", "/locks/1/basic-info", key, ""); got != 401 {
		t.Errorf("the old key after rotation: %d, want 401", got)
	}
	if got := e.api(t, "GET", "/locks/1/basic-info", key2, ""); got != 200 {
		t.Errorf("the new key: %d, want 200", got)
	}

	// The rotation form posted again (a reload of its answer) names the
	// old key: nothing happens.
	ans = a.postRaw("/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {csrfOf(t, ans.body)}}, nil)
	wantStatus(t, ans, 409, "nothing was rotated", key2[:8]+"…")
	if strings.Contains(ans.body, key2) {
		t.Fatal("the refused rotation shows the full key")
	}
	if got := e.api(t, "GET", "/locks/1/basic-info", key2, ""); got != 200 {
		t.Errorf("the new key after a resubmitted rotation: %d, want 200", got)
	}
	// Reposting the onboarding form leads home; the org stays.
	ans = a.post("/portal/onboard", url.Values{"orgId": {"acme2"}, "orgName": {"Other"}})
	wantStatus(t, ans, 200, `id="org-id">acme<`)
	if strings.Contains(ans.body, "key-reveal") {
		t.Fatal("reposted onboarding revealed a key")
	}
}

// TestPartnerOnboardingErrors: a taken or malformed orgId shows the form
// again with the message and what was typed, and registers nothing.
func TestPartnerOnboardingErrors(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	e.onboard(t, "first@example.com", "taken")
	a := e.agent(t)
	e.signInOIDC(t, a, "second@example.com")
	ans := a.post("/portal/onboard", url.Values{"orgId": {"taken"}, "orgName": {"Second Co"}})
	wantStatus(t, ans, 409, `role="alert">The organization id taken is taken; please choose another.<`, `value="Second Co"`, `aria-invalid="true"`)
	ans = a.post("/portal/onboard", url.Values{"orgId": {"bad id!"}, "orgName": {"Second Co"}})
	wantStatus(t, ans, 400, "The organization id must be", `value="bad id!"`)
	ans = a.post("/portal/onboard", url.Values{"orgId": {"second"}, "orgName": {""}})
	wantStatus(t, ans, 400, "enter your organization&#39;s name")
	if _, found, _ := e.srv.Svc.PortalAccount(context.Background(), "second@example.com"); found {
		t.Fatal("a refused onboarding registered an organization")
	}
	ans = a.post("/portal/onboard", url.Values{"orgId": {"second"}, "orgName": {"Second Co"}})
	wantStatus(t, ans, 200, `id="org-id">second<`)
}

// TestPartnerOIDCRefusals: the provider's answer counts only with a
// verified e-mail, the matching state and a flow cookie; otherwise no
// session starts.
func TestPartnerOIDCRefusals(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	for _, c := range []struct {
		name  string
		login testenv.Login
	}{
		{"unverified", testenv.Login{Subject: "u1", Email: "u1@example.com", EmailVerified: false}},
		{"no email_verified", testenv.Login{Subject: "u2", Email: "u2@example.com", OmitEmailVerified: true}},
		{"no email", testenv.Login{Subject: "u3", EmailVerified: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := e.agent(t)
			e.iss.SetLogin(c.login)
			ans := a.follow("/portal/login")
			wantStatus(t, ans, 403, "E-mail address not verified")
			wantStatus(t, a.get("/portal/"), 200, `href="/portal/login"`)
		})
	}

	t.Run("state", func(t *testing.T) {
		a := e.agent(t)
		e.iss.SetLogin(testenv.Login{Subject: "v", Email: "v@example.com", EmailVerified: true})
		toIssuer := a.get("/portal/login")
		wantStatus(t, toIssuer, 302)
		back := a.get(toIssuer.header.Get("Location"))
		cb, _ := url.Parse(back.header.Get("Location"))
		q := cb.Query()
		q.Set("state", "forged")
		cb.RawQuery = q.Encode()
		exchanges := e.iss.Exchanges()
		wantStatus(t, a.get(cb.String()), 400, "Sign-in expired")
		if e.iss.Exchanges() != exchanges {
			t.Error("a callback with a forged state exchanged the code")
		}
		// The flow cookie went with the failed callback: the right state
		// does not work any more either.
		wantStatus(t, a.get(back.header.Get("Location")), 400, "Sign-in expired")
		wantStatus(t, a.get("/portal/"), 200, `href="/portal/login"`)
	})

	t.Run("callback in another browser", func(t *testing.T) {
		a, other := e.agent(t), e.agent(t)
		toIssuer := a.get("/portal/login")
		back := a.get(toIssuer.header.Get("Location"))
		wantStatus(t, other.get(back.header.Get("Location")), 400, "Sign-in expired")
		wantStatus(t, other.get("/portal/"), 200, `href="/portal/login"`)
	})

	t.Run("provider error", func(t *testing.T) {
		a := e.agent(t)
		toIssuer := a.get("/portal/login")
		u, _ := url.Parse(toIssuer.header.Get("Location"))
		state := u.Query().Get("state")
		wantStatus(t, a.get("/portal/callback?error=access_denied&error_description=User+said+no&state="+state), 403, "User said no")
	})
}

// TestPartnerLink: a one-time link signs in once. Opening it spends
// nothing (link previews); the post does; a second post, an expired, a
// tampered or another server's link is refused.
func TestPartnerLink(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newPartnerEnv(t, b, func(c *portal.PartnerConfig) { c.OIDC = nil })
		now := e.clock.Now()
		token, err := portal.LinkToken(e.secret, "Link@Example.com", now, now.Add(15*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		link := "/portal/link?token=" + token

		a := e.agent(t)
		wantStatus(t, a.get("/portal/"), 200, "spkey portal-link --email")
		if strings.Contains(a.last.body, "/portal/login") {
			t.Error("the landing page offers OIDC without OIDC configured")
		}
		wantStatus(t, a.get("/portal/login"), 404)
		preview := e.agent(t)
		wantStatus(t, preview.get(link), 200, "Sign in as link@example.com")
		ans := a.get(link)
		wantStatus(t, ans, 200, `id="link-email">link@example.com<`, `action="/portal/link"`)
		wantSecurityHeaders(t, ans)
		if rp := ans.header.Get("Referrer-Policy"); rp != "no-referrer" {
			t.Errorf("the link page leaks its URL: Referrer-Policy %q", rp)
		}
		ans = a.post("/portal/link", url.Values{"token": {token}})
		wantStatus(t, ans, 200, `action="/portal/onboard"`, `id="signed-in-as">link@example.com<`)

		// The preview's page still has the button; its post is too late.
		wantStatus(t, preview.post("/portal/link", url.Values{"token": {token}}), 410, "already been used")
		wantStatus(t, preview.get("/portal/"), 200, `href="/portal/"`)
		if strings.Contains(preview.last.body, "signed-in-as") {
			t.Fatal("a used link signed in")
		}

		expired, err := portal.LinkToken(e.secret, "late@example.com", now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		late := e.agent(t)
		wantStatus(t, late.get("/portal/link?token="+expired), 200)
		e.clock.Advance(2 * time.Minute)
		wantStatus(t, late.post("/portal/link", url.Values{"token": {expired}}), 410, "expired")
		wantStatus(t, late.get("/portal/link?token="+expired), 410, "expired")

		other := make([]byte, 32)
		foreign, err := portal.LinkToken(other, "link@example.com", e.clock.Now(), e.clock.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := portal.LinkToken(e.secret, "link@example.com", e.clock.Now(), e.clock.Now().Add(time.Hour))
		payload, sig, _ := strings.Cut(fresh, ".")
		tampered := payload[:len(payload)-2] + "xx." + sig
		for name, tok := range map[string]string{"another secret": foreign, "tampered": tampered, "empty": "", "garbage": "a.b"} {
			t.Run(name, func(t *testing.T) {
				x := e.agent(t)
				wantStatus(t, x.get("/portal/link?token="+url.QueryEscape(tok)), 400, "not valid")
			})
		}
		// A tampered token posted with a valid session's CSRF token.
		x := e.agent(t)
		x.get("/portal/link?token=" + fresh)
		wantStatus(t, x.post("/portal/link", url.Values{"token": {tampered}}), 400, "not valid")
	})
}

// TestLinkTokenLimits: links live more than nothing and at most a week,
// for a well-formed address, under a long enough secret.
func TestLinkTokenLimits(t *testing.T) {
	now := time.Now()
	secret := make([]byte, 32)
	for name, err := range map[string]error{
		"past":         second(portal.LinkToken(secret, "a@example.com", now, now.Add(-time.Second))),
		"too long":     second(portal.LinkToken(secret, "a@example.com", now, now.Add(portal.MaxLinkTTL+time.Second))),
		"bad address":  second(portal.LinkToken(secret, "not an address", now, now.Add(time.Minute))),
		"short secret": second(portal.LinkToken(secret[:16], "a@example.com", now, now.Add(time.Minute))),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := portal.LinkToken(secret, "a@example.com", now, now.Add(portal.MaxLinkTTL)); err != nil {
		t.Error(err)
	}
}

func second[T any](_ T, err error) error { return err }

// TestPartnerSessionCookie: the session cookie is signed, HttpOnly,
// SameSite=Lax, scoped to /portal and lives 12 hours; a tampered or
// expired one counts as signed out and is cleared; sign-in starts a new
// session (a new CSRF token) rather than keeping the one before.
func TestPartnerSessionCookie(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	a := e.agent(t)
	e.iss.SetLogin(testenv.Login{Subject: "s", Email: "s@example.com", EmailVerified: true})
	toIssuer := a.get("/portal/login")
	flowCookie := toIssuer.header.Get("Set-Cookie")
	for _, want := range []string{"spkey_portal_oidc=", "Path=/portal", "HttpOnly", "SameSite=Lax", "Max-Age=600"} {
		if !strings.Contains(flowCookie, want) {
			t.Errorf("flow cookie %q lacks %q", flowCookie, want)
		}
	}
	back := a.get(toIssuer.header.Get("Location"))
	cb := a.get(back.header.Get("Location"))
	wantStatus(t, cb, 303)
	var sess *http.Cookie
	for _, c := range (&http.Response{Header: cb.header}).Cookies() {
		if c.Name == portal.SessionCookie {
			sess = c
		}
	}
	if sess == nil {
		t.Fatalf("no session cookie: %v", cb.header)
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/portal" || sess.MaxAge != 12*3600 || sess.Secure {
		t.Errorf("session cookie %+v", sess)
	}
	wantStatus(t, a.get("/portal/"), 200, "s@example.com")

	// Tampered: one character of the payload changed.
	bad := e.agent(t)
	u, _ := url.Parse(e.srv.URL + "/portal/")
	payload, sig, _ := strings.Cut(sess.Value, ".")
	flip := "A"
	if payload[3] == 'A' {
		flip = "B"
	}
	bad.c.Jar.SetCookies(u, []*http.Cookie{{Name: portal.SessionCookie, Value: payload[:3] + flip + payload[4:] + "." + sig, Path: "/portal"}})
	ans := bad.get("/portal/")
	wantStatus(t, ans, 200, `href="/portal/login"`)
	if sc := ans.header.Get("Set-Cookie"); !strings.Contains(sc, portal.SessionCookie+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("the tampered cookie was not cleared: %q", sc)
	}
	// Another server's secret signs a cookie this one refuses.
	forged := e.agent(t)
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: portal.SessionCookie, Value: "eyJpIjoiMSIsImUiOiJzQGV4YW1wbGUuY29tIiwieCI6OTk5OTk5OTk5OSwiYyI6ImFiYyJ9.AAAA", Path: "/portal"}})
	wantStatus(t, forged.get("/portal/"), 200, `href="/portal/login"`)

	e.clock.Advance(12*time.Hour + time.Second)
	wantStatus(t, a.get("/portal/"), 200, `href="/portal/login"`)
}

// TestPartnerSecureCookie: with an https public URL the cookies are
// Secure, and the public origin is accepted on posts.
func TestPartnerSecureCookie(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, func(c *portal.PartnerConfig) { c.PublicURL = "https://portal.example" })
	now := e.clock.Now()
	token, _ := portal.LinkToken(e.secret, "sec@example.com", now, now.Add(time.Minute))
	a := e.agent(t)
	ans := a.get("/portal/link?token=" + token)
	if sc := ans.header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Fatalf("cookie not Secure under an https public URL: %q", sc)
	}
	// The jar keeps Secure cookies from plain http: send it by hand.
	var sess string
	for _, c := range (&http.Response{Header: ans.header}).Cookies() {
		sess = c.Value
	}
	ans = a.do("POST", "/portal/link", url.Values{"token": {token}, "csrf": {csrfOf(t, ans.body)}},
		map[string]string{"Cookie": portal.SessionCookie + "=" + sess, "Origin": "https://portal.example", "Sec-Fetch-Site": "same-site"})
	wantStatus(t, ans, 303)
	if loc := ans.header.Get("Location"); !strings.HasSuffix(loc, "/portal/") {
		t.Errorf("redirect to %q", loc)
	}
}

// TestPartnerLogout: signing out clears the cookie and ends the session
// on the server: a copy of the old cookie is refused afterwards.
func TestPartnerLogout(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	_, a := e.onboard(t, "out@example.com", "outco")
	u, _ := url.Parse(e.srv.URL + "/portal/")
	var old *http.Cookie
	for _, c := range a.c.Jar.Cookies(u) {
		if c.Name == portal.SessionCookie {
			old = c
		}
	}
	ans := a.get("/portal/")
	// Without the token, nothing happens.
	wantStatus(t, a.postRaw("/portal/logout", url.Values{}, nil), 403)
	wantStatus(t, a.get("/portal/"), 200, `id="org-id">outco<`)
	ans = a.do("POST", "/portal/logout", url.Values{"csrf": {csrfOf(t, ans.body)}}, nil)
	wantStatus(t, ans, 303)
	if sc := ans.header.Get("Set-Cookie"); !strings.Contains(sc, portal.SessionCookie+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("logout did not clear the cookie: %q", sc)
	}
	wantStatus(t, a.follow(ans.header.Get("Location")), 200, "You are signed out.", `href="/portal/login"`)

	thief := e.agent(t)
	thief.c.Jar.SetCookies(u, []*http.Cookie{old})
	wantStatus(t, thief.get("/portal/"), 200, `href="/portal/login"`)
	if strings.Contains(thief.last.body, "outco") {
		t.Fatal("the signed-out cookie still opens the dashboard")
	}
}

// TestPartnerCSRF: every post needs the session's CSRF token and a
// same-origin request; refused posts change nothing.
func TestPartnerCSRF(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	key, a := e.onboard(t, "csrf@example.com", "csrfco")
	_, other := e.onboard(t, "other@example.com", "otherco")
	ans := a.get("/portal/")
	token := csrfOf(t, ans.body)
	keyID := find(t, keyIDRE, ans.body)
	otherToken := csrfOf(t, other.get("/portal/").body)

	newcomer := e.agent(t)
	e.signInOIDC(t, newcomer, "new@example.com")
	newcomerToken := csrfOf(t, newcomer.last.body)

	crossSite := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
	oldBrowser := map[string]string{"Origin": "https://evil.example"}
	for _, c := range []struct {
		name   string
		who    *agent
		path   string
		form   url.Values
		header map[string]string
	}{
		{"rotate without token", a, "/portal/key/rotate", url.Values{"keyId": {keyID}}, nil},
		{"rotate with another session's token", a, "/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {otherToken}}, nil},
		{"rotate cross-site", a, "/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {token}}, crossSite},
		{"rotate cross-site, old browser", a, "/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {token}}, oldBrowser},
		{"webhook without token", a, "/portal/webhook", url.Values{"url": {"https://hooks.example/x"}}, nil},
		{"webhook cross-site", a, "/portal/webhook", url.Values{"url": {"https://hooks.example/x"}, "csrf": {token}}, crossSite},
		{"onboard without token", newcomer, "/portal/onboard", url.Values{"orgId": {"newco"}, "orgName": {"New"}}, nil},
		{"onboard with a wrong token", newcomer, "/portal/onboard", url.Values{"orgId": {"newco"}, "orgName": {"New"}, "csrf": {strings.Repeat("0", 64)}}, nil},
		{"onboard cross-site", newcomer, "/portal/onboard", url.Values{"orgId": {"newco"}, "orgName": {"New"}, "csrf": {newcomerToken}}, crossSite},
		{"logout cross-site", a, "/portal/logout", url.Values{"csrf": {token}}, crossSite},
	} {
		t.Run(c.name, func(t *testing.T) {
			ans := c.who.postRaw(c.path, c.form, c.header)
			wantStatus(t, ans, 403, "nothing was changed")
			if strings.Contains(ans.body, "key-reveal") {
				t.Fatal("a refused post revealed a key")
			}
		})
	}
	if got := createLock(t, e, key, 5); got != 201 {
		t.Errorf("the key after refused rotations: %d, want 201", got)
	}
	ctx := context.Background()
	me := app.Principal{Kind: app.TenantCaller, OrgID: "csrfco"}
	if hooks, _, err := e.srv.Svc.Webhooks(ctx, me, "", 10, 0); err != nil || len(hooks) != 0 {
		t.Errorf("webhooks after refused posts: %+v %v", hooks, err)
	}
	if _, found, _ := e.srv.Svc.PortalAccount(ctx, "new@example.com"); found {
		t.Error("a refused onboarding registered an organization")
	}
	wantStatus(t, a.get("/portal/"), 200, `id="org-id">csrfco<`)
	// A post with no session at all.
	stranger := e.agent(t)
	wantStatus(t, stranger.postRaw("/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {token}}, nil), 403, "Session expired")
	// The right token, same origin: works.
	wantStatus(t, a.postRaw("/portal/key/rotate", url.Values{"keyId": {keyID}, "csrf": {token}},
		map[string]string{"Origin": e.srv.URL, "Sec-Fetch-Site": "same-origin"}), 200, "key-reveal")
}

// TestPartnerRoutes: unknown portal pages are 404 pages; GET on a
// post-only address goes home; /portal goes to /portal/.
func TestPartnerRoutes(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	a := e.agent(t)
	wantStatus(t, a.get("/portal/nope"), 404, "Page not found")
	for _, p := range []string{"/portal/onboard", "/portal/key/rotate", "/portal/webhook", "/portal/logout", "/portal"} {
		ans := a.get(p)
		if ans.status/100 != 3 || !strings.HasSuffix(ans.header.Get("Location"), "/portal/") {
			t.Errorf("GET %s: %d to %q", p, ans.status, ans.header.Get("Location"))
		}
	}
	wantStatus(t, a.postRaw("/portal/onboard", nil, map[string]string{"Content-Type": "text/plain"}), 400)
}

// TestPartnerAuthorization: a partner's session reaches its own org only.
// No portal address names an org; ids of another tenant's key or webhook
// posted along (or in the query) change nothing of that tenant, and its
// key, webhook and deliveries never show.
func TestPartnerAuthorization(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	ctx := context.Background()

	keyA, a := e.onboard(t, "a@alpha.example", "alpha")
	keyB, b := e.onboard(t, "b@beta.example", "beta")
	bPage := b.get("/portal/")
	bCSRF := csrfOf(t, bPage.body)
	bKeyID := find(t, keyIDRE, bPage.body)
	bURL := hook.URL + "/beta"
	wantStatus(t, b.postRaw("/portal/webhook", url.Values{"url": {bURL}, "csrf": {bCSRF}}, nil), 200, "Webhook URL saved")
	beta := app.Principal{Kind: app.TenantCaller, OrgID: "beta"}
	hooks, _, err := e.srv.Svc.Webhooks(ctx, beta, "", 10, 0)
	if err != nil || len(hooks) != 1 {
		t.Fatalf("beta's webhooks: %+v %v", hooks, err)
	}
	bHook := hooks[0].ID
	if got := createLock(t, e, keyB, 20); got != 201 {
		t.Fatalf("beta's lock: %d", got)
	}
	waitFor(t, "a delivery of beta's event", 20*time.Second, func() bool {
		d, _, err := e.srv.Svc.Deliveries(ctx, beta, "", bHook, 0, 10)
		return err == nil && len(d) > 0
	})
	wantStatus(t, b.get("/portal/"), 200, `class="delivery"`, bURL)

	aPage := a.get("/portal/?orgId=beta&webhookId=" + bHook)
	wantStatus(t, aPage, 200, `id="org-id">alpha<`, "No webhook yet")
	for _, leak := range []string{"beta", bURL, bHook, keyB[:8], bKeyID, `class="delivery"`} {
		if strings.Contains(aPage.body, leak) {
			t.Fatalf("alpha's dashboard shows %q of beta:\n%s", leak, aPage.body)
		}
	}
	aCSRF := csrfOf(t, aPage.body)

	// Beta's key id: a conflict, nothing rotates anywhere.
	ans := a.postRaw("/portal/key/rotate", url.Values{"keyId": {bKeyID}, "orgId": {"beta"}, "csrf": {aCSRF}}, nil)
	wantStatus(t, ans, 409, "nothing was rotated", `id="org-id">alpha<`)
	for _, k := range []string{keyA, keyB} {
		if got := e.api(t, "GET", "/locks/20/basic-info", k, ""); got == 401 {
			t.Fatalf("a key was revoked by alpha's post with beta's key id")
		}
	}
	// Beta's org and webhook id along with a URL: alpha gets its own
	// webhook; beta's keeps its URL.
	ans = a.postRaw("/portal/webhook", url.Values{"url": {hook.URL + "/alpha"}, "orgId": {"beta"}, "webhookId": {bHook}, "id": {bHook}, "csrf": {aCSRF}}, nil)
	wantStatus(t, ans, 200, `id="org-id">alpha<`, hook.URL+"/alpha")
	hooks, _, _ = e.srv.Svc.Webhooks(ctx, beta, "", 10, 0)
	if len(hooks) != 1 || hooks[0].URL != bURL {
		t.Fatalf("beta's webhooks after alpha's post: %+v", hooks)
	}
	alpha := app.Principal{Kind: app.TenantCaller, OrgID: "alpha"}
	if aHooks, _, _ := e.srv.Svc.Webhooks(ctx, alpha, "", 10, 0); len(aHooks) != 1 || aHooks[0].URL != hook.URL+"/alpha" {
		t.Fatalf("alpha's webhooks: %+v", aHooks)
	}
	// Onboarding again as another org id leads home.
	ans = a.postRaw("/portal/onboard", url.Values{"orgId": {"beta"}, "orgName": {"Beta"}, "csrf": {aCSRF}}, nil)
	wantStatus(t, ans, 200, `id="org-id">alpha<`)
	// Underneath, the principal the portal builds cannot name beta either.
	if _, _, err := e.srv.Svc.Deliveries(ctx, alpha, "beta", bHook, 0, 10); err == nil {
		t.Fatal("alpha's principal read beta's deliveries")
	}
	if _, _, err := e.srv.Svc.Deliveries(ctx, alpha, "", bHook, 0, 10); err == nil {
		t.Fatal("alpha's principal read beta's deliveries by webhook id")
	}
	// Beta's page is as it was.
	bPage = b.get("/portal/")
	wantStatus(t, bPage, 200, `id="org-id">beta<`, bURL, keyB[:8]+"…")
	if strings.Contains(bPage.body, "alpha") {
		t.Fatalf("beta's dashboard shows alpha:\n%s", bPage.body)
	}
}

// TestPartnerWebhookURLError: a URL the server refuses shows the form
// again with the message and the typed URL, and creates nothing.
func TestPartnerWebhookURLError(t *testing.T) {
	e := newPartnerEnv(t, testenv.SQLite, nil)
	_, a := e.onboard(t, "w@example.com", "wco")
	a.get("/portal/")
	for _, bad := range []string{"ftp://files.example/x", "not a url", ""} {
		ans := a.post("/portal/webhook", url.Values{"url": {bad}})
		wantStatus(t, ans, 400, `id="hook-form-error" role="alert">`, `aria-invalid="true"`)
		if bad != "" && !strings.Contains(ans.body, `value="`+bad+`"`) {
			t.Errorf("the typed URL %q is not kept:\n%s", bad, ans.body)
		}
	}
	me := app.Principal{Kind: app.TenantCaller, OrgID: "wco"}
	if hooks, _, err := e.srv.Svc.Webhooks(context.Background(), me, "", 10, 0); err != nil || len(hooks) != 0 {
		t.Fatalf("webhooks after refused URLs: %+v %v", hooks, err)
	}
}

// waitFor polls cond until it holds, or fails after within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
