package webhook

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spkey-dev/spkey/internal/whsig"
)

// sign sets the Standard Webhooks headers of a delivery: webhook-id,
// webhook-timestamp (now, in Unix seconds) and webhook-signature, with one
// signature per secret given (the current one and, while a rotation
// overlaps, the previous one), space-separated. Empty secrets are skipped.
func sign(h http.Header, id string, now time.Time, body []byte, secrets ...string) error {
	var keys [][]byte
	for _, s := range secrets {
		if s == "" {
			continue
		}
		k, err := whsig.Key(s)
		if err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		keys = append(keys, k)
	}
	whsig.SetHeaders(h, id, now.Unix(), body, keys...)
	return nil
}
