package webhook_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestSecretRotation: after PUT rotateSecret:true the webhook stays
// active and its requests carry two signatures, one under the new secret
// and one under the old, each verifiable with the reference library; GET
// .../secret shows the previous secret and when it stops signing. A second
// rotation (to a given secret) drops the first secret.
func TestSecretRotation(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{}))
			p := newPartner(t, srv, "acme")
			id, first := p.ActiveHook(map[string]any{"url": rcv.URL("/")})

			var put struct {
				Success bool   `json:"success"`
				Status  string `json:"status"`
				Secret  string `json:"secret"`
			}
			rotated := time.Now()
			p.must(http.StatusOK, "PUT", "/tenants/acme/webhooks/"+id, adminHdr(), map[string]any{"rotateSecret": true}).Into(t, &put)
			second := put.Secret
			if !put.Success || put.Status != "active" || !strings.HasPrefix(second, "whsec_") || second == first {
				t.Fatalf("rotation answered %+v", put)
			}
			for _, r := range []reply{
				p.must(http.StatusOK, "GET", "/tenants/acme/webhooks/"+id+"/secret", adminHdr(), nil),
				p.must(http.StatusOK, "GET", "/webhooks/"+id+"/secret", keyHdr(p.key), nil),
			} {
				var s struct {
					Secret         string  `json:"secret"`
					Previous       *string `json:"previousSecret"`
					PreviousExpiry *string `json:"previousSecretExpiresAt"`
				}
				r.Into(t, &s)
				if s.Secret != second || s.Previous == nil || *s.Previous != first || s.PreviousExpiry == nil {
					t.Fatalf("secret after rotation: %s", r.Raw)
				}
				until, err := time.Parse(domain.TimeLayout, *s.PreviousExpiry)
				if err != nil {
					t.Fatal(err)
				}
				if lo, hi := rotated.Add(app.SecretOverlap-time.Minute), time.Now().Add(app.SecretOverlap+time.Minute); until.Before(lo) || until.After(hi) {
					t.Errorf("previous secret expires %s, want about %s after the rotation", until, app.SecretOverlap)
				}
			}
			if v := p.Hook(id); v.Status != "active" {
				t.Errorf("rotation changed the status: %+v", v)
			}

			p.Lock(81)
			eventually(t, wait, "the event", func() bool { return len(rcv.Delivered()) == 1 })
			q := rcv.Delivered()[0]
			sigs := strings.Split(q.Header.Get("webhook-signature"), " ")
			if len(sigs) != 2 || !strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") || sigs[0] == sigs[1] {
				t.Fatalf("webhook-signature %q: want two v1 signatures", q.Header.Get("webhook-signature"))
			}
			checkSigned(t, first, q)
			checkSigned(t, second, q)
			other, _ := standardwebhooks.NewWebhook(app.NewWebhookSecret())
			if err := other.Verify(q.Body, q.Header); err == nil {
				t.Error("a request verified under an unrelated secret")
			}

			// Rotating again to a given secret: the first one stops signing.
			third := app.NewWebhookSecret()
			p.must(http.StatusOK, "PUT", "/tenants/acme/webhooks/"+id, adminHdr(), map[string]any{"secret": third})
			s := p.must(http.StatusOK, "GET", "/tenants/acme/webhooks/"+id+"/secret", adminHdr(), nil).Obj(t)
			if s["secret"] != third || s["previousSecret"] != second {
				t.Fatalf("secret after the second rotation: %v", s)
			}
			p.Toggle(81)
			eventually(t, wait, "the next event", func() bool { return len(rcv.Delivered()) == 2 })
			q = rcv.Delivered()[1]
			checkSigned(t, third, q)
			checkSigned(t, second, q)
			old, _ := standardwebhooks.NewWebhook(first)
			if err := old.Verify(q.Body, q.Header); err == nil {
				t.Error("the first secret still signs after the second rotation")
			}
		})
	}
}
