package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// scrapeMetrics GETs /metrics from srv's metrics listener (with token as
// a bearer token, if not "") and returns the text; anything but 200 fails
// the test.
func scrapeMetrics(t testing.TB, srv *testenv.Server, token string) string {
	t.Helper()
	code, body := metricsGet(t, srv.MetricsURL+"/metrics", token)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics on the metrics listener: %d %s", code, body)
	}
	return body
}

func metricsGet(t testing.TB, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the series name{labels} (labels as
// Prometheus writes them, "" for none) in text, or -1 when it is absent.
func metricValue(text, name, labels string) float64 {
	if labels != "" {
		labels = `\{` + regexp.QuoteMeta(labels) + `\}`
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + labels + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsNotPublic: the API's listener has no /metrics (404 in the
// error envelope, with or without credentials); the metrics listener
// serves them, and nothing else.
func TestMetricsNotPublic(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	for _, r := range []wireReq{{Method: "GET", Path: "/metrics"}, {Method: "GET", Path: "/metrics", Header: map[string]string{"X-Admin-API-Key": testenv.AdminKey}}} {
		resp := wireDo(t, srv, r)
		if resp.Status != http.StatusNotFound || resp.Obj(t)["code"] != float64(404) {
			t.Errorf("public GET /metrics: %d %s", resp.Status, resp.Raw)
		}
	}
	if text := scrapeMetrics(t, srv, ""); metricValue(text, "spkey_live_streams", "") != 0 {
		t.Errorf("metrics listener: no spkey_live_streams 0 in\n%s", text)
	}
	if code, body := metricsGet(t, srv.MetricsURL+"/healthz", ""); code != http.StatusNotFound {
		t.Errorf("metrics listener GET /healthz: %d %s", code, body)
	}
}

// TestMetricsToken: with a token, the metrics listener answers 401
// without it or with another one, and the metrics with it.
func TestMetricsToken(t *testing.T) {
	const token = "scrape-token-0123456789"
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{MetricsToken: token})
	for _, bad := range []string{"", "wrong-token", token + "x"} {
		if code, body := metricsGet(t, srv.MetricsURL+"/metrics", bad); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d %s", bad, code, body)
		}
	}
	if text := scrapeMetrics(t, srv, token); metricValue(text, "spkey_live_streams", "") != 0 {
		t.Errorf("no spkey_live_streams in\n%s", text)
	}
}

// requestSeries returns the label sets of spkey_http_requests_total and
// the routes of spkey_http_request_duration_seconds in text, and the sum
// of the request counts.
func requestSeries(text string) (series, routes map[string]bool, total float64) {
	series, routes = map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^spkey_http_requests_total\{(.*)\} (\S+)$`).FindAllStringSubmatch(text, -1) {
		series[m[1]] = true
		v, _ := strconv.ParseFloat(m[2], 64)
		total += v
	}
	for _, m := range regexp.MustCompile(`(?m)^spkey_http_request_duration_seconds_count\{route="(.*)"\} `).FindAllStringSubmatch(text, -1) {
		routes[m[1]] = true
	}
	return series, routes, total
}

// TestMetricsLabelsBounded: anonymous callers cannot grow the request
// metrics by inventing methods or paths. Methods other than GET, HEAD,
// POST, PUT, PATCH, DELETE and OPTIONS are counted as method="other", and
// paths no route serves share route="unmatched": 50 made-up methods and
// 50 made-up paths add at most one series each, and so do 50 CONNECTs to a
// page under a wildcard subtree pattern (for which the mux's pattern would
// be the request's own path).
func TestMetricsLabelsBounded(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{Mount: func(mux *http.ServeMux, _ *app.Service) {
		mux.HandleFunc("/files/{id}/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	}})
	wireOK(t, srv, wireReq{Method: "GET", Path: "/healthz"}, http.StatusOK)
	// Redirects are not followed: each call is one request.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// settle waits until the request counts add up to want (a request is
	// counted after its answer is written) and returns the series then.
	settle := func(want float64) (map[string]bool, map[string]bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			series, routes, total := requestSeries(scrapeMetrics(t, srv, ""))
			if total == want {
				return series, routes
			}
			if time.Now().After(deadline) {
				t.Fatalf("spkey_http_requests_total adds up to %v, want %v", total, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	before, beforeRoutes := settle(1)

	for i := 1; i <= 50; i++ {
		send(fmt.Sprintf("M%06d", i), "/healthz")
	}
	methods, methodRoutes := settle(51)
	if added := len(methods) - len(before); added > 1 {
		t.Errorf("50 made-up methods added %d series of spkey_http_requests_total: %v", added, methods)
	}
	if !methods[`method="other",route="unmatched",status="405"`] {
		t.Errorf("no series {method=\"other\",route=\"unmatched\",status=\"405\"} in %v", methods)
	}
	if added := len(methodRoutes) - len(beforeRoutes); added > 1 {
		t.Errorf("50 made-up methods added %d routes to spkey_http_request_duration_seconds: %v", added, methodRoutes)
	}

	for i := 1; i <= 50; i++ {
		send("GET", fmt.Sprintf("/no/such/route/%d", i))
	}
	paths, pathRoutes := settle(101)
	if added := len(paths) - len(methods); added > 1 {
		t.Errorf("50 made-up paths added %d series of spkey_http_requests_total: %v", added, paths)
	}
	if !paths[`method="GET",route="unmatched",status="404"`] {
		t.Errorf("no series {method=\"GET\",route=\"unmatched\",status=\"404\"} in %v", paths)
	}
	if len(pathRoutes) != len(methodRoutes) {
		t.Errorf("50 made-up paths added routes to spkey_http_request_duration_seconds: %v", pathRoutes)
	}

	for i := 1; i <= 50; i++ {
		send("CONNECT", fmt.Sprintf("/files/f%d", i))
	}
	connects, connectRoutes := settle(151)
	if added := len(connects) - len(paths); added > 1 {
		t.Errorf("50 CONNECTs added %d series of spkey_http_requests_total: %v", added, connects)
	}
	if len(connectRoutes) != len(pathRoutes) {
		t.Errorf("50 CONNECTs added routes to spkey_http_request_duration_seconds: %v", connectRoutes)
	}
}
