package netsafe_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/netsafe"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "0": 0, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := netsafe.RetryAfter(v, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestSnippet(t *testing.T) {
	long := strings.Repeat("x", 500)
	if got := netsafe.Snippet(strings.NewReader(" bad\ngateway\x00 " + long)); len(got) > 200 || strings.ContainsAny(got, "\n\x00") || !strings.HasPrefix(got, "bad gateway") {
		t.Fatalf("snippet %q", got)
	}
}
