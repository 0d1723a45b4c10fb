package user_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/domaintest"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/user"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const userID = "11111111-1111-4111-8111-111111111111"

// Raw, normalised identifiers, as the app hands them to the domain.
var (
	emails = []string{"ann@example.com", "bob@example.org", "c@x.io"}
	phones = []string{"+48123456789", "+14155550100", "+442079460958"}
)

// model is the user as the PII vault would hold it: raw values.
type model struct {
	exists       bool
	email, phone string
}

type machine struct {
	s      user.State
	m      model
	events []domain.Event
	clock  int
}

var (
	expect = domaintest.Expect
	diff   = domaintest.Diff
)

func (mc *machine) now() string {
	mc.clock++
	return base.Add(time.Duration(mc.clock) * time.Second).Format(domain.TimeLayout)
}

func (mc *machine) apply(t *rapid.T, evs []domain.Event) {
	for _, e := range evs {
		b, _ := domaintest.RoundTrip(t, e, user.Events)
		// No raw identifier ever reaches an event.
		for _, raw := range append(append([]string{}, emails...), phones...) {
			if strings.Contains(string(b), raw) {
				t.Fatalf("event %s carries the raw identifier %q", b, raw)
			}
		}
		mc.s = user.Apply(mc.s, e)
		mc.events = append(mc.events, e)
	}
}

func (mc *machine) create(t *rapid.T) {
	email := rapid.SampledFrom(append([]string{""}, emails...)).Draw(t, "email")
	phone := rapid.SampledFrom(append([]string{""}, phones...)).Draw(t, "phone")
	now := mc.now()
	evs, err := user.DecideCreate(mc.s, user.Create{UserID: userID, Email: email, Phone: phone, Now: now})
	var want []domain.Event
	if !mc.m.exists {
		want = []domain.Event{user.UserCreated{UserID: userID, Status: user.StatusActive}}
		if email != "" {
			want = append(want, user.UserEmailUpdated{UserID: userID, Action: "set", MaskedEmail: domain.MaskEmail(email), Timestamp: now})
		}
		if phone != "" {
			want = append(want, user.UserPhoneNumberUpdated{UserID: userID, Action: "set", MaskedPhoneNumber: domain.MaskPhone(phone), Timestamp: now})
		}
		mc.m = model{exists: true, email: email, phone: phone}
	}
	// Creating an existing user is idempotent: no events, no error.
	expect(t, "create", evs, err, want, "")
	mc.apply(t, evs)
}

func (mc *machine) updateEmail(t *rapid.T) {
	email := rapid.SampledFrom(emails).Draw(t, "email")
	now := mc.now()
	evs, err := user.DecideUpdateEmail(mc.s, email, now)
	switch {
	case !mc.m.exists:
		expect(t, "update email", evs, err, nil, domain.NotFound)
	case mc.m.email != "":
		expect(t, "update email", evs, err, nil, domain.Conflict)
	default:
		expect(t, "update email", evs, err, []domain.Event{user.UserEmailUpdated{UserID: userID, Action: "set", MaskedEmail: domain.MaskEmail(email), Timestamp: now}}, "")
		mc.m.email = email
	}
	mc.apply(t, evs)
}

func (mc *machine) updatePhone(t *rapid.T) {
	phone := rapid.SampledFrom(append([]string{""}, phones...)).Draw(t, "phone")
	now := mc.now()
	evs, err := user.DecideUpdatePhone(mc.s, mc.m.phone, phone, now)
	switch {
	case !mc.m.exists:
		expect(t, "update phone", evs, err, nil, domain.NotFound)
	case mc.m.phone == phone:
		expect(t, "update phone", evs, err, nil, "")
	case phone == "":
		expect(t, "remove phone", evs, err, []domain.Event{user.UserPhoneNumberUpdated{UserID: userID, Action: "removed", Timestamp: now}}, "")
		mc.m.phone = ""
	default:
		expect(t, "set phone", evs, err, []domain.Event{user.UserPhoneNumberUpdated{UserID: userID, Action: "set", MaskedPhoneNumber: domain.MaskPhone(phone), Timestamp: now}}, "")
		mc.m.phone = phone
	}
	mc.apply(t, evs)
}

func fold(evs []domain.Event) user.State {
	var s user.State
	for _, e := range evs {
		s = user.Apply(s, e)
	}
	return s
}

func mask(v string, f func(string) string) string {
	if v == "" {
		return ""
	}
	return f(v)
}

func (mc *machine) check(t *rapid.T) {
	want := user.State{}
	if mc.m.exists {
		want = user.State{UserID: userID, Status: user.StatusActive,
			MaskedEmail: mask(mc.m.email, domain.MaskEmail), MaskedPhone: mask(mc.m.phone, domain.MaskPhone)}
	}
	if diff := diff(want, mc.s); diff != "" {
		t.Fatalf("state differs from the model (-want +got):\n%s", diff)
	}
	if mc.s.Exists() != mc.m.exists {
		t.Fatalf("Exists() = %v, want %v", mc.s.Exists(), mc.m.exists)
	}
	if diff := diff(mc.s, fold(mc.events)); diff != "" {
		t.Fatalf("replay differs from the live state (-live +replay):\n%s", diff)
	}
	b, err := json.Marshal(mc.s)
	if err != nil {
		t.Fatal(err)
	}
	var back user.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := diff(mc.s, back); diff != "" {
		t.Fatalf("state does not survive its snapshot JSON %s (-want +got):\n%s", b, diff)
	}
}

func TestUserCommandSequences(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mc := &machine{}
		t.Repeat(map[string]func(*rapid.T){
			"create":      mc.create,
			"updateEmail": mc.updateEmail,
			"updatePhone": mc.updatePhone,
			"":            mc.check,
		})
	})
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, typ, data string
	}{
		{"unknown type", "UserVanished", `{}`},
		{"type of another aggregate", lock.TypeOwnerSet, `{"lockId":1,"uuid":"u","timestamp":"t","userId":"x"}`},
		{"malformed JSON", user.TypeUserCreated, `{"userId":`},
		{"wrong field type", user.TypeUserEmailUpdated, `{"userId":1,"action":"set","timestamp":"t"}`},
		{"not an object", user.TypeUserPhoneNumberUpdated, `"set"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := user.Events.Decode(tc.typ, []byte(tc.data)); err == nil {
				t.Errorf("Decode(%q, %s) = %#v, want an error", tc.typ, tc.data, e)
			}
		})
	}
}
