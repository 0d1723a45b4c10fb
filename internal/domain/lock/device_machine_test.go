package lock_test

import (
	"slices"
	"strings"

	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// The device commands of the rapid state machine (TestLockCommandSequences):
// keys come from a small pool and slots from 0 to 3, so that sequences add,
// repeat, clash with and remove the same keys again and again.

// keyUUIDs are the key identifiers drawn; the last three are refused.
var keyUUIDs = []string{"key-0", "key-1", "key-2", "key-3", "wallet-7c1e", "", "key\u202Egnp", strings.Repeat("k", lock.MaxKeyUUIDLen+1)}

// badUser is refused: user ids are canonical (lower-case) UUIDs.
const badUser = "8D0F6E52-3B1A-4C9D-9E7F-0A1B2C3D4E5F"

func badKeyUUID(k string) bool {
	return k == "" || strings.ContainsRune(k, '\u202E') || len(k) > lock.MaxKeyUUIDLen
}

// drawIndex draws no slot or a slot 0 to 3.
func drawIndex(t *rapid.T, label string) *int64 {
	if rapid.Bool().Draw(t, label+"None") {
		return nil
	}
	n := rapid.Int64Range(0, 3).Draw(t, label)
	return &n
}

func sameSlot(a, b *int64) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func (m *model) key(u string) (lock.Key, bool) {
	for _, k := range m.keys {
		if k.UUID == u {
			return k, true
		}
	}
	return lock.Key{}, false
}

func (mc *machine) addKey(t *rapid.T) {
	k := rapid.SampledFrom(keyUUIDs).Draw(t, "keyUuid")
	idx := drawIndex(t, "keyIndexNumber")
	u := rapid.SampledFrom(append([]string{"", badUser}, users...)).Draw(t, "userId")
	now := mc.now()
	evs, err := lock.DecideAddKey(mc.s, lock.AddKey{KeyUUID: k, KeyIndexNumber: idx, UserID: u, Now: now})
	old, present := mc.m.key(k)
	slotTaken := idx != nil && slices.ContainsFunc(mc.m.keys, func(x lock.Key) bool { return sameSlot(x.IndexNumber, idx) })
	switch {
	case !mc.m.created:
		expect(t, "add key", evs, err, nil, domain.NotFound)
	case badKeyUUID(k), u == badUser:
		expect(t, "add key", evs, err, nil, domain.Invalid)
	case present && sameSlot(old.IndexNumber, idx) && old.UserID == u:
		expect(t, "add key again", evs, err, nil, "")
	case present, slotTaken:
		expect(t, "add key", evs, err, nil, domain.Conflict)
	default:
		expect(t, "add key", evs, err, []domain.Event{lock.KeyAdded{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, KeyUUID: k, KeyIndexNumber: idx, UserID: u}}, "")
		mc.m.keys = append(mc.m.keys, lock.Key{UUID: k, IndexNumber: idx, UserID: u})
	}
	mc.apply(t, evs)
}

func (mc *machine) removeKey(t *rapid.T) {
	k := rapid.SampledFrom([]string{"", "", "key-0", "key-1", "key-2", "key-3", "wallet-7c1e"}).Draw(t, "keyUuid")
	idx := drawIndex(t, "keyIndexNumber")
	now := mc.now()
	evs, err := lock.DecideRemoveKey(mc.s, lock.RemoveKey{KeyUUID: k, KeyIndexNumber: idx, Now: now})
	var match []lock.Key
	for _, x := range mc.m.keys {
		if (k == "" || x.UUID == k) && (idx == nil || sameSlot(x.IndexNumber, idx)) {
			match = append(match, x)
		}
	}
	switch {
	case !mc.m.created:
		expect(t, "remove key", evs, err, nil, domain.NotFound)
	case k == "" && idx == nil:
		expect(t, "remove key", evs, err, nil, domain.Invalid)
	case len(match) == 0:
		expect(t, "remove key", evs, err, nil, domain.NotFound)
	case len(match) > 1:
		// Slots are unique on every lock this machine builds.
		t.Fatalf("model has %d keys in slot %v: %+v", len(match), idx, mc.m.keys)
	default:
		gone := match[0]
		expect(t, "remove key", evs, err, []domain.Event{lock.KeyRemoved{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, KeyUUID: gone.UUID, KeyIndexNumber: gone.IndexNumber}}, "")
		mc.m.keys = slices.DeleteFunc(mc.m.keys, func(x lock.Key) bool { return x.UUID == gone.UUID })
	}
	mc.apply(t, evs)
}

func (mc *machine) writeKey(t *rapid.T) {
	k := rapid.SampledFrom(keyUUIDs).Draw(t, "keyUuid")
	idx := drawIndex(t, "keyIndexNumber")
	now := mc.now()
	evs, err := lock.DecideWriteKey(mc.s, lock.WriteKey{KeyUUID: k, KeyIndexNumber: idx, Now: now})
	switch {
	case !mc.m.created:
		expect(t, "write key", evs, err, nil, domain.NotFound)
	case badKeyUUID(k):
		expect(t, "write key", evs, err, nil, domain.Invalid)
	default:
		// Keys not on the lock may be written too; the key list stays.
		expect(t, "write key", evs, err, []domain.Event{lock.KeyWriteRequested{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, KeyUUID: k, KeyIndexNumber: idx}}, "")
	}
	mc.apply(t, evs)
}

func (mc *machine) openLock(t *rapid.T) {
	reason := rapid.SampledFrom([]string{"", "courier", "Zoë's parcel", "open\u202E", strings.Repeat("r", lock.MaxOpenReasonLen+1)}).Draw(t, "reason")
	req := rapid.SampledFrom([]string{"", "req-1", "req-1", strings.Repeat("q", lock.MaxRequestIDLen+1)}).Draw(t, "requestId")
	now := mc.now()
	evs, err := lock.DecideOpenLock(mc.s, lock.OpenLock{RequestID: req, Reason: reason, Now: now})
	switch {
	case !mc.m.created:
		expect(t, "open", evs, err, nil, domain.NotFound)
	case strings.ContainsRune(reason, '\u202E') || len(reason) > lock.MaxOpenReasonLen || len(req) > lock.MaxRequestIDLen:
		expect(t, "open", evs, err, nil, domain.Invalid)
	default:
		// The same requestId again is another request, not a repeat.
		expect(t, "open", evs, err, []domain.Event{lock.LockOpenRequested{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, Reason: reason, RequestID: req}}, "")
	}
	mc.apply(t, evs)
}

func (mc *machine) changeUUID(t *rapid.T) {
	pool := []string{"aaaaaaaa-0000-4000-8000-000000000001", "BBBBBBBB-0000-4000-8000-000000000002", "not-a-uuid", ""}
	if mc.m.created {
		pool = append(pool, mc.m.uuid, strings.ToUpper(mc.m.uuid))
	}
	u := rapid.SampledFrom(pool).Draw(t, "newUuid")
	now := mc.now()
	evs, err := lock.DecideChangeUUID(mc.s, u, now)
	switch {
	case !mc.m.created:
		expect(t, "change uuid", evs, err, nil, domain.NotFound)
	case !domain.ValidUUID(u):
		expect(t, "change uuid", evs, err, nil, domain.Invalid)
	case strings.EqualFold(u, mc.m.uuid):
		expect(t, "change uuid", evs, err, nil, domain.Conflict)
	default:
		lower := strings.ToLower(u)
		expect(t, "change uuid", evs, err, []domain.Event{lock.LockUUIDChanged{LockID: mc.m.lockID, UUID: mc.m.uuid, Timestamp: now, NewUUID: lower, PreviousUUID: mc.m.uuid}}, "")
		mc.m.uuid = lower
	}
	mc.apply(t, evs)
}
