package lock_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

const (
	tsNow  = "2026-02-03T04:05:06.789Z"
	devU   = "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40"
	holder = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
)

func idx(n int64) *int64 { return &n }

// seeded is lock 7 as LockCreated left it: key k0 in slot 0 held by
// holder, k1 in slot 1 without a holder, k2 without a slot, and (as only a
// LockCreated can seed) kx and ky sharing slot 5.
func seeded() lock.State {
	return lock.Apply(lock.State{}, lock.LockCreated{LockID: 7, UUID: devU, Timestamp: "2026-01-01T00:00:00.000Z", Keys: []lock.Key{
		{UUID: "k0", IndexNumber: idx(0), UserID: holder}, {UUID: "k1", IndexNumber: idx(1)}, {UUID: "k2"},
		{UUID: "kx", IndexNumber: idx(5)}, {UUID: "ky", IndexNumber: idx(5)},
	}})
}

// decideCase is one decide call: either an error code or the events.
type decideCase struct {
	name   string
	decide func(lock.State) ([]domain.Event, error)
	state  lock.State
	code   domain.Code // "" when no error is expected
	field  string      // the field an Invalid error names, if any
	want   []domain.Event
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := tc.decide(tc.state)
			if code := domain.ErrorCode(err); tc.code != "" && code != tc.code {
				t.Fatalf("error %v (code %s), want code %s", err, code, tc.code)
			}
			if tc.code == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tc.field != "" {
				var de *domain.Error
				if !errors.As(err, &de) || len(de.Details) != 1 || de.Details[0].Field != tc.field {
					t.Errorf("error %#v does not name field %s", err, tc.field)
				}
			}
			if diff := cmp.Diff(tc.want, evs); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideAddKey(t *testing.T) {
	add := func(c lock.AddKey) func(lock.State) ([]domain.Event, error) {
		c.Now = tsNow
		return func(s lock.State) ([]domain.Event, error) { return lock.DecideAddKey(s, c) }
	}
	s := seeded()
	runDecideCases(t, []decideCase{
		{name: "missing lock", decide: add(lock.AddKey{KeyUUID: "k9"}), code: domain.NotFound},
		{name: "new key, only keyUuid", decide: add(lock.AddKey{KeyUUID: "k9"}), state: s,
			want: []domain.Event{lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9"}}},
		{name: "new key with slot and holder", decide: add(lock.AddKey{KeyUUID: "k9", KeyIndexNumber: idx(-3), UserID: holder}), state: s,
			want: []domain.Event{lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9", KeyIndexNumber: idx(-3), UserID: holder}}},
		{name: "largest slot", decide: add(lock.AddKey{KeyUUID: "k9", KeyIndexNumber: idx(domain.MaxID)}), state: s,
			want: []domain.Event{lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9", KeyIndexNumber: idx(domain.MaxID)}}},
		{name: "same key, slot and holder again", decide: add(lock.AddKey{KeyUUID: "k0", KeyIndexNumber: idx(0), UserID: holder}), state: s},
		{name: "same slotless key again", decide: add(lock.AddKey{KeyUUID: "k2"}), state: s},
		{name: "same key, other holder", decide: add(lock.AddKey{KeyUUID: "k0", KeyIndexNumber: idx(0)}), state: s, code: domain.Conflict},
		{name: "same key, other slot", decide: add(lock.AddKey{KeyUUID: "k0", KeyIndexNumber: idx(4), UserID: holder}), state: s, code: domain.Conflict},
		{name: "same key, slot dropped", decide: add(lock.AddKey{KeyUUID: "k1"}), state: s, code: domain.Conflict},
		{name: "slot of another key", decide: add(lock.AddKey{KeyUUID: "k9", KeyIndexNumber: idx(1)}), state: s, code: domain.Conflict},
		{name: "empty keyUuid", decide: add(lock.AddKey{}), state: s, code: domain.Invalid, field: "keyUuid"},
		{name: "keyUuid too long", decide: add(lock.AddKey{KeyUUID: strings.Repeat("k", lock.MaxKeyUUIDLen+1)}), state: s, code: domain.Invalid, field: "keyUuid"},
		{name: "keyUuid with a newline", decide: add(lock.AddKey{KeyUUID: "k\n9"}), state: s, code: domain.Invalid, field: "keyUuid"},
		{name: "slot out of range", decide: add(lock.AddKey{KeyUUID: "k9", KeyIndexNumber: idx(domain.MaxID + 1)}), state: s, code: domain.Invalid, field: "keyIndexNumber"},
		{name: "slot below range", decide: add(lock.AddKey{KeyUUID: "k9", KeyIndexNumber: idx(-domain.MaxID - 1)}), state: s, code: domain.Invalid, field: "keyIndexNumber"},
		{name: "userId not canonical", decide: add(lock.AddKey{KeyUUID: "k9", UserID: strings.ToUpper(holder)}), state: s, code: domain.Invalid, field: "userId"},
	})
}

func TestDecideRemoveKey(t *testing.T) {
	rm := func(c lock.RemoveKey) func(lock.State) ([]domain.Event, error) {
		c.Now = tsNow
		return func(s lock.State) ([]domain.Event, error) { return lock.DecideRemoveKey(s, c) }
	}
	s := seeded()
	removed := func(k string, slot *int64) []domain.Event {
		return []domain.Event{lock.KeyRemoved{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: k, KeyIndexNumber: slot}}
	}
	runDecideCases(t, []decideCase{
		{name: "missing lock", decide: rm(lock.RemoveKey{KeyUUID: "k0"}), code: domain.NotFound},
		{name: "neither keyUuid nor slot", decide: rm(lock.RemoveKey{}), state: s, code: domain.Invalid, field: "keyUuid"},
		{name: "by keyUuid: the event names the slot it had", decide: rm(lock.RemoveKey{KeyUUID: "k0"}), state: s, want: removed("k0", idx(0))},
		{name: "by slot", decide: rm(lock.RemoveKey{KeyIndexNumber: idx(1)}), state: s, want: removed("k1", idx(1))},
		{name: "by both", decide: rm(lock.RemoveKey{KeyUUID: "k1", KeyIndexNumber: idx(1)}), state: s, want: removed("k1", idx(1))},
		{name: "slotless key", decide: rm(lock.RemoveKey{KeyUUID: "k2"}), state: s, want: removed("k2", nil)},
		{name: "by keyUuid in a shared slot", decide: rm(lock.RemoveKey{KeyUUID: "ky"}), state: s, want: removed("ky", idx(5))},
		{name: "unknown keyUuid", decide: rm(lock.RemoveKey{KeyUUID: "k9"}), state: s, code: domain.NotFound},
		{name: "empty slot", decide: rm(lock.RemoveKey{KeyIndexNumber: idx(2)}), state: s, code: domain.NotFound},
		{name: "keyUuid and slot of two keys", decide: rm(lock.RemoveKey{KeyUUID: "k0", KeyIndexNumber: idx(1)}), state: s, code: domain.NotFound},
		{name: "slot shared by two keys", decide: rm(lock.RemoveKey{KeyIndexNumber: idx(5)}), state: s, code: domain.Invalid, field: "keyIndexNumber"},
		{name: "slot out of range", decide: rm(lock.RemoveKey{KeyIndexNumber: idx(domain.MaxID + 1)}), state: s, code: domain.Invalid, field: "keyIndexNumber"},
	})
}

func TestDecideWriteKey(t *testing.T) {
	wr := func(c lock.WriteKey) func(lock.State) ([]domain.Event, error) {
		c.Now = tsNow
		return func(s lock.State) ([]domain.Event, error) { return lock.DecideWriteKey(s, c) }
	}
	s := seeded()
	runDecideCases(t, []decideCase{
		{name: "missing lock", decide: wr(lock.WriteKey{KeyUUID: "k0"}), code: domain.NotFound},
		{name: "key on the lock, slot as given", decide: wr(lock.WriteKey{KeyUUID: "k0"}), state: s,
			want: []domain.Event{lock.KeyWriteRequested{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k0"}}},
		{name: "key not on the lock", decide: wr(lock.WriteKey{KeyUUID: "card-9", KeyIndexNumber: idx(9)}), state: s,
			want: []domain.Event{lock.KeyWriteRequested{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "card-9", KeyIndexNumber: idx(9)}}},
		{name: "empty keyUuid", decide: wr(lock.WriteKey{KeyIndexNumber: idx(0)}), state: s, code: domain.Invalid, field: "keyUuid"},
		{name: "slot out of range", decide: wr(lock.WriteKey{KeyUUID: "k0", KeyIndexNumber: idx(-domain.MaxID - 1)}), state: s, code: domain.Invalid, field: "keyIndexNumber"},
	})
}

func TestDecideOpenLock(t *testing.T) {
	open := func(c lock.OpenLock) func(lock.State) ([]domain.Event, error) {
		c.Now = tsNow
		return func(s lock.State) ([]domain.Event, error) { return lock.DecideOpenLock(s, c) }
	}
	s := seeded()
	runDecideCases(t, []decideCase{
		{name: "missing lock", decide: open(lock.OpenLock{}), code: domain.NotFound},
		{name: "bare", decide: open(lock.OpenLock{}), state: s, want: []domain.Event{lock.LockOpenRequested{LockID: 7, UUID: devU, Timestamp: tsNow}}},
		{name: "with reason and requestId", decide: open(lock.OpenLock{Reason: "Parcel for flat 4", RequestID: "req-42"}), state: s,
			want: []domain.Event{lock.LockOpenRequested{LockID: 7, UUID: devU, Timestamp: tsNow, Reason: "Parcel for flat 4", RequestID: "req-42"}}},
		{name: "longest reason", decide: open(lock.OpenLock{Reason: strings.Repeat("ż", lock.MaxOpenReasonLen)}), state: s,
			want: []domain.Event{lock.LockOpenRequested{LockID: 7, UUID: devU, Timestamp: tsNow, Reason: strings.Repeat("ż", lock.MaxOpenReasonLen)}}},
		{name: "reason too long", decide: open(lock.OpenLock{Reason: strings.Repeat("r", lock.MaxOpenReasonLen+1)}), state: s, code: domain.Invalid, field: "reason"},
		{name: "reason with a bidi override", decide: open(lock.OpenLock{Reason: "ok\u202E"}), state: s, code: domain.Invalid, field: "reason"},
		{name: "requestId too long", decide: open(lock.OpenLock{RequestID: strings.Repeat("q", lock.MaxRequestIDLen+1)}), state: s, code: domain.Invalid, field: "requestId"},
		{name: "requestId with a control character", decide: open(lock.OpenLock{RequestID: "req\x00"}), state: s, code: domain.Invalid, field: "requestId"},
	})
}

func TestDecideChangeUUID(t *testing.T) {
	change := func(u string) func(lock.State) ([]domain.Event, error) {
		return func(s lock.State) ([]domain.Event, error) { return lock.DecideChangeUUID(s, u, tsNow) }
	}
	const next = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	s := seeded()
	runDecideCases(t, []decideCase{
		{name: "missing lock", decide: change(next), code: domain.NotFound},
		{name: "new uuid", decide: change(next), state: s,
			want: []domain.Event{lock.LockUUIDChanged{LockID: 7, UUID: devU, Timestamp: tsNow, NewUUID: next, PreviousUUID: devU}}},
		{name: "upper case is stored lower-cased", decide: change(strings.ToUpper(next)), state: s,
			want: []domain.Event{lock.LockUUIDChanged{LockID: 7, UUID: devU, Timestamp: tsNow, NewUUID: next, PreviousUUID: devU}}},
		{name: "current uuid", decide: change(devU), state: s, code: domain.Conflict},
		{name: "current uuid in upper case", decide: change(strings.ToUpper(devU)), state: s, code: domain.Conflict},
		{name: "not a uuid", decide: change("lock-7"), state: s, code: domain.Invalid, field: "newUuid"},
		{name: "empty", decide: change(""), state: s, code: domain.Invalid, field: "newUuid"},
	})
}

// TestApplyDeviceEvents folds the device events over the seeded lock.
func TestApplyDeviceEvents(t *testing.T) {
	const next = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	s := seeded()
	steps := []struct {
		name string
		ev   domain.Event
		keys []string // UUIDs of the keys after, in order
		uuid string
		hold bool // HasKeyHolder(holder) after
	}{
		{"add k9 for holder", lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9", UserID: holder}, []string{"k0", "k1", "k2", "kx", "ky", "k9"}, devU, true},
		{"remove k0: holder still has k9", lock.KeyRemoved{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k0", KeyIndexNumber: idx(0)}, []string{"k1", "k2", "kx", "ky", "k9"}, devU, true},
		// Not decided (DecideAddKey refuses it), but a fold replaces the key in place.
		{"k1 again with holder", lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k1", UserID: holder}, []string{"k1", "k2", "kx", "ky", "k9"}, devU, true},
		{"write k1", lock.KeyWriteRequested{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k1"}, []string{"k1", "k2", "kx", "ky", "k9"}, devU, true},
		{"open", lock.LockOpenRequested{LockID: 7, UUID: devU, Timestamp: tsNow}, []string{"k1", "k2", "kx", "ky", "k9"}, devU, true},
		{"remove k1", lock.KeyRemoved{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k1"}, []string{"k2", "kx", "ky", "k9"}, devU, true},
		{"remove k9: no key of holder left", lock.KeyRemoved{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9"}, []string{"k2", "kx", "ky"}, devU, false},
		{"change uuid", lock.LockUUIDChanged{LockID: 7, UUID: devU, Timestamp: tsNow, NewUUID: next, PreviousUUID: devU}, []string{"k2", "kx", "ky"}, next, false},
	}
	for _, st := range steps {
		before := cloneState(s)
		next := lock.Apply(s, st.ev)
		if diff := cmp.Diff(before, s); diff != "" {
			t.Fatalf("%s: Apply changed the state it was given (-before +after):\n%s", st.name, diff)
		}
		s = next
		var got []string
		for _, k := range s.Keys {
			got = append(got, k.UUID)
		}
		if diff := cmp.Diff(st.keys, got); diff != "" {
			t.Errorf("%s: keys (-want +got):\n%s", st.name, diff)
		}
		if s.UUID != st.uuid || s.HasKeyHolder(holder) != st.hold || s.UpdatedAt != tsNow {
			t.Errorf("%s: uuid %s, HasKeyHolder %v, updatedAt %s; want %s, %v, %s", st.name, s.UUID, s.HasKeyHolder(holder), s.UpdatedAt, st.uuid, st.hold, tsNow)
		}
	}
}

func TestThingNames(t *testing.T) {
	for _, tc := range []struct {
		id   int64
		want string
	}{{1, "lock-1"}, {1001, "lock-1001"}, {domain.MaxID, "lock-9007199254740991"}} {
		got := lock.ThingName(tc.id)
		if got != tc.want {
			t.Errorf("ThingName(%d) = %q, want %q", tc.id, got, tc.want)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-') || len(got) > 128 {
				t.Errorf("ThingName(%d) = %q is not an AWS IoT thing name", tc.id, got)
			}
		}
	}
	if got, want := lock.ThingArn("eu-central-1", "123456789012", "lock-1001"), "arn:aws:iot:eu-central-1:123456789012:thing/lock-1001"; got != want {
		t.Errorf("ThingArn = %q, want %q", got, want)
	}
}
