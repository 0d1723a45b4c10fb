package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignKnownVector pins the headers of a delivery to values computed
// (and checked with an independent HMAC-SHA256) before signing moved to the
// standard-webhooks library: the bytes on the wire must not change.
func TestSignKnownVector(t *testing.T) {
	const (
		current  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		previous = "whsec_c3BrZXktb2xkLXNlY3JldC1mb3ItdGhlLXZlY3Rvcg=="
		sigCur   = "v1,hcNLUvlF4LmHMExIAzd4lkqsUcN4Lqr0xxAVc5rya2E="
		sigPrev  = "v1,EaD9F6U1ogqczpDYq8YHL7mUceuueUvJvfuLxlZU/no="
	)
	body := []byte(`{"type":"lock.opened","id":"evt_1","data":{"lockId":"lk_1","n":42}}`)
	now := time.Unix(1764757000, 999_000_000)
	for _, c := range []struct {
		name    string
		secrets []string
		want    string // webhook-signature; "" means no such header
	}{
		{"one secret", []string{current, ""}, sigCur},
		{"rotation overlap: both sign, current first", []string{current, previous}, sigCur + " " + sigPrev},
		{"no secret", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if err := sign(h, "msg_2Xy8ZkVLR4", now, body, c.secrets...); err != nil {
				t.Fatal(err)
			}
			want := http.Header{"Webhook-Id": {"msg_2Xy8ZkVLR4"}, "Webhook-Timestamp": {"1764757000"}}
			if c.want != "" {
				want["Webhook-Signature"] = []string{c.want}
			}
			if len(h) != len(want) {
				t.Fatalf("headers %q, want %q", h, want)
			}
			for k, v := range want {
				if len(h[k]) != 1 || h[k][0] != v[0] {
					t.Errorf("%s: %q, want %q", k, h[k], v)
				}
			}
		})
	}
	for _, bad := range []string{"whsec_!!not base64!!"} {
		if err := sign(http.Header{}, "id", now, body, bad); err == nil || !strings.HasPrefix(err.Error(), "webhook secret: ") || strings.Contains(err.Error(), bad) {
			t.Errorf("secret %q: %v", bad, err)
		}
	}
}
