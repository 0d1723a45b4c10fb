package portal_test

import (
	"bufio"
	"context"
	"encoding/json"
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
	bin := chromium(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{Mount: func(mux *http.ServeMux, svc *app.Service) {
				portal.NewDoorbell(svc, portal.DoorbellConfig{}, testenv.Discard()).Register(mux)
			}})
			ctx := context.Background()
			key := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
			if _, err := srv.Svc.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Svc.CreateLock(ctx, app.Call{P: key}, 7, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
				t.Fatal(err)
			}
			u, err := srv.Svc.FindOrCreate(ctx, key, false, app.FindInput{Email: "alice@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Svc.AddResident(ctx, app.Call{P: key}, 7, app.ResidentInput{Name: "Alice", UserID: &u.UserID}); err != nil {
				t.Fatal(err)
			}
			events := residentStream(t, srv.URL+"/users/"+u.UserID+"/notifications/stream", srv.Token(t, u.UserID, "alice@example.com"))

			opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
				chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
				chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()))
			actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
			defer cancelA()
			bctx, cancelB := chromedp.NewContext(actx)
			defer cancelB()
			tctx, cancel := context.WithTimeout(bctx, 60*time.Second)
			defer cancel()
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
			select {
			case ev := <-events:
				if ev["type"] != "DoorbellRang" || ev["source"] != "visitor-page" || ev["visitorName"] != "Courier Kim" || ev["lockId"] != float64(7) {
					t.Fatalf("stream event: %v", ev)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the visitor's ring never reached the resident's stream")
			}
		})
	}
}

// residentStream opens a live stream and returns the data of its events.
func residentStream(t *testing.T, url, jwt string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %d", resp.StatusCode)
	}
	out := make(chan map[string]any, 8)
	connected := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == ": connected" {
				close(connected)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var m map[string]any
				if json.Unmarshal([]byte(data), &m) == nil {
					out <- m
				}
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not start")
	}
	return out
}
