package portal_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// receiver is a partner's webhook endpoint: it answers 200 and keeps the
// bodies it got.
type receiver struct {
	mu     sync.Mutex
	bodies []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, string(b))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// got reports whether some body received so far contains s.
func (rc *receiver) got(s string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, b := range rc.bodies {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// keyState is what the API key card shows of itself.
type keyState struct {
	Open       bool   `json:"open"`
	Visible    bool   `json:"visible"`
	Value      string `json:"value"`
	Selected   int    `json:"selected"`
	Masked     string `json:"masked"`
	ScrollW    int    `json:"scrollW"`
	ClientW    int    `json:"clientW"`
	SummaryTxt string `json:"summary"`
}

// TestPartnerPortalInBrowser drives the whole portal in headless Chromium
// with page scripts switched off: sign in through the OIDC issuer,
// onboard, open the reveal toggle and select the key, call the API with
// it, set a webhook URL pointing at a real receiver and reload until it
// is verified, cause an event (a new lock of the org) and reload until
// its delivery is listed,
// then rotate the key and see the old one refused and the new one work.
func TestPartnerPortalInBrowser(t *testing.T) {
	tctx := testenv.Browser(t)
	e := newPartnerEnv(t, testenv.SQLite, nil)
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	e.iss.SetLogin(testenv.Login{Subject: "b1", Email: "browser@acme.example", EmailVerified: true})

	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start browser: %v", err)
	}
	if _, err := chromedp.Call(tctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable scripts: %v", err)
	}
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tctx, actions...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	card := func() keyState {
		t.Helper()
		k, err := chromedp.Run(tctx, chromedp.Evaluate[keyState](`(() => {
			const d = document.getElementById('key-reveal'), i = document.getElementById('api-key'), m = document.getElementById('key-masked');
			return {open: !!(d && d.open), visible: !!(i && i.checkVisibility()), value: i ? i.value : '',
				selected: i ? i.selectionEnd - i.selectionStart : 0, masked: m ? m.textContent : '',
				scrollW: document.documentElement.scrollWidth, clientW: document.documentElement.clientWidth,
				summary: d ? d.querySelector('summary').textContent : ''};
		})()`))
		if err != nil {
			t.Fatalf("read the key card: %v", err)
		}
		return k
	}

	step("sign in",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(e.srv.URL+"/portal/"),
		chromedp.Click(chromedp.ID("signin-oidc")),
		chromedp.WaitVisible(chromedp.ID("orgId")))
	if who := text("#signed-in-as"); who != "browser@acme.example" {
		t.Fatalf("signed in as %q", who)
	}

	step("onboard",
		chromedp.SendKeys(chromedp.ID("orgId"), "acme"),
		chromedp.SendKeys(chromedp.ID("orgName"), "Acme Rentals"),
		chromedp.Click(chromedp.ID("onboard")),
		chromedp.WaitVisible(chromedp.ID("key-reveal")))
	k := card()
	if k.Open || k.Visible || k.SummaryTxt != "Reveal API key" {
		t.Fatalf("the key is not behind a closed toggle: %+v", k)
	}
	if k.ScrollW > k.ClientW {
		t.Errorf("the dashboard scrolls sideways on a phone: %d > %d", k.ScrollW, k.ClientW)
	}
	step("reveal the key",
		chromedp.Click(chromedp.CSS("#key-reveal summary")),
		chromedp.WaitVisible(chromedp.ID("api-key")),
		// Copying: a click and select-all in the read-only field.
		chromedp.Click(chromedp.ID("api-key")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	k = card()
	key := k.Value
	if len(key) != 40 || !k.Open || k.Masked != key[:8]+"…"+key[36:] {
		t.Fatalf("revealed key card: %+v", k)
	}
	if k.Selected != 40 {
		t.Errorf("select-all in the key field selected %d characters, want 40", k.Selected)
	}

	if got := createLock(t, e, key, 1); got != 201 {
		t.Fatalf("CreateLock with the key from the page: %d", got)
	}

	step("set the webhook URL",
		chromedp.SendKeys(chromedp.ID("webhook-url"), hook.URL+"/spkey"),
		chromedp.Click(chromedp.ID("save-webhook")),
		chromedp.WaitVisible(chromedp.ID("hook-status")))
	if n := text("#notice"); !strings.Contains(n, "Webhook URL saved") {
		t.Errorf("notice %q", n)
	}
	if got := text("#hook-url"); got != hook.URL+"/spkey" {
		t.Errorf("webhook URL shown: %q", got)
	}
	reloadUntil(t, tctx, "the webhook to be verified (status active)", 20*time.Second, func() bool { return text("#hook-status") == "active" })

	// An event of the org: a second lock created with its key.
	if got := createLock(t, e, key, 2); got != 201 {
		t.Fatalf("CreateLock 2: %d", got)
	}
	var rows []string
	t.Cleanup(func() {
		if t.Failed() {
			rc.mu.Lock()
			t.Logf("delivery rows on the page: %q\nthe receiver got: %q", rows, rc.bodies)
			rc.mu.Unlock()
		}
	})
	// Lock 2's events for the org (from OrganizationSet on: LockCreated
	// precedes the org's ownership) reach the receiver and the page.
	reloadUntil(t, tctx, "a delivered event of lock 2 to be listed", 20*time.Second, func() bool {
		var err error
		rows, err = chromedp.Run(tctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#deliveries tr.delivery')].map(r => r.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if strings.Contains(r, "OrganizationSet") && strings.Contains(r, "lock 2") && strings.Contains(r, "delivered") {
				t.Logf("delivery row: %q", r)
				return true
			}
		}
		return false
	})
	if !rc.got(`"detail-type":"OrganizationSet"`) || !rc.got(`"aggregateId":"2"`) {
		t.Error("the receiver never got the OrganizationSet event the page lists")
	}
	if got := text("#hook-last-error"); got != "none" {
		t.Errorf("last error %q", got)
	}

	step("rotate",
		chromedp.Click(chromedp.ID("rotate")),
		chromedp.WaitVisible(chromedp.ID("key-reveal")),
		chromedp.Click(chromedp.CSS("#key-reveal summary")),
		chromedp.WaitVisible(chromedp.ID("api-key")))
	k = card()
	key2 := k.Value
	if len(key2) != 40 || key2 == key {
		t.Fatalf("rotated key %q (old %q)", key2, key)
	}
	if got := e.api(t, "GET", "/locks/1/basic-info", key, ""); got != 401 {
		t.Errorf("the old key after rotation: %d, want 401", got)
	}
	if got := e.api(t, "GET", "/locks/1/basic-info", key2, ""); got != 200 {
		t.Errorf("the new key: %d, want 200", got)
	}

	step("open the dashboard again", chromedp.Navigate(e.srv.URL+"/portal/"), chromedp.WaitVisible(chromedp.ID("key-masked")))
	k = card()
	if k.Value != "" || k.Masked != key2[:8]+"…"+key2[36:] {
		t.Fatalf("after the rotation a GET shows %+v", k)
	}

	step("sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("signin-oidc")))
	if n := text("#notice"); n != "You are signed out." {
		t.Errorf("notice after sign-out %q", n)
	}
}

// reloadUntil reloads the page until ok, or fails after within.
func reloadUntil(t *testing.T, ctx context.Context, what string, within time.Duration, ok func() bool) {
	t.Helper()
	waitFor(t, what, within, func() bool {
		if ok() {
			return true
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(strings.TrimSuffix(mustLocation(t, ctx), "?saved=webhook")), chromedp.WaitVisible(chromedp.ID("hook-h"))); err != nil {
			t.Fatalf("reload: %v", err)
		}
		return false
	})
}

func mustLocation(t *testing.T, ctx context.Context) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
