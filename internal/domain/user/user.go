// Package user is the user aggregate. Raw e-mail addresses, phone numbers
// and names never enter it: events carry masked values, and the raw ones
// live in the user read model (the PII vault).
package user

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// AggregateType is the stream type of users in the event store.
const AggregateType = "user"

// Event type names. They are stored forever; never rename one.
const (
	TypeUserCreated            = "UserCreated"
	TypeUserEmailUpdated       = "UserEmailUpdated"
	TypeUserPhoneNumberUpdated = "UserPhoneNumberUpdated"
)

// StatusActive is the status of every user created through the API.
const StatusActive = "ACTIVE"

// State is the user as folded from its events.
type State struct {
	UserID      string `json:"userId"`
	Status      string `json:"status"`
	MaskedEmail string `json:"maskedEmail,omitempty"`
	MaskedPhone string `json:"maskedPhone,omitempty"`
	// Preferences is nil until the user first sets them (see Prefs).
	Preferences *Preferences `json:"preferences,omitempty"`
}

// Exists reports whether the user has been created.
func (s State) Exists() bool { return s.UserID != "" }

// UserCreated is recorded when a user aggregate is created.
type UserCreated struct {
	UserID string `json:"userId"`
	Status string `json:"status"`
}

// UserEmailUpdated is recorded when an e-mail is set or removed.
type UserEmailUpdated struct {
	UserID      string `json:"userId"`
	Action      string `json:"action"`
	MaskedEmail string `json:"maskedEmail,omitempty"`
	Timestamp   string `json:"timestamp"`
}

// UserPhoneNumberUpdated is recorded when a phone number is set or removed.
type UserPhoneNumberUpdated struct {
	UserID            string `json:"userId"`
	Action            string `json:"action"`
	MaskedPhoneNumber string `json:"maskedPhoneNumber,omitempty"`
	Timestamp         string `json:"timestamp"`
}

// Events is the catalogue of the user's events.
var Events = domain.NewCatalog(AggregateType,
	domain.Def[UserCreated](TypeUserCreated),
	domain.Def[UserEmailUpdated](TypeUserEmailUpdated),
	domain.Def[UserPhoneNumberUpdated](TypeUserPhoneNumberUpdated),
	domain.Def[NotificationPreferencesSet](TypeNotificationPreferencesSet),
)

// Apply returns the state after e. Unknown events leave the state as it is.
func Apply(s State, e domain.Event) State {
	switch v := e.(type) {
	case UserCreated:
		s = State{UserID: v.UserID, Status: v.Status}
	case UserEmailUpdated:
		s.MaskedEmail = v.MaskedEmail
	case UserPhoneNumberUpdated:
		s.MaskedPhone = v.MaskedPhoneNumber
	case NotificationPreferencesSet:
		p := v.Preferences
		if p.QuietHours != nil {
			q := *p.QuietHours
			p.QuietHours = &q
		}
		s.Preferences = &p
	}
	return s
}

// Create asks for a new user; Email and Phone are already normalised raw
// values (or empty) and only their masks enter the events.
type Create struct {
	UserID string
	Email  string
	Phone  string
	Now    string
}

// DecideCreate returns UserCreated plus the e-mail and phone events for the
// identifiers given, or no events when the user exists: creation is
// idempotent.
func DecideCreate(s State, c Create) ([]domain.Event, error) {
	if s.Exists() {
		return nil, nil
	}
	evs := []domain.Event{UserCreated{UserID: c.UserID, Status: StatusActive}}
	if c.Email != "" {
		evs = append(evs, UserEmailUpdated{UserID: c.UserID, Action: "set", MaskedEmail: domain.MaskEmail(c.Email), Timestamp: c.Now})
	}
	if c.Phone != "" {
		evs = append(evs, UserPhoneNumberUpdated{UserID: c.UserID, Action: "set", MaskedPhoneNumber: domain.MaskPhone(c.Phone), Timestamp: c.Now})
	}
	return evs, nil
}

// DecideUpdateEmail sets the e-mail of a user that has none. It returns
// NotFound for a missing user and Conflict when one is already set.
func DecideUpdateEmail(s State, email, now string) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "User not found")
	}
	if s.MaskedEmail != "" {
		return nil, domain.Errorf(domain.Conflict, "User already has an email")
	}
	return []domain.Event{UserEmailUpdated{UserID: s.UserID, Action: "set", MaskedEmail: domain.MaskEmail(email), Timestamp: now}}, nil
}

// DecideUpdatePhone sets (phone != "") or removes (phone == "") the phone
// number; current is the raw number on file. Setting the same number or
// removing an absent one records nothing. It returns NotFound for a missing
// user.
func DecideUpdatePhone(s State, current, phone, now string) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "User not found")
	}
	if current == phone {
		return nil, nil
	}
	if phone == "" {
		return []domain.Event{UserPhoneNumberUpdated{UserID: s.UserID, Action: "removed", Timestamp: now}}, nil
	}
	return []domain.Event{UserPhoneNumberUpdated{UserID: s.UserID, Action: "set", MaskedPhoneNumber: domain.MaskPhone(phone), Timestamp: now}}, nil
}

// CheckNames checks a user's firstName and lastName: each optional, one
// line of at most domain.MaxNameLen characters without control or
// bidirectional formatting characters.
func CheckNames(first, last string) error {
	if err := domain.CheckText("firstName", first, domain.MaxNameLen, false); err != nil {
		return err
	}
	return domain.CheckText("lastName", last, domain.MaxNameLen, false)
}
