package lock

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// Create asks for a new lock. OrgID, when set, assigns it to a tenant in
// the same step (a lock created with a tenant's API key belongs to it).
type Create struct {
	LockID       int64
	UUID         string
	SerialNumber string
	OwnerID      string
	Keys         []Key
	OrgID        string
	// ThingName and ThingArn, when set, name the lock's device thing (see
	// ThingName and ThingArn).
	ThingName string
	ThingArn  string
	Now       string
}

// DecideCreate returns LockCreated (and OrganizationSet when the command
// carries an org) for a new lock, and no events when it already exists:
// creation is idempotent.
func DecideCreate(s State, c Create) ([]domain.Event, error) {
	if s.Exists() {
		return nil, nil
	}
	keys := c.Keys
	if keys == nil {
		keys = []Key{}
	}
	evs := []domain.Event{LockCreated{LockID: c.LockID, UUID: c.UUID, SerialNumber: c.SerialNumber,
		Keys: keys, OwnerID: c.OwnerID, Timestamp: c.Now, ThingName: c.ThingName, ThingArn: c.ThingArn}}
	if c.OrgID != "" {
		evs = append(evs, OrganizationSet{LockID: c.LockID, UUID: c.UUID, Timestamp: c.Now, OrgID: c.OrgID})
	}
	return evs, nil
}

func notFound(s State) error {
	if !s.Exists() {
		return domain.Errorf(domain.NotFound, "Lock not found")
	}
	return nil
}

// DecideSetOwner returns OwnerSet, or nothing when userID already owns it.
// It returns NotFound for a missing lock.
func DecideSetOwner(s State, userID, now string) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if s.OwnerID == userID {
		return nil, nil
	}
	return []domain.Event{OwnerSet{LockID: s.LockID, UUID: s.UUID, Timestamp: now, UserID: userID}}, nil
}

// DecideSetOrganization returns OrganizationSet, or nothing when the lock
// already belongs to orgID. It returns NotFound for a missing lock.
func DecideSetOrganization(s State, orgID, now string) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if s.OrgID == orgID {
		return nil, nil
	}
	return []domain.Event{OrganizationSet{LockID: s.LockID, UUID: s.UUID, Timestamp: now, OrgID: orgID}}, nil
}

// CheckResidentName checks a resident's name: required, one line of at most
// domain.MaxNameLen characters without control or bidirectional formatting
// characters (it is shown on the public doorbell page and copied into
// every ring).
func CheckResidentName(name string) error {
	if name == "" {
		return domain.InvalidField("name", "name is required")
	}
	return domain.CheckText("name", name, domain.MaxNameLen, false)
}

// DecideAddResident returns ResidentAdded. It returns NotFound for a missing
// lock and Invalid for a bad name or when the user is already on the list.
func DecideAddResident(s State, userID, name, maskedEmail, now string) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if err := CheckResidentName(name); err != nil {
		return nil, err
	}
	if _, ok := s.Resident(userID); ok {
		return nil, domain.Errorf(domain.Invalid, "Resident already exists on this lock")
	}
	return []domain.Event{ResidentAdded{LockID: s.LockID, UUID: s.UUID, Timestamp: now, UserID: userID, Name: name, Email: maskedEmail}}, nil
}

// DecideRemoveResident returns ResidentRemoved. It returns NotFound for a
// missing lock and Invalid when the user is not on the list.
func DecideRemoveResident(s State, userID, now string) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	r, ok := s.Resident(userID)
	if !ok {
		return nil, domain.Errorf(domain.Invalid, "Resident not found on this lock")
	}
	return []domain.Event{ResidentRemoved{LockID: s.LockID, UUID: s.UUID, Timestamp: now, UserID: userID, Email: r.MaskedEmail}}, nil
}
