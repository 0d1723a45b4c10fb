package webhook_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// TestVerification: a new webhook gets a signed verification POST; a 2xx
// makes it active. A 500 leaves it pending with the status code in its
// last error, and the events of that time are held, then delivered in
// order once a re-sent verification succeeds. The partner's own URL change
// (PATCH with its API key) sends it back to pending until the new URL
// answers its verification POST.
func TestVerification(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			good, bad, moved := newReceiver(t, false), newReceiver(t, false), newReceiver(t, false)
			bad.VerifyAs(http.StatusInternalServerError)
			// Held deliveries would look again only after an hour: what
			// delivers them is the verification releasing them.
			srv := testenv.NewServer(t, b, testenv.Options{Webhooks: webhook.Config{Hold: time.Hour}})
			p := newPartner(t, srv, "acme")

			// 2xx: active, verifiedAt set.
			goodID, goodSecret := p.CreateHook(map[string]any{"url": good.URL("/in"), "events": []string{"*"}})
			v := p.WaitStatus(goodID, "active")
			if v.VerifiedAt == nil || v.LastError != nil || v.LastStatusCode != nil {
				t.Errorf("verified webhook: %+v", v)
			}
			vs := good.Verifications()
			if len(vs) != 1 {
				t.Fatalf("%d verification POSTs, want 1", len(vs))
			}
			checkSigned(t, goodSecret, vs...)
			var body map[string]any
			if err := json.Unmarshal(vs[0].Body, &body); err != nil {
				t.Fatal(err)
			}
			if body["type"] != "WebhookVerification" || body["id"] != vs[0].ID() || body["webhookId"] != goodID || body["partnerId"] != "acme" || body["url"] != good.URL("/in") {
				t.Errorf("verification body %s (webhook-id %q)", vs[0].Body, vs[0].ID())
			}

			// 500: pending, the code in lastError; events held meanwhile.
			badID, badSecret := p.CreateHook(map[string]any{"url": bad.URL("/in")})
			eventually(t, wait, "the failed verification to show", func() bool { return p.Hook(badID).LastStatusCode != nil })
			v = p.Hook(badID)
			if v.Status != "pending" || *v.LastStatusCode != 500 || v.LastError == nil || !strings.Contains(*v.LastError, "500") || v.VerifiedAt != nil {
				t.Errorf("webhook whose verification got 500: %+v", v)
			}
			p.Lock(1)
			p.Toggle(1)
			p.Toggle(1)
			want, _ := p.Expected(1)
			held := p.LogDone(goodID, len(want)) // the fan-out is over for both
			if len(held) != len(want) {
				t.Fatalf("active webhook log: %+v", held)
			}
			log := p.AllLog(badID)
			if len(log) != len(want) {
				t.Fatalf("pending webhook has %d deliveries, want %d", len(log), len(want))
			}
			for _, d := range log {
				if d.Status != "pending" || len(d.Attempts) != 0 {
					t.Errorf("held delivery: %+v", d)
				}
			}
			if n := len(bad.Events()); n != 0 {
				t.Fatalf("pending webhook got %d events", n)
			}
			bad.VerifyAs(http.StatusOK)
			if got := p.must(http.StatusAccepted, "POST", "/tenants/acme/webhooks/"+badID+"/verify", adminHdr(), nil).Obj(t); got["id"] != badID {
				t.Errorf("verify answered %v", got)
			}
			p.WaitStatus(badID, "active")
			eventually(t, wait, "the held events", func() bool { return len(bad.Delivered()) == len(want) })
			checkSigned(t, badSecret, bad.Requests()...)
			if diff := cmp.Diff(want, ids(bad.Events())); diff != "" {
				t.Errorf("held events, in order (-want +got):\n%s", diff)
			}
			if v := p.Hook(badID); v.LastError != nil || v.LastStatusCode != nil || v.VerifiedAt == nil {
				t.Errorf("verified webhook still shows its failure: %+v", v)
			}

			// No answer at all: a few tries, then the failure shows, without
			// a status code.
			closed := newReceiver(t, false)
			closed.srv.Close()
			deadID, _ := p.CreateHook(map[string]any{"url": closed.URL("/in")})
			eventually(t, wait, "the unreachable URL's failure", func() bool { return p.Hook(deadID).LastError != nil })
			if v := p.Hook(deadID); v.Status != "pending" || v.LastStatusCode != nil || !strings.Contains(*v.LastError, "refused") {
				t.Errorf("webhook at an unreachable URL: %+v", v)
			}

			// The partner moves its URL: pending until the new URL answers.
			var patched struct {
				Success bool   `json:"success"`
				ID      string `json:"webhookId"`
				Status  string `json:"status"`
				Secret  string `json:"secret"`
			}
			moved.VerifyAs(http.StatusServiceUnavailable)
			p.must(http.StatusOK, "PATCH", "/webhooks/"+goodID, keyHdr(p.key), map[string]any{"url": moved.URL("/new")}).Into(t, &patched)
			if !patched.Success || patched.ID != goodID || patched.Status != "pending" || patched.Secret != "" {
				t.Errorf("PATCH answered %+v", patched)
			}
			eventually(t, wait, "the new URL's failed verification", func() bool { return p.Hook(goodID).LastStatusCode != nil })
			if v := p.Hook(goodID); v.Status != "pending" || v.URL != moved.URL("/new") || *v.LastStatusCode != 503 || v.VerifiedAt != nil {
				t.Errorf("moved webhook: %+v", v)
			}
			p.Toggle(1)
			moved.VerifyAs(0)
			var mine hookView
			p.must(http.StatusAccepted, "POST", "/webhooks/"+goodID+"/verify", keyHdr(p.key), nil).Into(t, &mine)
			p.WaitStatus(goodID, "active")
			p.must(http.StatusOK, "GET", "/webhooks/"+goodID, keyHdr(p.key), nil).Into(t, &mine)
			if mine.Status != "active" || mine.URL != moved.URL("/new") || mine.VerifiedAt == nil {
				t.Errorf("partner's view: %+v", mine)
			}
			all, _ := p.Expected(1)
			eventually(t, wait, "the event at the new URL", func() bool { return len(moved.Delivered()) == 1 })
			if got := moved.Delivered()[0].Env.ID; got != all[len(all)-1] {
				t.Errorf("new URL got %s, want the last event %s", got, all[len(all)-1])
			}
			for _, q := range moved.Verifications() {
				var body map[string]any
				_ = json.Unmarshal(q.Body, &body)
				if body["url"] != moved.URL("/new") || !strings.HasSuffix(q.ID(), "_"+strconv.Itoa(2)) {
					t.Errorf("verification of the new URL: %s (webhook-id %s)", q.Body, q.ID())
				}
			}
			checkSigned(t, goodSecret, moved.Requests()...)
			if n := len(good.Events()); n != len(want) {
				t.Errorf("old URL got %d events, want the %d before the move", n, len(want))
			}
		})
	}
}
