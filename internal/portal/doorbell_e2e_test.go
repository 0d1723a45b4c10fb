package portal_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestVisitorRingReachesResidentStream is the whole doorbell in one pass on
// the real server (API, page, notification engine): a resident holds the
// live stream open, a visitor opens the page in headless Chromium, types a
// name and presses "Ring everybody", sees the confirmation, and the ring
// arrives on the resident's stream.
func TestVisitorRingReachesResidentStream(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{Mount: func(mux *http.ServeMux, svc *app.Service) {
				portal.NewDoorbell(svc, portal.DoorbellConfig{}, testenv.Discard()).Register(mux)
			}})
			d := testenv.SeedDoorbell(t, srv.Svc)
			alice := testenv.OpenStream(t, srv.URL+"/users/"+d.Alice+"/notifications/stream", testenv.Bearer(srv.Token(t, d.Alice, "alice@example.com")))
			bob := testenv.OpenStream(t, srv.URL+"/users/"+d.Bob+"/notifications/stream", testenv.Bearer(srv.Token(t, d.Bob, "")))
			tctx := testenv.Browser(t)
			if err := chromedp.Do(tctx,
				chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
				chromedp.Navigate(srv.URL+"/doorbell/7"),
				chromedp.WaitVisible(chromedp.ID("visitorName")),
				chromedp.SendKeys(chromedp.ID("visitorName"), "Courier Kim"),
				chromedp.Click(chromedp.CSS(`button.all`)),
				chromedp.WaitVisible(chromedp.CSS(".done")),
			); err != nil {
				t.Fatalf("ring from the page: %v", err)
			}
			heading, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(".done h1")))
			if err != nil || !strings.HasPrefix(heading, "Ringing") {
				t.Fatalf("confirmation %q (%v)", heading, err)
			}
			for _, s := range []*testenv.Stream{alice, bob} {
				ev := s.Next(t, 10*time.Second)
				if ev.Event != "DoorbellRang" || ev.Data["source"] != "visitor-page" || ev.Data["visitorName"] != "Courier Kim" || ev.Data["lockId"] != float64(testenv.DoorbellLock) {
					t.Fatalf("stream event: %+v", ev)
				}
			}
		})
	}
}
