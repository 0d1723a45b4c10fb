package webhook_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// The partner webhook suite drives a real spkey server over HTTP on every
// backend: the admin API creates webhooks, the tenant's key causes lock
// events, and real receivers (httptest, plain HTTP and HTTPS) check what
// arrives. Every wait has a deadline.

// ids returns the envelope ids of reqs.
func ids(reqs []request) []string {
	out := make([]string, len(reqs))
	for i, q := range reqs {
		out[i] = q.Env.ID
	}
	return out
}

// checkOrder fails unless, per aggregate, the versions of reqs never go
// down (strict: always go up).
func checkOrder(t testing.TB, reqs []request, strict bool) {
	t.Helper()
	last := map[string]int64{}
	for _, q := range reqs {
		k := q.Env.Detail.AggregateType + "/" + q.Env.Detail.AggregateID
		v := q.Env.Detail.Version
		if prev, ok := last[k]; ok && (v < prev || strict && v == prev) {
			t.Errorf("%s: version %d arrived after version %d", k, v, prev)
		}
		last[k] = v
	}
}

// TestEnvelopesSignedAndValid: over HTTPS and plain HTTP, every request is
// signed under the secret the create call returned (as GET .../secret
// shows it, to the admin and to the partner), verifiable with the
// Standard Webhooks reference library, and every event is upstream's
// envelope with a stable id equal to the webhook-id header. The tenant's
// own events are never sent.
func TestEnvelopesSignedAndValid(t *testing.T) {
	sch := upstreamSchema(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tlsRcv, plainRcv := newReceiver(t, true), newReceiver(t, false)
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{Webhooks: webhook.Config{TLS: tlsRcv.TLS()}}))
			p := newPartner(t, srv, "acme")
			if !strings.HasPrefix(tlsRcv.URL(""), "https://") {
				t.Fatalf("TLS receiver at %s", tlsRcv.URL(""))
			}
			secureID, secureSecret := p.ActiveHook(map[string]any{"url": tlsRcv.URL("/spkey"), "events": []string{"*"}})
			plainID, plainSecret := p.ActiveHook(map[string]any{"url": plainRcv.URL("/spkey")})
			if secureSecret == plainSecret {
				t.Fatal("two webhooks got the same secret")
			}
			for _, h := range []struct{ id, secret string }{{secureID, secureSecret}, {plainID, plainSecret}} {
				for _, who := range []struct {
					path string
					hdr  map[string]string
				}{{"/tenants/acme/webhooks/" + h.id + "/secret", adminHdr()}, {"/webhooks/" + h.id + "/secret", keyHdr(p.key)}} {
					got := p.must(http.StatusOK, "GET", who.path, who.hdr, nil).Obj(t)
					want := map[string]any{"secret": h.secret, "previousSecret": nil, "previousSecretExpiresAt": nil}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("GET %s (-want +got):\n%s", who.path, diff)
					}
				}
			}

			start := time.Now()
			p.Lock(1)
			p.Lock(2)
			p.Toggle(1)
			p.Toggle(2)
			// Tenant events (a webhook change, a key rotation) between lock
			// events: they are fanned out in queue order, so once the last
			// lock event arrived they were looked at, and skipped.
			p.must(http.StatusOK, "PUT", "/tenants/acme/webhooks/"+plainID, adminHdr(), map[string]any{"events": []string{"*"}})
			p.key, _ = p.must(http.StatusCreated, "POST", "/api-keys/rotate", keyHdr(p.key), nil).Obj(t)["apiKey"].(string)
			p.Toggle(1)
			p.Toggle(2)
			want1, _ := p.Expected(1)
			want2, _ := p.Expected(2)
			want := append(want1, want2...)
			for _, r := range []*receiver{tlsRcv, plainRcv} {
				eventually(t, wait, "every lock event at "+r.URL(""), func() bool { return len(r.Delivered()) >= len(want) })
			}
			end := time.Now()

			for _, c := range []struct {
				rcv    *receiver
				secret string
				hook   string
			}{{tlsRcv, secureSecret, secureID}, {plainRcv, plainSecret, plainID}} {
				all := c.rcv.Requests()
				checkSigned(t, c.secret, all...)
				if v := c.rcv.Verifications(); len(v) != 1 {
					t.Errorf("%d verification POSTs, want 1", len(v))
				}
				got := c.rcv.Events()
				sch.check(t, got...)
				checkOrder(t, got, true)
				if diff := cmp.Diff(sorted(want), sorted(ids(got))); diff != "" {
					t.Errorf("envelope ids (-want +got):\n%s", diff)
				}
				for _, q := range got {
					checkEnvelope(t, q, "acme", start, end)
				}
				// The delivery log names the same ids.
				var logged []string
				for _, d := range p.LogDone(c.hook, len(want)) {
					logged = append(logged, d.EventID)
				}
				if diff := cmp.Diff(sorted(want), sorted(logged)); diff != "" {
					t.Errorf("delivery log event ids (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// checkEnvelope checks one event request against upstream's receiver
// contract (spkey-api.md 2.21) for partner org, sent between start and
// end.
func checkEnvelope(t testing.TB, q request, org string, start, end time.Time) {
	t.Helper()
	e := q.Env
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(q.Body, &raw); err != nil {
		t.Fatalf("body: %v", err)
	}
	if string(raw["resources"]) != "[]" {
		t.Errorf("resources = %s, want []", raw["resources"])
	}
	if e.ID == "" || e.ID != q.ID() || len(e.ID) != 36 {
		t.Errorf("envelope id %q, webhook-id header %q: want one UUID", e.ID, q.ID())
	}
	if want := eventIDOf(e); e.ID != want {
		t.Errorf("envelope id %q of %s/%s v%d: want the stable %q", e.ID, e.Detail.AggregateType, e.Detail.AggregateID, e.Detail.Version, want)
	}
	if e.Source != "spk.api" || e.Version != "0" || e.Region == "" || e.Account == "" || e.DetailType == "" {
		t.Errorf("envelope head: %s", q.Body)
	}
	if e.Detail.PartnerID != org || e.Detail.AggregateType != "lock" || e.Detail.AggregateID == "" || e.Detail.Version < 1 {
		t.Errorf("envelope detail: %s", q.Body)
	}
	if e.Detail.Data["type"] != e.DetailType {
		t.Errorf("detail.data.type %v, detail-type %q", e.Detail.Data["type"], e.DetailType)
	}
	if e.Detail.Data["lockId"] == nil {
		t.Errorf("detail.data has no lockId: %s", q.Body)
	}
	switch e.DetailType {
	case "TenantRegistered", "ApiKeyIssued", "ApiKeyRevoked", "WebhookCreated", "WebhookUpdated", "WebhookVerified", "WebhookVerificationFailed", "WebhookDisabled", "WebhookDeleted":
		t.Errorf("a tenant event was delivered: %s", q.Body)
	}
	tm, err := time.Parse(time.RFC3339, e.Time)
	if err != nil {
		t.Errorf("time %q: %v", e.Time, err)
	}
	ms := e.Detail.Timestamp
	if ms < start.Add(-time.Second).UnixMilli() || ms > end.Add(time.Second).UnixMilli() {
		t.Errorf("detail.timestamp %d is not epoch milliseconds between %s and %s", ms, start, end)
	}
	if d := ms - tm.UnixMilli(); d < 0 || d >= 1000 {
		t.Errorf("detail.timestamp %d and time %s are not the same instant", ms, e.Time)
	}
}

func eventIDOf(e envelope) string {
	id, _ := strconv.ParseInt(e.Detail.AggregateID, 10, 64)
	return eventID(id, e.Detail.Version)
}
