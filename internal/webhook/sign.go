package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// sign sets the Standard Webhooks headers of a delivery: webhook-id,
// webhook-timestamp (now, in Unix seconds) and webhook-signature, with one
// signature per secret given (the current one and, while a rotation
// overlaps, the previous one), space-separated as the specification allows.
// Empty secrets are skipped; no secret, no webhook-signature header.
//
// The standard-webhooks library signs with one secret at a time, so the
// joining of the rotation's two signatures is ours. A partner's secret is
// always "whsec_" and the base64 of 24 to 64 bytes (app checks it before
// storing it); the library decodes it as the specification says.
func sign(h http.Header, id string, now time.Time, body []byte, secrets ...string) error {
	var sigs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if !strings.HasPrefix(s, "whsec_") {
			return errors.New(`webhook secret: not a "whsec_" secret`)
		}
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil || s == "whsec_" {
			return errors.New(`webhook secret: after "whsec_" must come the key in standard base64`)
		}
		sig, err := wh.Sign(id, now, body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	if len(sigs) > 0 {
		h.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(sigs, " "))
	}
	return nil
}
