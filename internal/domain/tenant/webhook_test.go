package tenant_test

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
)

func registered(t *testing.T) tenant.State {
	t.Helper()
	evs, err := tenant.DecideRegister(tenant.State{}, tenant.Register{OrgID: orgID, OrgName: "Acme", Now: at(0)})
	if err != nil {
		t.Fatal(err)
	}
	return applyAll(tenant.State{}, evs)
}

func applyAll(s tenant.State, evs []domain.Event) tenant.State {
	for _, e := range evs {
		s = tenant.Apply(s, e)
	}
	return s
}

func TestNormalizeEvents(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		ok   bool
	}{
		{nil, []string{"*"}, true},
		{[]string{"*"}, []string{"*"}, true},
		{[]string{"LockCreated", "KeyAdded", "LockCreated"}, []string{"LockCreated", "KeyAdded"}, true},
		{[]string{"Shadow Update"}, []string{"Shadow Update"}, true},
		{[]string{"*", "LockCreated"}, nil, false},
		{[]string{"lock.created"}, nil, false},
		{[]string{""}, nil, false},
		{[]string{"LockCreated; DROP"}, nil, false},
	} {
		got, err := tenant.NormalizeEvents(tc.in)
		if (err == nil) != tc.ok || (tc.ok && !slices.Equal(got, tc.want)) {
			t.Errorf("NormalizeEvents(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("NormalizeEvents(%q): code %s", tc.in, domain.ErrorCode(err))
		}
	}
}

func TestValidAuth(t *testing.T) {
	for _, tc := range []struct {
		typ, header string
		ok          bool
	}{
		{tenant.AuthNone, "", true},
		{tenant.AuthBearerToken, "", true},
		{tenant.AuthAPIKeyHeader, "X-Acme-Token", true},
		{tenant.AuthAPIKeyHeader, "", false},
		{tenant.AuthAPIKeyHeader, "authorization", false},
		{tenant.AuthAPIKeyHeader, "webhook-signature", false},
		{tenant.AuthAPIKeyHeader, "X Bad", false},
		{tenant.AuthNone, "X-Token", false},
		{"basic", "", false},
	} {
		if err := tenant.ValidAuth(tc.typ, tc.header); (err == nil) != tc.ok {
			t.Errorf("ValidAuth(%q, %q) = %v", tc.typ, tc.header, err)
		}
	}
}

// TestWebhookLifecycle walks one webhook through every state.
func TestWebhookLifecycle(t *testing.T) {
	if _, err := tenant.DecideCreateWebhook(tenant.State{}, tenant.CreateWebhook{WebhookID: "w1", URL: "https://a.example", Now: at(1)}); domain.ErrorCode(err) != domain.NotFound {
		t.Fatalf("create for an unregistered tenant: %v", err)
	}
	s := registered(t)
	evs, err := tenant.DecideCreateWebhook(s, tenant.CreateWebhook{WebhookID: "w1", URL: "https://a.example", Events: []string{"*"}, AuthType: tenant.AuthNone, Now: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	s = applyAll(s, evs)
	w, _ := s.Webhook("w1")
	if w.Status != tenant.StatusPending || w.URLVersion != 1 || !w.Matches("LockCreated") {
		t.Fatalf("created: %+v", w)
	}
	// A failed verification keeps it pending with the error.
	s = applyAll(s, tenant.DecideVerification(s, tenant.Verification{WebhookID: "w1", URLVersion: 1, StatusCode: 500, Error: "HTTP 500", Now: at(2)}))
	if w, _ = s.Webhook("w1"); w.Status != tenant.StatusPending || w.LastError != "HTTP 500" || w.LastStatusCode != 500 {
		t.Fatalf("after failed verification: %+v", w)
	}
	// A 2xx activates it and clears the error; a repeat is no news.
	ok := tenant.Verification{WebhookID: "w1", URLVersion: 1, StatusCode: 204, Now: at(3)}
	s = applyAll(s, tenant.DecideVerification(s, ok))
	if w, _ = s.Webhook("w1"); w.Status != tenant.StatusActive || w.VerifiedAt != at(3) || w.LastError != "" {
		t.Fatalf("after verification: %+v", w)
	}
	if evs := tenant.DecideVerification(s, ok); len(evs) != 0 {
		t.Fatalf("repeat verification recorded %v", evs)
	}
	// A new URL sends it back to pending; a late answer for the old URL
	// does not count.
	evs, err = tenant.DecideUpdateWebhook(s, tenant.UpdateWebhook{WebhookID: "w1", URL: "https://b.example", Now: at(4)})
	if err != nil {
		t.Fatal(err)
	}
	s = applyAll(s, evs)
	if w, _ = s.Webhook("w1"); w.Status != tenant.StatusPending || w.URLVersion != 2 || w.VerifiedAt != "" {
		t.Fatalf("after URL change: %+v", w)
	}
	if evs := tenant.DecideVerification(s, ok); len(evs) != 0 {
		t.Fatalf("verification of the old URL recorded %v", evs)
	}
	// Filter change keeps the status.
	evs, _ = tenant.DecideUpdateWebhook(s, tenant.UpdateWebhook{WebhookID: "w1", Events: []string{"LockCreated"}, Now: at(5)})
	s = applyAll(s, evs)
	if w, _ = s.Webhook("w1"); w.Matches("KeyAdded") || !w.Matches("LockCreated") || w.Status != tenant.StatusPending {
		t.Fatalf("after filter change: %+v", w)
	}
	if _, err := tenant.DecideUpdateWebhook(s, tenant.UpdateWebhook{WebhookID: "w1", Now: at(6)}); domain.ErrorCode(err) != domain.Invalid {
		t.Fatalf("empty update: %v", err)
	}
	// 410 disables; verification answers are ignored then; a new URL
	// revives it.
	s = applyAll(s, tenant.DecideDisable(s, "w1", 410, "gone", at(7)))
	if w, _ = s.Webhook("w1"); w.Status != tenant.StatusDisabled || w.DisabledAt != at(7) {
		t.Fatalf("after 410: %+v", w)
	}
	if evs := tenant.DecideDisable(s, "w1", 410, "gone", at(8)); len(evs) != 0 {
		t.Fatalf("disabled twice: %v", evs)
	}
	if evs := tenant.DecideVerification(s, tenant.Verification{WebhookID: "w1", URLVersion: 2, StatusCode: 200, Now: at(8)}); len(evs) != 0 {
		t.Fatalf("verification of a disabled webhook: %v", evs)
	}
	evs, _ = tenant.DecideUpdateWebhook(s, tenant.UpdateWebhook{WebhookID: "w1", URL: "https://c.example", Now: at(9)})
	s = applyAll(s, evs)
	if w, _ = s.Webhook("w1"); w.Status != tenant.StatusPending || w.DisabledAt != "" {
		t.Fatalf("after reviving: %+v", w)
	}
	// Delete, then it is gone for every decision.
	evs, _ = tenant.DecideDeleteWebhook(s, "w1", at(10))
	s = applyAll(s, evs)
	if _, ok := s.Webhook("w1"); ok || len(s.Webhooks) != 0 {
		t.Fatalf("after delete: %+v", s.Webhooks)
	}
	if _, err := tenant.DecideDeleteWebhook(s, "w1", at(11)); domain.ErrorCode(err) != domain.NotFound {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestWebhookLimit(t *testing.T) {
	s := registered(t)
	for i := range tenant.MaxWebhooks {
		evs, err := tenant.DecideCreateWebhook(s, tenant.CreateWebhook{WebhookID: fmt.Sprint("w", i), URL: "https://a.example", Now: at(i)})
		if err != nil {
			t.Fatal(err)
		}
		s = applyAll(s, evs)
	}
	if _, err := tenant.DecideCreateWebhook(s, tenant.CreateWebhook{WebhookID: "one-more", URL: "https://a.example", Now: at(99)}); domain.ErrorCode(err) != domain.Conflict {
		t.Fatalf("webhook %d: %v", tenant.MaxWebhooks+1, err)
	}
}

// TestWebhookStatusProperty: whatever happens, a webhook is active only
// after a 2xx verification of its current URL, and deleting it forgets it.
func TestWebhookStatusProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := tenant.State{OrgID: orgID}
		type m struct {
			urlVersion int
			verified   bool // a 2xx for the current URL since the last URL change
			disabled   bool
		}
		model := map[string]*m{}
		ids := []string{"a", "b", "c"}
		for step := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			id := rapid.SampledFrom(ids).Draw(rt, "id")
			now := at(step)
			var evs []domain.Event
			var err error
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0:
				evs, err = tenant.DecideCreateWebhook(s, tenant.CreateWebhook{WebhookID: id, URL: "https://x.example", Now: now})
				if _, exists := model[id]; !exists && err == nil {
					model[id] = &m{urlVersion: 1}
				}
			case 1:
				evs, err = tenant.DecideUpdateWebhook(s, tenant.UpdateWebhook{WebhookID: id, URL: "https://y.example", Now: now})
				if mm := model[id]; mm != nil && err == nil {
					mm.urlVersion, mm.verified, mm.disabled = mm.urlVersion+1, false, false
				}
			case 2:
				v := rapid.IntRange(1, 4).Draw(rt, "version")
				evs = tenant.DecideVerification(s, tenant.Verification{WebhookID: id, URLVersion: v, StatusCode: 200, Now: now})
				if mm := model[id]; mm != nil && v == mm.urlVersion && !mm.disabled {
					mm.verified = true
				}
			case 3:
				evs = tenant.DecideVerification(s, tenant.Verification{WebhookID: id, URLVersion: rapid.IntRange(1, 4).Draw(rt, "version"), StatusCode: 500, Error: "HTTP 500", Now: now})
			case 4:
				evs = tenant.DecideDisable(s, id, 410, "gone", now)
				if mm := model[id]; mm != nil {
					mm.disabled = true
				}
			case 5:
				evs, err = tenant.DecideDeleteWebhook(s, id, now)
				delete(model, id)
			}
			_ = err
			s = applyAll(s, evs)
			for _, id := range ids {
				w, ok := s.Webhook(id)
				mm := model[id]
				if ok != (mm != nil) {
					rt.Fatalf("step %d: webhook %s exists=%v, model %v", step, id, ok, mm)
				}
				if !ok {
					continue
				}
				want := tenant.StatusPending
				switch {
				case mm.disabled:
					want = tenant.StatusDisabled
				case mm.verified:
					want = tenant.StatusActive
				}
				if w.Status != want || w.URLVersion != mm.urlVersion {
					rt.Fatalf("step %d: webhook %s status %s v%d, model %+v", step, id, w.Status, w.URLVersion, *mm)
				}
			}
		}
	})
}
