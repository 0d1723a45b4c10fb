// Device commands: the lock commands that upstream pushes to the device
// through its shadow (AddKey, RemoveKey, WriteKey, OpenLock,
// ChangeLockUuid) and the name of the device's thing.

package lock

import (
	"strconv"
	"strings"

	"github.com/spkey-dev/spkey/internal/domain"
)

// ThingName returns the name of lock lockID's device thing: "lock-" and
// the decimal lock id ("lock-1001"). It is built from the lock id, not the
// device UUID, so that it stays the same when ChangeLockUuid replaces the
// hardware: the thing's shadow (the keys the device must hold) carries
// over to the new device. For ids 1 to domain.MaxID the name is 6 to 21
// characters of [a-z0-9-], within AWS IoT's thing names ([a-zA-Z0-9:_-],
// 1 to 128).
func ThingName(lockID int64) string {
	return ThingPrefix + strconv.FormatInt(lockID, 10)
}

// ThingPrefix begins the thing name of every lock (ThingName).
const ThingPrefix = "lock-"

// LockIDOfThing returns the lock id whose ThingName is thing, and false
// for a name ThingName never returns.
func LockIDOfThing(thing string) (int64, bool) {
	rest, ok := strings.CutPrefix(thing, ThingPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || id < 1 || id > domain.MaxID || strconv.FormatInt(id, 10) != rest {
		return 0, false
	}
	return id, true
}

// ThingArn returns the ARN of thing in an AWS account and region:
// "arn:aws:iot:{region}:{account}:thing/{thing}". It checks nothing.
func ThingArn(region, account, thing string) string {
	return "arn:aws:iot:" + region + ":" + account + ":thing/" + thing
}

// Free-text limits of OpenLock, in characters.
const (
	MaxOpenReasonLen = 500
	MaxRequestIDLen  = 128
)

// OpenLock asks the device to unlock. RequestID (the caller's tracking id)
// and Reason are optional.
type OpenLock struct {
	RequestID string
	Reason    string
	Now       string
}

// DecideOpenLock returns LockOpenRequested: every request is an event,
// none is a repeat of another. It returns NotFound for a missing lock and
// Invalid for a reason longer than MaxOpenReasonLen or a requestId longer
// than MaxRequestIDLen characters, or either with control or
// bidirectional formatting characters (both are shown in the lock's
// history).
func DecideOpenLock(s State, c OpenLock) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if err := domain.CheckText("reason", c.Reason, MaxOpenReasonLen, false); err != nil {
		return nil, err
	}
	if err := domain.CheckText("requestId", c.RequestID, MaxRequestIDLen, false); err != nil {
		return nil, err
	}
	return []domain.Event{LockOpenRequested{LockID: s.LockID, UUID: s.UUID, Timestamp: c.Now, Reason: c.Reason, RequestID: c.RequestID}}, nil
}

// DecideChangeUUID returns LockUUIDChanged, moving the lock to device
// newUUID (an RFC 4122 UUID, stored lower-cased). The event's uuid and
// previousUuid are the current UUID. It returns NotFound for a missing
// lock, Invalid for a malformed newUuid and Conflict when newUuid is the
// current UUID (upstream answers 409). Whether another lock has newUUID
// is the store's to say, not this function's.
func DecideChangeUUID(s State, newUUID, now string) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	u, err := domain.NormalizeUUID("newUuid", newUUID)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(u, s.UUID) {
		return nil, domain.Errorf(domain.Conflict, "newUuid is the current UUID of lock %d", s.LockID)
	}
	return []domain.Event{LockUUIDChanged{LockID: s.LockID, UUID: s.UUID, Timestamp: now, NewUUID: u, PreviousUUID: s.UUID}}, nil
}

// MaxKeyUUIDLen is the longest key identifier, in characters. Upstream
// asks only for a non-empty string (a wallet keyId or any UUID); the
// bound keeps device shadow documents small.
const MaxKeyUUIDLen = 128

// CheckKeyUUID checks a key identifier as field: required, at most
// MaxKeyUUIDLen characters of one line without control or bidirectional
// formatting characters. It is not required to be a UUID and is compared
// as given (upstream's keyUuid is any string). It returns an Invalid error
// naming field.
func CheckKeyUUID(field, keyUUID string) error {
	if keyUUID == "" {
		return domain.InvalidField(field, field+" is required")
	}
	return domain.CheckText(field, keyUUID, MaxKeyUUIDLen, false)
}

// checkIndex checks a key slot: upstream's integer range, ±(2^53-1).
func checkIndex(field string, n *int64) error {
	if n != nil && (*n > domain.MaxID || *n < -domain.MaxID) {
		return domain.InvalidField(field, field+" must be an integer between -9007199254740991 and 9007199254740991")
	}
	return nil
}

func sameIndex(a, b *int64) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// Key returns the key of UUID keyUUID on the lock, if any.
func (s State) Key(keyUUID string) (Key, bool) {
	for _, k := range s.Keys {
		if k.UUID == keyUUID {
			return k, true
		}
	}
	return Key{}, false
}

// AddKey asks to put a key on the lock. KeyIndexNumber (the device slot)
// and UserID (who may then manage the lock) are optional.
type AddKey struct {
	KeyUUID        string
	KeyIndexNumber *int64
	UserID         string
	Now            string
}

// DecideAddKey returns KeyAdded. A key already on the lock with the same
// slot and user gives no event (the command is repeated). It returns
// NotFound for a missing lock; Invalid for a bad keyUuid, keyIndexNumber
// or userId (a user id is a canonical UUID); Conflict when the key is on
// the lock with another slot or user, or when another key holds the slot.
// A key is never replaced in place: a change of holder is RemoveKey then
// AddKey, so that both reach the device and the log.
func DecideAddKey(s State, c AddKey) ([]domain.Event, error) {
	if err := checkKeyCommand(s, c.KeyUUID, c.KeyIndexNumber); err != nil {
		return nil, err
	}
	if c.UserID != "" {
		if _, err := domain.CanonicalUUID("userId", c.UserID); err != nil {
			return nil, err
		}
	}
	if k, ok := s.Key(c.KeyUUID); ok {
		if sameIndex(k.IndexNumber, c.KeyIndexNumber) && k.UserID == c.UserID {
			return nil, nil
		}
		return nil, domain.Errorf(domain.Conflict, "Key %s is already on lock %d with another keyIndexNumber or userId: remove it first", c.KeyUUID, s.LockID)
	}
	if c.KeyIndexNumber != nil {
		for _, k := range s.Keys {
			if sameIndex(k.IndexNumber, c.KeyIndexNumber) {
				return nil, domain.Errorf(domain.Conflict, "Key slot %d of lock %d holds key %s: remove it first", *c.KeyIndexNumber, s.LockID, k.UUID)
			}
		}
	}
	return []domain.Event{KeyAdded{LockID: s.LockID, UUID: s.UUID, Timestamp: c.Now,
		KeyUUID: c.KeyUUID, KeyIndexNumber: c.KeyIndexNumber, UserID: c.UserID}}, nil
}

// RemoveKey asks to take a key off the lock, named by its UUID, its slot
// or both (then both must match the same key).
type RemoveKey struct {
	KeyUUID        string
	KeyIndexNumber *int64
	Now            string
}

// DecideRemoveKey returns KeyRemoved with the key's UUID and the slot it
// had. It returns NotFound for a missing lock or when no key matches;
// Invalid when neither keyUuid nor keyIndexNumber is given, when one is
// malformed, or when the slot alone names several keys (only a LockCreated
// can have seeded those).
func DecideRemoveKey(s State, c RemoveKey) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if c.KeyUUID == "" && c.KeyIndexNumber == nil {
		return nil, domain.InvalidField("keyUuid", "keyUuid or keyIndexNumber is required")
	}
	if err := checkIndex("keyIndexNumber", c.KeyIndexNumber); err != nil {
		return nil, err
	}
	var found []Key
	for _, k := range s.Keys {
		if (c.KeyUUID == "" || k.UUID == c.KeyUUID) && (c.KeyIndexNumber == nil || sameIndex(k.IndexNumber, c.KeyIndexNumber)) {
			found = append(found, k)
		}
	}
	switch {
	case len(found) == 0:
		return nil, domain.Errorf(domain.NotFound, "Key not found on this lock")
	case len(found) > 1 && c.KeyUUID == "":
		return nil, domain.InvalidField("keyIndexNumber", "Several keys of this lock use this keyIndexNumber: give keyUuid")
	}
	k := found[0]
	return []domain.Event{KeyRemoved{LockID: s.LockID, UUID: s.UUID, Timestamp: c.Now, KeyUUID: k.UUID, KeyIndexNumber: k.IndexNumber}}, nil
}

// WriteKey asks the device to write a key onto a physical card.
type WriteKey struct {
	KeyUUID        string
	KeyIndexNumber *int64
	Now            string
}

// DecideWriteKey returns KeyWriteRequested with the key and slot as given.
// The key need not be on the lock: upstream answers 404 only for a missing
// lock, and WriteKey is not a follow-up of AddKey. It returns NotFound for
// a missing lock and Invalid for a bad keyUuid or keyIndexNumber.
func DecideWriteKey(s State, c WriteKey) ([]domain.Event, error) {
	if err := checkKeyCommand(s, c.KeyUUID, c.KeyIndexNumber); err != nil {
		return nil, err
	}
	return []domain.Event{KeyWriteRequested{LockID: s.LockID, UUID: s.UUID, Timestamp: c.Now, KeyUUID: c.KeyUUID, KeyIndexNumber: c.KeyIndexNumber}}, nil
}

// checkKeyCommand is what AddKey and WriteKey check first: the lock exists
// (NotFound), keyUuid is a key id and keyIndexNumber a slot (Invalid).
func checkKeyCommand(s State, keyUUID string, index *int64) error {
	if err := notFound(s); err != nil {
		return err
	}
	if err := CheckKeyUUID("keyUuid", keyUUID); err != nil {
		return err
	}
	return checkIndex("keyIndexNumber", index)
}
