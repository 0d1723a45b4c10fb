package portal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// layout is what the page measures of itself at the phone viewport.
type layout struct {
	ScrollWidth  int     `json:"scrollWidth"`
	ClientWidth  int     `json:"clientWidth"`
	ButtonHeight float64 `json:"buttonHeight"`
	InputWidth   float64 `json:"inputWidth"`
}

// TestDoorbellInBrowser drives the page in headless Chromium at a phone
// viewport with JavaScript switched off: the page fits the screen without
// horizontal scrolling (even with a very long resident name), its style
// sheet applies under the CSP (large buttons), and typing a name and
// clicking a resident's Ring button (a real mouse click submitting the
// form) shows the confirmation and records a ring for that resident only
// with the typed name.
func TestDoorbellInBrowser(t *testing.T) {
	tctx := testenv.Browser(t)
	f := newFixture(t, testenv.SQLite, portal.DoorbellConfig{})
	ctx := context.Background()
	long, err := f.svc.FindOrCreate(ctx, f.key, false, app.FindInput{Email: "long@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	longName := "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft"
	if _, err := f.svc.AddResident(ctx, app.Call{P: f.key}, lockID, app.ResidentInput{Name: longName, UserID: &long.UserID}); err != nil {
		t.Fatal(err)
	}

	// Start the browser, then switch page scripts off for the whole test:
	// the page must work without them (its CSP forbids them anyway).
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start browser: %v", err)
	}
	if _, err := chromedp.Call(tctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable scripts: %v", err)
	}
	page := f.srv.URL + "/doorbell/7"
	if err := chromedp.Do(tctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.ID("visitorName")),
	); err != nil {
		t.Fatalf("open the page: %v", err)
	}

	got, err := chromedp.Run(tctx, chromedp.Evaluate[layout](`({
		scrollWidth: document.documentElement.scrollWidth,
		clientWidth: document.documentElement.clientWidth,
		buttonHeight: document.querySelector('button[name=residentUserId]:not([disabled])').getBoundingClientRect().height,
		inputWidth: document.getElementById('visitorName').getBoundingClientRect().width,
	})`))
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	t.Logf("layout at 390x844: %+v", got)
	if got.ClientWidth != 390 {
		t.Fatalf("viewport width %d, want 390 (is the viewport meta honoured?)", got.ClientWidth)
	}
	if got.ScrollWidth > got.ClientWidth {
		t.Errorf("the page scrolls sideways on a phone: scrollWidth %d > clientWidth %d", got.ScrollWidth, got.ClientWidth)
	}
	if got.ButtonHeight < 44 || got.InputWidth < 300 {
		t.Errorf("the style sheet did not apply (blocked by the CSP?): buttons %.0fpx high, name field %.0fpx wide", got.ButtonHeight, got.InputWidth)
	}

	if err := chromedp.Do(tctx,
		chromedp.SendKeys(chromedp.ID("visitorName"), "Courier Kim"),
		chromedp.Click(chromedp.CSS(`button[value="`+f.alice+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".done")),
	); err != nil {
		t.Fatalf("ring Alice: %v", err)
	}
	heading, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(".done h1")))
	if err != nil {
		t.Fatal(err)
	}
	if heading != "Ringing Alice…" {
		t.Fatalf("confirmation %q", heading)
	}
	rings := f.rings(t, lockID)
	if len(rings) != 1 {
		t.Fatalf("rings: %+v", rings)
	}
	r := rings[0]
	if r.Source != "visitor-page" || r.VisitorName != "Courier Kim" || len(r.Residents) != 1 || r.Residents[0].UserID != f.alice {
		t.Fatalf("ring: %+v", r)
	}
	posts := f.posts.all()
	if len(posts) != 1 {
		t.Fatalf("%d posts reached the server, want 1", len(posts))
	}
	h := posts[0]
	t.Logf("the browser's post: Origin %q, Sec-Fetch-Site %q, Referer %q, Content-Type %q",
		h.Get("Origin"), h.Get("Sec-Fetch-Site"), h.Get("Referer"), h.Get("Content-Type"))
	if !strings.HasPrefix(h.Get("Content-Type"), "application/x-www-form-urlencoded") {
		t.Errorf("the form was not posted url-encoded: %q", h.Get("Content-Type"))
	}
}
