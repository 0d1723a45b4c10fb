package portal_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
)

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
