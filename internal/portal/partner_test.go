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
	"sync/atomic"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
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
	return newPartnerEnvWith(t, b, tweak, webhook.Config{})
}

// newPartnerEnvWith is newPartnerEnv with the server's webhook dispatcher
// configured by wh.
func newPartnerEnvWith(t *testing.T, b testenv.Backend, tweak func(*portal.PartnerConfig), wh webhook.Config) *partnerEnv {
	t.Helper()
	e := &partnerEnv{iss: testenv.OIDCIssuer(t), secret: make([]byte, 32), clock: &fakeClock{t: time.Now()}}
	_, _ = rand.Read(e.secret)
	cfg := portal.PartnerConfig{Secret: e.secret, Now: e.clock.Now,
		OIDC: &portal.OIDCConfig{Issuer: e.iss.URL, ClientID: oidcClientID, ClientSecret: oidcClientSecret, Name: "Test ID"}}
	if tweak != nil {
		tweak(&cfg)
	}
	e.srv = testenv.NewServer(t, b, testenv.Options{Webhooks: wh, Mount: func(mux *http.ServeMux, svc *app.Service) {
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

// TestPartnerQueueFull: when the partner's endpoint stops keeping up and
// its webhook's queue fills, the webhook card says since when and that
// newer events wait; once the endpoint answers again, the note goes.
func TestPartnerQueueFull(t *testing.T) {
	var up atomic.Bool
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.Header.Get("webhook-id"), "verify_") || up.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(rcv.Close)
	e := newPartnerEnvWith(t, testenv.SQLite, nil, webhook.Config{Window: 2, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	key, a := e.onboard(t, "q@example.com", "qco")
	wantStatus(t, a.post("/portal/webhook", url.Values{"url": {rcv.URL + "/events"}}), 200, `id="hook-url"`)
	waitFor(t, "the webhook to be verified", 10*time.Second, func() bool {
		return strings.Contains(a.get("/portal/").body, `id="hook-status">active<`)
	})
	for id := 1; id <= 4; id++ {
		if got := createLock(t, e, key, id); got != http.StatusCreated && got != http.StatusOK {
			t.Fatalf("CreateLock %d: %d", id, got)
		}
	}
	waitFor(t, "the queue-full note", 10*time.Second, func() bool {
		return strings.Contains(a.get("/portal/").body, `id="hook-queue">Full since <time datetime="`)
	})
	up.Store(true)
	waitFor(t, "the queue-full note to go", 10*time.Second, func() bool {
		return !strings.Contains(a.get("/portal/").body, `id="hook-queue"`)
	})
}
