package httpapi_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

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
