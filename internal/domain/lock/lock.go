// Package lock is the lock aggregate: a numeric id, a device UUID, an owner,
// an organization, key slots and the doorbell resident list. Decide and Apply
// are pure: time and ids come in with the command.
package lock

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// AggregateType is the stream type of locks in the event store.
const AggregateType = "lock"

// Event type names. They are stored forever; never rename one.
const (
	TypeLockCreated       = "LockCreated"
	TypeOwnerSet          = "OwnerSet"
	TypeOrganizationSet   = "OrganizationSet"
	TypeResidentAdded     = "ResidentAdded"
	TypeResidentRemoved   = "ResidentRemoved"
	TypeKeyAdded          = "KeyAdded"
	TypeKeyRemoved        = "KeyRemoved"
	TypeKeyWriteRequested = "KeyWriteRequested"
	TypeLockOpenRequested = "LockOpenRequested"
	TypeLockUUIDChanged   = "LockUuidChanged"
)

// Key is a key slot on the lock.
type Key struct {
	UUID        string `json:"uuid"`
	IndexNumber *int64 `json:"indexNumber,omitempty"`
	UserID      string `json:"userId,omitempty"`
}

// Resident is one entry of the doorbell list. Email is masked: the raw
// address lives only in the user read model.
type Resident struct {
	UserID      string `json:"userId"`
	Name        string `json:"name"`
	MaskedEmail string `json:"maskedEmail,omitempty"`
}

// State is the lock as folded from its events.
type State struct {
	LockID       int64      `json:"lockId"`
	UUID         string     `json:"uuid"`
	SerialNumber string     `json:"serialNumber,omitempty"`
	OwnerID      string     `json:"ownerId,omitempty"`
	OrgID        string     `json:"orgId,omitempty"`
	Keys         []Key      `json:"keys"`
	Residents    []Resident `json:"residents"`
	// ThingName and ThingArn name the lock's device (an AWS IoT thing) when
	// LockCreated recorded one.
	ThingName string `json:"thingName,omitempty"`
	ThingArn  string `json:"thingArn,omitempty"`
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
	// Actions are the lock's open device actions (action.go).
	Actions []Action `json:"actions,omitempty"`
}

// Exists reports whether the lock has been created.
func (s State) Exists() bool { return s.LockID != 0 }

// HasKeyHolder reports whether userID holds a key slot on the lock.
func (s State) HasKeyHolder(userID string) bool {
	for _, k := range s.Keys {
		if k.UserID != "" && k.UserID == userID {
			return true
		}
	}
	return false
}

// Resident returns the resident entry of userID, if any.
func (s State) Resident(userID string) (Resident, bool) {
	for _, r := range s.Residents {
		if r.UserID == userID {
			return r, true
		}
	}
	return Resident{}, false
}

// LockCreated is recorded when a lock aggregate is created. ThingName and
// ThingArn (upstream's optional fields) name the device's thing; events
// stored before spkey recorded them have neither.
type LockCreated struct {
	LockID       int64  `json:"lockId"`
	UUID         string `json:"uuid"`
	SerialNumber string `json:"serialNumber,omitempty"`
	Keys         []Key  `json:"keys"`
	OwnerID      string `json:"ownerId,omitempty"`
	Timestamp    string `json:"timestamp"`
	ThingName    string `json:"thingName,omitempty"`
	ThingArn     string `json:"thingArn,omitempty"`
}

// OwnerSet is recorded when a user becomes the lock's owner.
type OwnerSet struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
	UserID    string `json:"userId"`
}

// OrganizationSet is recorded when the lock is assigned to a tenant.
type OrganizationSet struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
	OrgID     string `json:"orgId"`
}

// ResidentAdded is recorded when a user joins the doorbell list. Email is
// the masked address (a***@example.com), never the raw one.
type ResidentAdded struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
	UserID    string `json:"userId"`
	Name      string `json:"name"`
	Email     string `json:"email,omitempty"`
}

// ResidentRemoved is recorded when a user leaves the doorbell list.
type ResidentRemoved struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
	UserID    string `json:"userId"`
	Email     string `json:"email,omitempty"`
}

// KeyAdded is recorded when a key is put on the lock (and pushed to the
// device). KeyIndexNumber is the key's slot on the device; UserID, when
// set, makes that user a key holder.
type KeyAdded struct {
	LockID         int64  `json:"lockId"`
	UUID           string `json:"uuid"`
	Timestamp      string `json:"timestamp"`
	KeyUUID        string `json:"keyUuid"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
	UserID         string `json:"userId,omitempty"`
}

// KeyRemoved is recorded when a key is taken off the lock. KeyIndexNumber
// is the slot the key had, when it had one.
type KeyRemoved struct {
	LockID         int64  `json:"lockId"`
	UUID           string `json:"uuid"`
	Timestamp      string `json:"timestamp"`
	KeyUUID        string `json:"keyUuid"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
}

// KeyWriteRequested is recorded when the device is asked to write a key
// onto a physical card. It does not change the lock's key list.
type KeyWriteRequested struct {
	LockID         int64  `json:"lockId"`
	UUID           string `json:"uuid"`
	Timestamp      string `json:"timestamp"`
	KeyUUID        string `json:"keyUuid"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
}

// LockOpenRequested is recorded when the device is asked to unlock.
type LockOpenRequested struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
	Reason    string `json:"reason,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// LockUUIDChanged (stored as "LockUuidChanged") is recorded when the
// lock's device UUID is replaced. UUID, like every lock event's, is the
// lock's UUID when the command was decided: the previous one.
type LockUUIDChanged struct {
	LockID       int64  `json:"lockId"`
	UUID         string `json:"uuid"`
	Timestamp    string `json:"timestamp"`
	NewUUID      string `json:"newUuid"`
	PreviousUUID string `json:"previousUuid"`
}

// Events is the catalogue of the lock's events.
var Events = domain.NewCatalog(AggregateType,
	domain.Def[LockCreated](TypeLockCreated),
	domain.Def[OwnerSet](TypeOwnerSet),
	domain.Def[OrganizationSet](TypeOrganizationSet),
	domain.Def[ResidentAdded](TypeResidentAdded),
	domain.Def[ResidentRemoved](TypeResidentRemoved),
	domain.Def[KeyAdded](TypeKeyAdded),
	domain.Def[KeyRemoved](TypeKeyRemoved),
	domain.Def[KeyWriteRequested](TypeKeyWriteRequested),
	domain.Def[LockOpenRequested](TypeLockOpenRequested),
	domain.Def[LockUUIDChanged](TypeLockUUIDChanged),
	domain.Def[LockActionUpdated](TypeLockActionUpdated),
	domain.Def[LockDeviceConnected](TypeLockDeviceConnected),
	domain.Def[LockDeviceDisconnected](TypeLockDeviceDisconnected),
)

// Apply returns the state after e. Unknown events leave the state as it is.
func Apply(s State, e domain.Event) State {
	switch v := e.(type) {
	case LockCreated:
		s = State{LockID: v.LockID, UUID: v.UUID, SerialNumber: v.SerialNumber, OwnerID: v.OwnerID,
			Keys: append([]Key{}, v.Keys...), Residents: []Resident{}, ThingName: v.ThingName, ThingArn: v.ThingArn,
			CreatedAt: v.Timestamp, UpdatedAt: v.Timestamp}
	case OwnerSet:
		s.OwnerID, s.UpdatedAt = v.UserID, v.Timestamp
	case OrganizationSet:
		s.OrgID, s.UpdatedAt = v.OrgID, v.Timestamp
	case ResidentAdded:
		s.Residents = append(append([]Resident{}, s.Residents...), Resident{UserID: v.UserID, Name: v.Name, MaskedEmail: v.Email})
		s.UpdatedAt = v.Timestamp
	case ResidentRemoved:
		out := make([]Resident, 0, len(s.Residents))
		for _, r := range s.Residents {
			if r.UserID != v.UserID {
				out = append(out, r)
			}
		}
		s.Residents, s.UpdatedAt = out, v.Timestamp
	case KeyAdded:
		s.Keys, s.UpdatedAt = putKey(s.Keys, Key{UUID: v.KeyUUID, IndexNumber: v.KeyIndexNumber, UserID: v.UserID}), v.Timestamp
	case KeyRemoved:
		s.Keys, s.UpdatedAt = withoutKey(s.Keys, v.KeyUUID), v.Timestamp
	case KeyWriteRequested:
		s.UpdatedAt = v.Timestamp
	case LockOpenRequested:
		s.UpdatedAt = v.Timestamp
	case LockUUIDChanged:
		s.UUID, s.UpdatedAt = v.NewUUID, v.Timestamp
	case LockActionUpdated:
		// An action's transition is the device's doing, not a change of
		// the lock: UpdatedAt stays.
		s.Actions = applyAction(s.Actions, v)
	}
	return s
}

// putKey returns a copy of keys with k in the place of the key of the same
// UUID, or appended. DecideAddKey never replaces a key, but a fold must not
// list one key twice whatever the log holds.
func putKey(keys []Key, k Key) []Key {
	out := make([]Key, 0, len(keys)+1)
	replaced := false
	for _, old := range keys {
		if old.UUID != k.UUID {
			out = append(out, old)
		} else if !replaced {
			out, replaced = append(out, k), true
		}
	}
	if !replaced {
		out = append(out, k)
	}
	return out
}

// withoutKey returns a copy of keys without the key(s) of UUID keyUUID.
func withoutKey(keys []Key, keyUUID string) []Key {
	out := make([]Key, 0, len(keys))
	for _, k := range keys {
		if k.UUID != keyUUID {
			out = append(out, k)
		}
	}
	return out
}
