package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// opsLog is a log sink the server writes to from its own goroutines.
type opsLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *opsLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the JSON records logged so far.
func (l *opsLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// requestLine returns the access-log record of request id, or nil. The
// server writes it before it sends the (small, buffered) answer, so it is
// there once the client has the answer.
func (l *opsLog) requestLine(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, m := range l.lines(t) {
		if m["msg"] == "request" && m["request_id"] == id {
			return m
		}
	}
	return nil
}

func TestOpsHealth(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
				got := wireOK(t, srv, wireReq{Method: "GET", Path: path}, http.StatusOK)
				if diff := cmp.Diff(map[string]any{"status": want}, got); diff != "" {
					t.Errorf("GET %s (-want +got):\n%s", path, diff)
				}
			}
		})
	}
}

func TestOpsMetrics(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			key := srv.Tenant(t, "acme", false)
			wireOK(t, srv, wireReq{Method: "GET", Path: "/healthz"}, http.StatusOK)
			wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/7/details", Key: key})
			// A request is counted after its answer is written, so the
			// client may see the answer first: scrape until both are in.
			var text string
			deadline := time.Now().Add(5 * time.Second)
			for {
				text = scrapeMetrics(t, srv, "")
				if strings.Contains(text, `route="GET /locks/{id}/details"`) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			series := regexp.MustCompile(`(?m)^spkey_http_requests_total\{(.*)\} (\S+)$`).FindAllStringSubmatch(text, -1)
			if len(series) == 0 {
				t.Fatalf("no spkey_http_requests_total series in:\n%s", text)
			}
			labels := map[string]bool{}
			for _, s := range series {
				labels[s[1]] = true
				if !strings.Contains(s[1], `route="`) {
					t.Errorf("series without a route label: %s", s[0])
				}
			}
			t.Run("route label names the route", func(t *testing.T) {
				for _, want := range []string{
					`method="GET",route="GET /healthz",status="200"`,
					`method="GET",route="GET /locks/{id}/details",status="404"`,
				} {
					if labels[want] {
						continue
					}
					t.Errorf("no series {%s}; have %v", want, labels)
				}
			})
		})
	}
}

func TestOpsRequestID(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			var logs opsLog
			srv := testenv.NewServer(t, b, testenv.Options{Log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})

			t.Run("a sent id is echoed and logged", func(t *testing.T) {
				const id = "client-req-0001"
				resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-Id": id}})
				if got := resp.Header.Get("X-Request-Id"); got != id {
					t.Errorf("X-Request-Id = %q, want %q", got, id)
				}
				line := logs.requestLine(t, id)
				if line == nil {
					t.Fatalf("no request log line with request_id %q in %v", id, logs.lines(t))
				}
				want := map[string]any{"msg": "request", "request_id": id, "method": "GET", "path": "/healthz", "status": float64(200)}
				got := map[string]any{}
				for k := range want {
					got[k] = line[k]
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("log line (-want +got):\n%s", diff)
				}
			})

			t.Run("otherwise one is generated", func(t *testing.T) {
				hex := regexp.MustCompile(`^[0-9a-f]{24}$`)
				var ids []string
				for range 2 {
					resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/healthz"})
					id := resp.Header.Get("X-Request-Id")
					if !hex.MatchString(id) {
						t.Fatalf("generated X-Request-Id %q is not 24 hex digits", id)
					}
					if logs.requestLine(t, id) == nil {
						t.Errorf("no request log line with generated request_id %q", id)
					}
					ids = append(ids, id)
				}
				if ids[0] == ids[1] {
					t.Errorf("two requests got the same id %q", ids[0])
				}
			})

			t.Run("an unusable id is replaced", func(t *testing.T) {
				bad := strings.Repeat("x", 129)
				resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-Id": bad}})
				if got := resp.Header.Get("X-Request-Id"); got == bad || got == "" {
					t.Errorf("X-Request-Id = %q, want a generated id", got)
				}
			})
		})
	}
}

func TestOpsCORS(t *testing.T) {
	const allowed = "http://app.example"
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{CORSOrigins: []string{allowed}})
			key := srv.Tenant(t, "acme", false)
			preflight := func(origin string) wireReq {
				return wireReq{Method: "OPTIONS", Path: "/locks/1/AddResident", Header: map[string]string{
					"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type",
				}}
			}

			t.Run("preflight from an allowed origin", func(t *testing.T) {
				before := wireSnapshot(t, srv)
				resp := wireDo(t, srv, preflight(allowed))
				if resp.Status != http.StatusNoContent {
					t.Errorf("status %d, want 204; body %s", resp.Status, resp.Raw)
				}
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, allowed)
				}
				allowHeaders := strings.Split(resp.Header.Get("Access-Control-Allow-Headers"), ",")
				has := map[string]bool{}
				for _, h := range allowHeaders {
					has[strings.ToLower(strings.TrimSpace(h))] = true
				}
				for _, h := range []string{"authorization", "content-type", "x-api-key", "idempotency-key"} {
					if !has[h] {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", resp.Header.Get("Access-Control-Allow-Headers"), h)
					}
				}
				if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
					t.Errorf("Access-Control-Allow-Methods %q lacks POST", resp.Header.Get("Access-Control-Allow-Methods"))
				}
				if len(resp.Raw) != 0 {
					t.Errorf("preflight answer has a body: %s", resp.Raw)
				}
				wireUnchanged(t, srv, before)
			})

			t.Run("preflight from another origin", func(t *testing.T) {
				resp := wireRefused(t, srv, preflight("http://evil.example"), http.StatusForbidden,
					wireErr(wireCommand, 403, "Origin not allowed: add it to SPKEY_CORS_ORIGINS"))
				if got, ok := resp.Header["Access-Control-Allow-Origin"]; ok {
					t.Errorf("Access-Control-Allow-Origin = %q on a refused origin", got)
				}
			})

			t.Run("actual request from the allowed origin", func(t *testing.T) {
				resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/healthz", Header: map[string]string{"Origin": allowed}})
				if resp.Status != http.StatusOK {
					t.Fatalf("status %d", resp.Status)
				}
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, allowed)
				}
				if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
					t.Errorf("Access-Control-Expose-Headers %q lacks X-Request-Id", resp.Header.Get("Access-Control-Expose-Headers"))
				}
				// A refusal must be readable by the page too.
				resp = wireDo(t, srv, wireReq{Method: "GET", Path: "/locks/1/details", Key: key, Header: map[string]string{"Origin": allowed}})
				if resp.Status != http.StatusNotFound || resp.Header.Get("Access-Control-Allow-Origin") != allowed {
					t.Errorf("404 from the allowed origin: status %d, Access-Control-Allow-Origin %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
				}
			})

			t.Run("actual request from another origin", func(t *testing.T) {
				resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/healthz", Header: map[string]string{"Origin": "http://evil.example"}})
				if _, ok := resp.Header["Access-Control-Allow-Origin"]; ok {
					t.Errorf("Access-Control-Allow-Origin %q sent to another origin", resp.Header.Get("Access-Control-Allow-Origin"))
				}
			})
		})
	}
}
