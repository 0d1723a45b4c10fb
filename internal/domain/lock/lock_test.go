package lock_test

import (
	"encoding/json"
	"fmt"
	"slices"
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

// users is the small pool residents, owners and key holders come from, so
// that sequences hit the same user again and again.
var users = []string{
	"11111111-1111-4111-8111-111111111111",
	"22222222-2222-4222-8222-222222222222",
	"33333333-3333-4333-8333-333333333333",
	"44444444-4444-4444-8444-444444444444",
}

var orgs = []string{"acme", "globex", "initech"}

// model is what a lock should look like, kept by hand.
type model struct {
	created   bool
	lockID    int64
	uuid      string
	serial    string
	thing     string // thing name and ARN, when the lock was created with them
	thingArn  string
	owner     string
	org       string
	keys      []lock.Key
	residents []lock.Resident // in the order they were added
}

var (
	expect = domaintest.Expect
	diff   = domaintest.Diff
)

func (m *model) resident(u string) (lock.Resident, bool) {
	for _, r := range m.residents {
		if r.UserID == u {
			return r, true
		}
	}
	return lock.Resident{}, false
}

type machine struct {
	s       lock.State
	m       model
	events  []domain.Event
	decoded []domain.Event // events as read back from their JSON
	clock   int
}

func (mc *machine) now() string {
	mc.clock++
	return base.Add(time.Duration(mc.clock) * time.Second).Format(domain.TimeLayout)
}

func cloneState(s lock.State) lock.State {
	s.Keys = slices.Clone(s.Keys)
	s.Residents = slices.Clone(s.Residents)
	return s
}

// apply folds the events a decision returned into the machine, checking on
// the way that each one survives its stored encoding and that Apply leaves
// the state it was given untouched.
func (mc *machine) apply(t *rapid.T, evs []domain.Event) {
	for _, e := range evs {
		_, got := domaintest.RoundTrip(t, e, lock.Events)
		before := cloneState(mc.s)
		old := mc.s
		mc.s = lock.Apply(mc.s, e)
		if diff := diff(before, old); diff != "" {
			t.Fatalf("Apply(%s) changed the state it was given (-before +after):\n%s", lock.Events.Name(e), diff)
		}
		mc.events = append(mc.events, e)
		mc.decoded = append(mc.decoded, got)
	}
}

func (mc *machine) create(t *rapid.T) {
	id := rapid.Int64Range(1, 1<<40).Draw(t, "lockID")
	uuid := fmt.Sprintf("%08x-0000-4000-8000-%012x", id, id)
	org := rapid.SampledFrom(append([]string{""}, orgs...)).Draw(t, "org")
	owner := rapid.SampledFrom(append([]string{""}, users...)).Draw(t, "owner")
	var keys []lock.Key
	if rapid.Bool().Draw(t, "withKeys") {
		keys = []lock.Key{}
		for i := range rapid.IntRange(0, 3).Draw(t, "keys") {
			k := lock.Key{UUID: fmt.Sprintf("key-%d", i)}
			if rapid.Bool().Draw(t, "indexed") {
				n := int64(i)
				k.IndexNumber = &n
			}
			k.UserID = rapid.SampledFrom(append([]string{""}, users...)).Draw(t, "keyHolder")
			keys = append(keys, k)
		}
	}
	// Locks created before spkey recorded things have neither field.
	thing, arn := "", ""
	if rapid.Bool().Draw(t, "withThing") {
		thing = lock.ThingName(id)
		arn = lock.ThingArn("eu-central-1", "123456789012", thing)
	}
	now := mc.now()
	serial := "SN-" + uuid[:4]
	evs, err := lock.DecideCreate(mc.s, lock.Create{LockID: id, UUID: uuid, SerialNumber: serial, OwnerID: owner, Keys: keys, OrgID: org,
		ThingName: thing, ThingArn: arn, Now: now})
	var want []domain.Event
	if !mc.m.created {
		wantKeys := keys
		if wantKeys == nil {
			wantKeys = []lock.Key{}
		}
		want = []domain.Event{lock.LockCreated{LockID: id, UUID: uuid, SerialNumber: serial, Keys: wantKeys, OwnerID: owner, Timestamp: now,
			ThingName: thing, ThingArn: arn}}
		if org != "" {
			want = append(want, lock.OrganizationSet{LockID: id, UUID: uuid, Timestamp: now, OrgID: org})
		}
		mc.m = model{created: true, lockID: id, uuid: uuid, serial: serial, thing: thing, thingArn: arn, owner: owner, org: org,
			keys: slices.Clone(wantKeys), residents: []lock.Resident{}}
	}
	// A second create is idempotent: no events, no error.
	expect(t, "create", evs, err, want, "")
	mc.apply(t, evs)
}

func (mc *machine) setOwner(t *rapid.T) {
	u := rapid.SampledFrom(users).Draw(t, "user")
	now := mc.now()
	evs, err := lock.DecideSetOwner(mc.s, u, now)
	switch {
	case !mc.m.created:
		expect(t, "set owner", evs, err, nil, domain.NotFound)
	case mc.m.owner == u:
		expect(t, "set owner", evs, err, nil, "")
	default:
		expect(t, "set owner", evs, err, []domain.Event{lock.OwnerSet{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, UserID: u}}, "")
		mc.m.owner = u
	}
	mc.apply(t, evs)
}

func (mc *machine) setOrg(t *rapid.T) {
	org := rapid.SampledFrom(orgs).Draw(t, "org")
	now := mc.now()
	evs, err := lock.DecideSetOrganization(mc.s, org, now)
	switch {
	case !mc.m.created:
		expect(t, "set org", evs, err, nil, domain.NotFound)
	case mc.m.org == org:
		expect(t, "set org", evs, err, nil, "")
	default:
		expect(t, "set org", evs, err, []domain.Event{lock.OrganizationSet{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, OrgID: org}}, "")
		mc.m.org = org
	}
	mc.apply(t, evs)
}

func (mc *machine) addResident(t *rapid.T) {
	u := rapid.SampledFrom(users).Draw(t, "user")
	// The last three are refused: empty, a bidi override, too long.
	name := rapid.SampledFrom([]string{"Ann", "Bob", "Zoë", "", "Ann\u202Egnp.exe", strings.Repeat("n", domain.MaxNameLen+1)}).Draw(t, "name")
	badName := name == "" || strings.ContainsRune(name, '\u202E') || len(name) > domain.MaxNameLen
	email := rapid.SampledFrom([]string{"", "a***@example.com", "b***@example.org"}).Draw(t, "maskedEmail")
	now := mc.now()
	evs, err := lock.DecideAddResident(mc.s, u, name, email, now)
	_, present := mc.m.resident(u)
	switch {
	case !mc.m.created:
		expect(t, "add resident", evs, err, nil, domain.NotFound)
	case present, badName:
		expect(t, "add resident", evs, err, nil, domain.Invalid)
	default:
		expect(t, "add resident", evs, err, []domain.Event{lock.ResidentAdded{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, UserID: u, Name: name, Email: email}}, "")
		mc.m.residents = append(mc.m.residents, lock.Resident{UserID: u, Name: name, MaskedEmail: email})
	}
	mc.apply(t, evs)
}

func (mc *machine) removeResident(t *rapid.T) {
	u := rapid.SampledFrom(users).Draw(t, "user")
	now := mc.now()
	evs, err := lock.DecideRemoveResident(mc.s, u, now)
	r, present := mc.m.resident(u)
	switch {
	case !mc.m.created:
		expect(t, "remove resident", evs, err, nil, domain.NotFound)
	case !present:
		expect(t, "remove resident", evs, err, nil, domain.Invalid)
	default:
		expect(t, "remove resident", evs, err, []domain.Event{lock.ResidentRemoved{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, UserID: u, Email: r.MaskedEmail}}, "")
		mc.m.residents = slices.DeleteFunc(mc.m.residents, func(x lock.Resident) bool { return x.UserID == u })
	}
	mc.apply(t, evs)
}

// fold replays events from the zero state, as a rebuild does.
func fold(evs []domain.Event) lock.State {
	var s lock.State
	for _, e := range evs {
		s = lock.Apply(s, e)
	}
	return s
}

func (mc *machine) check(t *rapid.T) {
	s, m := mc.s, mc.m
	if s.Exists() != m.created {
		t.Fatalf("Exists() = %v, model says created %v", s.Exists(), m.created)
	}
	if !m.created {
		if diff := diff(lock.State{}, s); diff != "" {
			t.Fatalf("state of a lock never created (-want +got):\n%s", diff)
		}
		return
	}
	seen := map[string]bool{}
	for _, r := range s.Residents {
		if seen[r.UserID] {
			t.Fatalf("resident %s listed twice: %+v", r.UserID, s.Residents)
		}
		seen[r.UserID] = true
	}
	for _, u := range users {
		_, got := s.Resident(u)
		_, want := m.resident(u)
		if got != want {
			t.Fatalf("Resident(%s) present = %v, model says %v", u, got, want)
		}
		holder := slices.ContainsFunc(m.keys, func(k lock.Key) bool { return k.UserID == u })
		if s.HasKeyHolder(u) != holder {
			t.Fatalf("HasKeyHolder(%s) = %v, want %v", u, s.HasKeyHolder(u), holder)
		}
	}
	if s.HasKeyHolder("") {
		t.Fatalf("HasKeyHolder(\"\") = true: an unassigned key slot must not match the empty user")
	}
	keySeen := map[string]bool{}
	for _, k := range s.Keys {
		if keySeen[k.UUID] {
			t.Fatalf("key %s listed twice: %+v", k.UUID, s.Keys)
		}
		keySeen[k.UUID] = true
		if got, ok := s.Key(k.UUID); !ok || got.UUID != k.UUID {
			t.Fatalf("Key(%s) = %+v, %v: the key is listed", k.UUID, got, ok)
		}
	}
	want := lock.State{LockID: m.lockID, UUID: m.uuid, SerialNumber: m.serial, OwnerID: m.owner, OrgID: m.org,
		Keys: m.keys, Residents: m.residents, ThingName: m.thing, ThingArn: m.thingArn, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	if diff := diff(want, s); diff != "" {
		t.Fatalf("state differs from the model (-want +got):\n%s", diff)
	}
	if last := lastTimestamp(mc.events); s.UpdatedAt != last {
		t.Fatalf("UpdatedAt = %q, want the last event's timestamp %q", s.UpdatedAt, last)
	}
	// Replaying the log, or its stored JSON, gives the same state.
	if diff := diff(s, fold(mc.events)); diff != "" {
		t.Fatalf("replay differs from the live state (-live +replay):\n%s", diff)
	}
	if diff := diff(s, fold(mc.decoded)); diff != "" {
		t.Fatalf("replay of the stored JSON differs from the live state (-live +replay):\n%s", diff)
	}
	// The snapshot (state as JSON) loads back unchanged.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back lock.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := diff(s, back); diff != "" {
		t.Fatalf("state does not survive its snapshot JSON %s (-want +got):\n%s", b, diff)
	}
}

func lastTimestamp(evs []domain.Event) string {
	ts := ""
	for _, e := range evs {
		switch v := e.(type) {
		case lock.LockCreated:
			ts = v.Timestamp
		case lock.OwnerSet:
			ts = v.Timestamp
		case lock.OrganizationSet:
			ts = v.Timestamp
		case lock.ResidentAdded:
			ts = v.Timestamp
		case lock.ResidentRemoved:
			ts = v.Timestamp
		case lock.KeyAdded:
			ts = v.Timestamp
		case lock.KeyRemoved:
			ts = v.Timestamp
		case lock.KeyWriteRequested:
			ts = v.Timestamp
		case lock.LockOpenRequested:
			ts = v.Timestamp
		case lock.LockUUIDChanged:
			ts = v.Timestamp
		default:
			panic(fmt.Sprintf("lastTimestamp: unknown event %T", e))
		}
	}
	return ts
}

func TestLockCommandSequences(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mc := &machine{}
		t.Repeat(map[string]func(*rapid.T){
			"create":         mc.create,
			"setOwner":       mc.setOwner,
			"setOrg":         mc.setOrg,
			"addResident":    mc.addResident,
			"removeResident": mc.removeResident,
			"addKey":         mc.addKey,
			"removeKey":      mc.removeKey,
			"writeKey":       mc.writeKey,
			"openLock":       mc.openLock,
			"changeUUID":     mc.changeUUID,
			"":               mc.check,
		})
	})
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, typ, data string
	}{
		{"unknown type", "LockExploded", `{}`},
		{"type of another aggregate", user.TypeUserCreated, `{"userId":"u","status":"ACTIVE"}`},
		{"malformed JSON", lock.TypeOwnerSet, `{"lockId":`},
		{"wrong field type", lock.TypeLockCreated, `{"lockId":"one","uuid":"u","keys":[],"timestamp":"t"}`},
		{"not an object", lock.TypeResidentAdded, `[1,2]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := lock.Events.Decode(tc.typ, []byte(tc.data)); err == nil {
				t.Errorf("Decode(%q, %s) = %#v, want an error", tc.typ, tc.data, e)
			}
		})
	}
}

func TestApplyIgnoresForeignEvents(t *testing.T) {
	s := lock.Apply(lock.State{}, lock.LockCreated{LockID: 7, UUID: "u", Keys: []lock.Key{}, Timestamp: "2026-01-01T00:00:00.000Z"})
	got := lock.Apply(s, user.UserCreated{UserID: "x", Status: user.StatusActive})
	if diff := diff(s, got); diff != "" {
		t.Errorf("Apply of a user event changed the lock (-want +got):\n%s", diff)
	}
}
