package notify_test

import (
	"testing"

	"github.com/spkey-dev/spkey/internal/notify"
)

// TestHookSignKnownVector pins the hook's signatures to values computed
// (and checked with an independent HMAC-SHA256) before signing moved to the
// standard-webhooks library, for both kinds of secret the operator may
// give, and the refusal of a "whsec_" secret without a key.
func TestHookSignKnownVector(t *testing.T) {
	body := []byte(`{"type":"lock.opened","id":"evt_1","data":{"lockId":"lk_1","n":42}}`)
	for _, c := range []struct{ secret, want string }{
		{"raw secret bytes", "v1,Md+hKrDN9IvaRKGNqNwmyqY7YWUW8zgjHXSpqxLksiE="},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "v1,tSxHkTljS1KBVwDwogFT8xlW+BK0dMzGn1bXJojbhSg="},
		{"", ""},
	} {
		h := newHook(t, "http://127.0.0.1:9/ring", c.secret)
		if got := h.Sign("msg_ring1_user1", 1764757000, body); got != c.want {
			t.Errorf("secret %q: signature %q, want %q", c.secret, got, c.want)
		}
	}
	const refusal = `SPKEY_NOTIFY_HOOK_SECRET: after "whsec_" must come the key in standard base64`
	for _, bad := range []string{"whsec_", "whsec_!!not base64!!"} {
		_, err := notify.NewHook(notify.HookConfig{URL: "http://127.0.0.1:9/ring", Secret: bad, Safety: testSafety})
		if err == nil || err.Error() != refusal {
			t.Errorf("secret %q: %v, want %q", bad, err, refusal)
		}
	}
}
