package tenant_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/domaintest"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const orgID = "acme"

// at renders tick as a timestamp; ticks are seconds after base, so the
// strings sort as the times do.
var (
	expect = domaintest.Expect
	diff   = domaintest.Diff
)

func at(tick int) string {
	return base.Add(time.Duration(tick) * time.Second).Format(domain.TimeLayout)
}

type model struct {
	registered bool
	name       string
	email      string // raw owner e-mail
	keys       []tenant.Key
}

// active lists the model's keys that can authenticate at now.
func (m *model) active(now string) []tenant.Key {
	var out []tenant.Key
	for _, k := range m.keys {
		if k.RevokedAt == "" && (k.ExpiresAt == "" || k.ExpiresAt > now) {
			out = append(out, k)
		}
	}
	return out
}

type machine struct {
	s      tenant.State
	m      model
	events []domain.Event
	tick   int
	nextID int
}

func (mc *machine) now() string { return at(mc.tick) }

func (mc *machine) apply(t *rapid.T, evs []domain.Event) {
	for _, e := range evs {
		domaintest.RoundTrip(t, e, tenant.Events)
		mc.s = tenant.Apply(mc.s, e)
		mc.events = append(mc.events, e)
	}
}

func (mc *machine) register(t *rapid.T) {
	name := rapid.SampledFrom([]string{"Acme", "Acme Ltd"}).Draw(t, "name")
	email := rapid.SampledFrom([]string{"", "owner@acme.example"}).Draw(t, "ownerEmail")
	now := mc.now()
	evs, err := tenant.DecideRegister(mc.s, tenant.Register{OrgID: orgID, OrgName: name, OwnerEmail: email, Now: now})
	if mc.m.registered {
		expect(t, "register twice", evs, err, nil, domain.Conflict)
		return
	}
	masked := ""
	if email != "" {
		masked = domain.MaskEmail(email)
	}
	expect(t, "register", evs, err, []domain.Event{tenant.TenantRegistered{OrgID: orgID, OrgName: name, OwnerEmail: masked, RegisteredAt: now}}, "")
	mc.m = model{registered: true, name: name, email: email, keys: []tenant.Key{}}
	mc.apply(t, evs)
}

// issueCmd draws a key; with futureOnly its expiry (if any) is after now.
func (mc *machine) issueCmd(t *rapid.T, futureOnly bool) tenant.Issue {
	mc.nextID++
	id := fmt.Sprintf("key-%03d", mc.nextID)
	expires := ""
	if rapid.Bool().Draw(t, "expires") {
		lo := -3
		if futureOnly {
			lo = 1
		}
		// Offsets around now, including now itself: a key expiring at
		// now is already dead.
		expires = at(mc.tick + rapid.IntRange(lo, 6).Draw(t, "expiryOffset"))
	}
	return tenant.Issue{KeyID: id, Hash: "hash-" + id, Masked: "sk_***" + id[len(id)-3:], CreatedBy: "admin@spkey.example",
		ExpiresAt: expires, Now: mc.now(), Super: rapid.Bool().Draw(t, "super")}
}

func keyOf(c tenant.Issue) tenant.Key {
	return tenant.Key{KeyID: c.KeyID, Hash: c.Hash, Masked: c.Masked, Super: c.Super, CreatedAt: c.Now, CreatedBy: c.CreatedBy, ExpiresAt: c.ExpiresAt}
}

func issued(c tenant.Issue) tenant.APIKeyIssued {
	return tenant.APIKeyIssued{OrgID: orgID, KeyID: c.KeyID, Hash: c.Hash, Masked: c.Masked, Super: c.Super,
		CreatedAt: c.Now, CreatedBy: c.CreatedBy, ExpiresAt: c.ExpiresAt}
}

func (mc *machine) issue(t *rapid.T) {
	c := mc.issueCmd(t, false)
	evs, err := tenant.DecideIssueKey(mc.s, c)
	switch {
	case !mc.m.registered:
		expect(t, "issue", evs, err, nil, domain.NotFound)
	case len(mc.m.active(c.Now)) > 0:
		expect(t, "issue with an active key", evs, err, nil, domain.Conflict)
	default:
		expect(t, "issue", evs, err, []domain.Event{issued(c)}, "")
		mc.m.keys = append(mc.m.keys, keyOf(c))
	}
	mc.apply(t, evs)
}

func (mc *machine) rotate(t *rapid.T) {
	c := mc.issueCmd(t, true)
	evs, err := tenant.DecideRotateKey(mc.s, c)
	if !mc.m.registered {
		expect(t, "rotate", evs, err, nil, domain.NotFound)
		return
	}
	var want []domain.Event
	for i, k := range mc.m.keys {
		if k.RevokedAt == "" {
			want = append(want, tenant.APIKeyRevoked{OrgID: orgID, KeyID: k.KeyID, Reason: "rotated", RevokedAt: c.Now})
			mc.m.keys[i].RevokedAt = c.Now
		}
	}
	want = append(want, issued(c))
	mc.m.keys = append(mc.m.keys, keyOf(c))
	expect(t, "rotate", evs, err, want, "")
	mc.apply(t, evs)

	// Rotation leaves exactly one working key: the new one.
	var active []string
	for _, k := range mc.s.Keys {
		if k.Active(c.Now) {
			active = append(active, k.KeyID)
		}
	}
	if diff := diff([]string{c.KeyID}, active); diff != "" {
		t.Fatalf("active keys after rotation (-want +got):\n%s", diff)
	}
}

func (mc *machine) wait(t *rapid.T) {
	mc.tick += rapid.IntRange(0, 4).Draw(t, "seconds")
}

func fold(evs []domain.Event) tenant.State {
	var s tenant.State
	for _, e := range evs {
		s = tenant.Apply(s, e)
	}
	return s
}

func (mc *machine) check(t *rapid.T) {
	now := mc.now()
	want := tenant.State{}
	if mc.m.registered {
		masked := ""
		if mc.m.email != "" {
			masked = domain.MaskEmail(mc.m.email)
		}
		want = tenant.State{OrgID: orgID, OrgName: mc.m.name, MaskedOwnerEmail: masked, RegisteredAt: mc.s.RegisteredAt, Keys: mc.m.keys}
	}
	if diff := diff(want, mc.s); diff != "" {
		t.Fatalf("state differs from the model (-want +got):\n%s", diff)
	}
	// At most one key works at any time, and ActiveKey finds it, honouring
	// expiry and revocation.
	active := mc.m.active(now)
	if len(active) > 1 {
		t.Fatalf("%d keys active at %s: %+v", len(active), now, active)
	}
	k, ok := mc.s.ActiveKey(now)
	switch {
	case len(active) == 0 && ok:
		t.Fatalf("ActiveKey(%s) = %+v, want none", now, k)
	case len(active) == 1 && !ok:
		t.Fatalf("ActiveKey(%s) found none, want %s", now, active[0].KeyID)
	case len(active) == 1 && k.KeyID != active[0].KeyID:
		t.Fatalf("ActiveKey(%s) = %s, want %s", now, k.KeyID, active[0].KeyID)
	}
	for _, k := range mc.s.Keys {
		want := k.RevokedAt == "" && (k.ExpiresAt == "" || k.ExpiresAt > now)
		if k.Active(now) != want {
			t.Fatalf("key %+v Active(%s) = %v, want %v", k, now, k.Active(now), want)
		}
	}
	if diff := diff(mc.s, fold(mc.events)); diff != "" {
		t.Fatalf("replay differs from the live state (-live +replay):\n%s", diff)
	}
	b, err := json.Marshal(mc.s)
	if err != nil {
		t.Fatal(err)
	}
	var back tenant.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := diff(mc.s, back); diff != "" {
		t.Fatalf("state does not survive its snapshot JSON %s (-want +got):\n%s", b, diff)
	}
}

func TestTenantCommandSequences(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mc := &machine{}
		t.Repeat(map[string]func(*rapid.T){
			"register": mc.register,
			"issue":    mc.issue,
			"rotate":   mc.rotate,
			"wait":     mc.wait,
			"":         mc.check,
		})
	})
}

func TestActiveKeyExpiry(t *testing.T) {
	key := func(id, expires, revoked string) tenant.Key {
		return tenant.Key{KeyID: id, ExpiresAt: expires, RevokedAt: revoked}
	}
	now := at(10)
	tests := []struct {
		name   string
		keys   []tenant.Key
		wantID string // "" = none
	}{
		{"no keys", nil, ""},
		{"no expiry", []tenant.Key{key("a", "", "")}, "a"},
		{"expires later", []tenant.Key{key("a", at(11), "")}, "a"},
		{"expires now", []tenant.Key{key("a", now, "")}, ""},
		{"expired", []tenant.Key{key("a", at(9), "")}, ""},
		{"revoked", []tenant.Key{key("a", "", at(5))}, ""},
		{"revoked before expiry", []tenant.Key{key("a", at(20), at(5))}, ""},
		{"expired then a live one", []tenant.Key{key("a", at(3), ""), key("b", "", "")}, "b"},
		{"revoked then a live one", []tenant.Key{key("a", "", at(3)), key("b", at(30), "")}, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := tenant.State{OrgID: orgID, Keys: tc.keys}.ActiveKey(now)
			if got := map[bool]string{true: k.KeyID, false: ""}[ok]; got != tc.wantID {
				t.Errorf("ActiveKey(%s) = %q (found %v), want %q", now, k.KeyID, ok, tc.wantID)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, typ, data string
	}{
		{"unknown type", "TenantDissolved", `{}`},
		{"type of another aggregate", lock.TypeOrganizationSet, `{"lockId":1,"uuid":"u","timestamp":"t","orgId":"acme"}`},
		{"malformed JSON", tenant.TypeTenantRegistered, `{"orgId":`},
		{"wrong field type", tenant.TypeAPIKeyIssued, `{"orgId":"acme","keyId":"k","super":"yes"}`},
		{"not an object", tenant.TypeAPIKeyRevoked, `42`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := tenant.Events.Decode(tc.typ, []byte(tc.data)); err == nil {
				t.Errorf("Decode(%q, %s) = %#v, want an error", tc.typ, tc.data, e)
			}
		})
	}
}
