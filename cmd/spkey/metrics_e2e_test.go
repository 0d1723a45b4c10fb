package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var metricsLineRE = regexp.MustCompile(`metrics: +(http://[0-9.:]+/metrics)`)

// TestServeMetricsListener: `spkey serve` serves /metrics on
// --metrics-addr only, behind --metrics-token when one is set; its API
// address answers 404 for /metrics.
func TestServeMetricsListener(t *testing.T) {
	const token = "metrics-scrape-token-0123"
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--metrics-token", token},
			[]string{"SPKEY_LOG_LEVEL=warn"}, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	found := make(chan [2]string, 1)
	go func() {
		var base string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				base = m[1]
			}
			if m := metricsLineRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- [2]string{base, m[1]}
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	var base, metrics string
	select {
	case f := <-found:
		base, metrics = f[0], f[1]
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not print its addresses")
	}
	get := func(url, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(base+"/metrics", ""); code != http.StatusNotFound || !strings.Contains(body, `"code":404`) {
		t.Errorf("API address GET /metrics: %d %s", code, body)
	}
	// The token is no key to the API address (its bearer tokens are JWTs).
	if code, body := get(base+"/metrics", token); code == http.StatusOK || strings.Contains(body, "spkey_") {
		t.Errorf("API address GET /metrics with the token: %d %s", code, body)
	}
	if strings.TrimSuffix(metrics, "/metrics") == base {
		t.Fatalf("metrics on the API address %s", base)
	}
	for _, bad := range []string{"", "not-the-token"} {
		if code, body := get(metrics, bad); code != http.StatusUnauthorized {
			t.Errorf("metrics with token %q: %d %s", bad, code, body)
		}
	}
	code, body := get(metrics, token)
	if code != http.StatusOK || !strings.Contains(body, "spkey_live_streams 0") || !strings.Contains(body, "spkey_event_appends_total") {
		t.Errorf("metrics with the token: %d\n%s", code, body)
	}
}
