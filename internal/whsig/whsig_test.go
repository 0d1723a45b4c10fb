package whsig_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/whsig"
)

func TestKey(t *testing.T) {
	k, err := whsig.Key("whsec_AAECAw==")
	if err != nil || string(k) != "\x00\x01\x02\x03" {
		t.Fatalf("whsec_ key = %q, %v", k, err)
	}
	if k, err := whsig.Key("plain-secret"); err != nil || string(k) != "plain-secret" {
		t.Fatalf("raw key = %q, %v", k, err)
	}
	for _, bad := range []string{"whsec_", "whsec_!!"} {
		if _, err := whsig.Key(bad); err == nil {
			t.Errorf("Key(%q) accepted", bad)
		}
	}
}

// The signature of the Standard Webhooks specification's own example.
func TestSignSpecExample(t *testing.T) {
	k, _ := whsig.Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := whsig.Sign(k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("signature %s", got)
	}
}

func TestSetHeaders(t *testing.T) {
	h := http.Header{}
	whsig.SetHeaders(h, "id1", 10, []byte("{}"))
	if h.Get("webhook-id") != "id1" || h.Get("webhook-timestamp") != "10" || h.Get("webhook-signature") != "" {
		t.Fatalf("unsigned headers %v", h)
	}
	whsig.SetHeaders(h, "id1", 10, []byte("{}"), []byte("a"), []byte("b"))
	sigs := strings.Fields(h.Get("webhook-signature"))
	if len(sigs) != 2 || sigs[0] != whsig.Sign([]byte("a"), "id1", 10, []byte("{}")) || sigs[1] != whsig.Sign([]byte("b"), "id1", 10, []byte("{}")) {
		t.Fatalf("two keys: %q", h.Get("webhook-signature"))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "0": 0, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := whsig.RetryAfter(v, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestSnippet(t *testing.T) {
	long := strings.Repeat("x", 500)
	if got := whsig.Snippet(strings.NewReader(" bad\ngateway\x00 " + long)); len(got) > 200 || strings.ContainsAny(got, "\n\x00") || !strings.HasPrefix(got, "bad gateway") {
		t.Fatalf("snippet %q", got)
	}
}
