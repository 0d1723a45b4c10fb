package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestBrowserFetchWithCORS runs the seed's JavaScript fetch example from a
// page on another origin in real headless Chromium: the preflight is
// answered for the configured origin, the AddResident call succeeds, and
// the page can read X-Request-Id. A page on an origin not configured is
// blocked by the browser and nothing is written.
func TestBrowserFetchWithCORS(t *testing.T) {
	bctx := testenv.Browser(t)
	page := `<!doctype html><html><head><title>spkey fetch</title></head><body>
<script>
async function addResident(api, token) {
  try {
    const r = await fetch(api + '/locks/123/AddResident', {
      method: 'POST',
      headers: {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'},
      body: JSON.stringify({email: 'user@example.com', name: 'John Doe'})
    });
    return JSON.stringify({status: r.status, body: await r.json(), requestId: r.headers.get('X-Request-Id')});
  } catch (e) {
    return JSON.stringify({error: String(e)});
  }
}
</script></body></html>`
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	defer pages.Close()
	other := httptest.NewServer(pages.Config.Handler)
	defer other.Close()

	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{CORSOrigins: []string{pages.URL}})
	srv.Tenant(t, "acme", false)
	ctx := context.Background()
	p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	if _, err := srv.Svc.CreateLock(ctx, app.Call{P: p}, 123, app.CreateLockInput{Index: 1, UUID: "6f1c2a9e-0b7e-4d3e-9a55-2f0c5e4b1a11"}); err != nil {
		t.Fatal(err)
	}
	owner, err := srv.Svc.FindOrCreate(ctx, p, false, app.FindInput{Email: "owner@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Svc.SetOwner(ctx, app.Call{P: p}, 123, owner.UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Svc.FindOrCreate(ctx, p, false, app.FindInput{Email: "user@example.com"}); err != nil {
		t.Fatal(err)
	}
	token := srv.Token(t, owner.UserID, "owner@example.com")

	call := func(origin string) map[string]any {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(origin+"/")); err != nil {
			t.Fatalf("navigate: %v", err)
		}
		tctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		raw, err := chromedp.Run(tctx, chromedp.Evaluate[string](fmt.Sprintf("addResident(%q, %q)", srv.URL, token), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("page answered %q: %v", raw, err)
		}
		return m
	}

	before, err := srv.Store.DumpReadModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blocked := call(other.URL)
	if blocked["error"] == nil {
		t.Fatalf("fetch from an origin not configured should be blocked by the browser, got %v", blocked)
	}
	after, _ := srv.Store.DumpReadModels(ctx)
	if before != after {
		t.Fatal("a blocked preflight must write nothing")
	}

	got := call(pages.URL)
	if got["status"] != float64(200) {
		t.Fatalf("fetch from the configured origin: %v", got)
	}
	body := got["body"].(map[string]any)
	ev := body["event"].(map[string]any)
	if body["success"] != true || ev["type"] != "ResidentAdded" || body["email"] != "user@example.com" {
		t.Fatalf("unexpected body: %v", body)
	}
	if rid, _ := got["requestId"].(string); rid == "" {
		t.Fatalf("X-Request-Id not readable by the page: %v", got)
	}
}

// TestBrowserEventSource: a page on another origin (allowed by CORS) opens
// the resident's live stream with the browser's own EventSource, which
// cannot send headers, passing the JWT as ?access_token=; a ring reaches
// the page.
func TestBrowserEventSource(t *testing.T) {
	bctx := testenv.Browser(t)
	page := `<!doctype html><html><head><title>resident app</title></head><body><script>
window.events = []; window.opened = false;
function listen(url) {
  const es = new EventSource(url);
  es.onopen = () => { window.opened = true; };
  es.addEventListener('DoorbellRang', e => window.events.push(JSON.parse(e.data)));
}
</script></body></html>`
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	defer pages.Close()
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{CORSOrigins: []string{pages.URL}})
	d := testenv.SeedDoorbell(t, srv.Svc)
	token := srv.Token(t, d.Alice, "alice@example.com")
	url := fmt.Sprintf("%s/users/%s/notifications/stream?access_token=%s", srv.URL, d.Alice, token)
	if err := chromedp.Do(bctx, chromedp.Navigate(pages.URL+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf("listen(%q), true", url))); err != nil {
		t.Fatalf("start EventSource: %v", err)
	}
	poll := func(expr string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](expr))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never held (%v)", expr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	poll("window.opened === true")
	res, err := srv.Svc.RingDoorbell(context.Background(), app.Call{P: d.Key}, testenv.DoorbellLock, app.RingInput{VisitorName: "Courier"})
	if err != nil {
		t.Fatal(err)
	}
	poll("window.events.length === 1")
	got, err := chromedp.Run(bctx, chromedp.Evaluate[string]("window.events[0].ringId + ' ' + window.events[0].visitorName"))
	if err != nil || got != res.RingID+" Courier" {
		t.Fatalf("the page got %q (%v), want ring %s", got, err, res.RingID)
	}
}
