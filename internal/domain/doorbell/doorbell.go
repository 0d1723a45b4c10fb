// Package doorbell is the doorbell ring aggregate: one stream per ring,
// opened by DoorbellRang (recorded when a visitor, a panel or a device rings
// a lock) and closed by the first resident who answers. Decide and Apply are
// pure: time and ids come in with the command.
package doorbell

import (
	"regexp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// AggregateType is the stream type of rings in the event store.
const AggregateType = "doorbell-ring"

// Event type names. They are stored forever; never rename one.
const (
	TypeDoorbellRang     = "DoorbellRang"
	TypeDoorbellAnswered = "DoorbellAnswered"
	TypeDoorbellDeclined = "DoorbellDeclined"
)

// Ring statuses.
const (
	StatusRinging  = "ringing"
	StatusAnswered = "answered"
	StatusDeclined = "declined" // every targeted resident declined
)

// Limits on what a visitor may type.
const (
	MaxMessage     = 280
	MaxVisitorName = 80
)

// Sources of a ring. Anything matching sourceRE is accepted; these are the
// ones spkey itself uses.
const (
	SourceAPI         = "api"
	SourceVisitorPage = "visitor-page"
	SourceDevice      = "device"
)

var sourceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// Target is one resident a ring notifies, as the lock listed them.
type Target struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

// DoorbellRang is recorded when a lock's doorbell rings. Residents are the
// targeted residents at that moment (all of them, or the one asked for).
type DoorbellRang struct {
	RingID      string   `json:"ringId"`
	LockID      int64    `json:"lockId"`
	UUID        string   `json:"uuid"`
	OrgID       string   `json:"orgId,omitempty"` // the lock's tenant when it rang
	Timestamp   string   `json:"timestamp"`
	Residents   []Target `json:"residents"`
	Source      string   `json:"source"`
	VisitorName string   `json:"visitorName,omitempty"`
	Message     string   `json:"message,omitempty"`
}

// DoorbellAnswered is recorded when the first targeted resident answers.
type DoorbellAnswered struct {
	RingID    string `json:"ringId"`
	LockID    int64  `json:"lockId"`
	Timestamp string `json:"timestamp"`
	UserID    string `json:"userId"`
	Name      string `json:"name"`
}

// DoorbellDeclined is recorded when a targeted resident declines.
type DoorbellDeclined struct {
	RingID    string `json:"ringId"`
	LockID    int64  `json:"lockId"`
	Timestamp string `json:"timestamp"`
	UserID    string `json:"userId"`
	Name      string `json:"name"`
}

// State is a ring as folded from its events.
type State struct {
	RingID      string   `json:"ringId"`
	LockID      int64    `json:"lockId"`
	LockUUID    string   `json:"lockUuid"`
	OrgID       string   `json:"orgId,omitempty"`
	Residents   []Target `json:"residents"`
	Source      string   `json:"source"`
	VisitorName string   `json:"visitorName,omitempty"`
	Message     string   `json:"message,omitempty"`
	RangAt      string   `json:"rangAt"`
	Status      string   `json:"status"`
	AnsweredBy  string   `json:"answeredBy,omitempty"`
	AnsweredAt  string   `json:"answeredAt,omitempty"`
	Declined    []string `json:"declined"`
}

// Exists reports whether the ring has been recorded.
func (s State) Exists() bool { return s.RingID != "" }

// Target returns the targeted resident userID, if any.
func (s State) Target(userID string) (Target, bool) {
	for _, t := range s.Residents {
		if t.UserID == userID {
			return t, true
		}
	}
	return Target{}, false
}

func (s State) declined(userID string) bool {
	for _, d := range s.Declined {
		if d == userID {
			return true
		}
	}
	return false
}

// Events is the catalogue of a ring's events.
var Events = domain.NewCatalog(AggregateType,
	domain.Def[DoorbellRang](TypeDoorbellRang),
	domain.Def[DoorbellAnswered](TypeDoorbellAnswered),
	domain.Def[DoorbellDeclined](TypeDoorbellDeclined),
)

// Apply returns the state after e. Unknown events leave the state as it is.
func Apply(s State, e domain.Event) State {
	switch v := e.(type) {
	case DoorbellRang:
		s = State{RingID: v.RingID, LockID: v.LockID, LockUUID: v.UUID, OrgID: v.OrgID, Residents: append([]Target{}, v.Residents...),
			Source: v.Source, VisitorName: v.VisitorName, Message: v.Message, RangAt: v.Timestamp, Status: StatusRinging, Declined: []string{}}
	case DoorbellAnswered:
		s.Status, s.AnsweredBy, s.AnsweredAt = StatusAnswered, v.UserID, v.Timestamp
	case DoorbellDeclined:
		s.Declined = append(append([]string{}, s.Declined...), v.UserID)
		if s.Status == StatusRinging && len(s.Declined) >= len(s.Residents) {
			s.Status = StatusDeclined
		}
	}
	return s
}

// Ring asks to ring a lock's doorbell. ResidentUserID, when set, rings that
// resident only.
type Ring struct {
	RingID         string
	ResidentUserID string
	VisitorName    string
	Message        string
	Source         string
	Now            string
}

// Validate checks the parts of a Ring that do not depend on the lock. It
// returns Invalid with the offending field.
func (c Ring) Validate() error {
	if err := domain.CheckText("visitorName", c.VisitorName, MaxVisitorName, false); err != nil {
		return err
	}
	if err := domain.CheckText("message", c.Message, MaxMessage, true); err != nil {
		return err
	}
	if c.Source != "" && !sourceRE.MatchString(c.Source) {
		return domain.InvalidField("source", "source must be 1-32 characters of a-z, 0-9, '.', '_' or '-'")
	}
	return nil
}

// DecideRing returns DoorbellRang for lock l. It returns NotFound for a
// missing lock and Invalid for bad input or a residentUserId that is not on
// the lock's list. A lock with no residents still rings (nobody is told).
func DecideRing(l lock.State, c Ring) ([]domain.Event, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !l.Exists() {
		return nil, domain.Errorf(domain.NotFound, "Lock not found")
	}
	targets := make([]Target, 0, len(l.Residents))
	for _, r := range l.Residents {
		if c.ResidentUserID == "" || r.UserID == c.ResidentUserID {
			targets = append(targets, Target{UserID: r.UserID, Name: r.Name})
		}
	}
	if c.ResidentUserID != "" && len(targets) == 0 {
		return nil, domain.InvalidField("residentUserId", "residentUserId is not a resident of this lock")
	}
	src := c.Source
	if src == "" {
		src = SourceAPI
	}
	return []domain.Event{DoorbellRang{RingID: c.RingID, LockID: l.LockID, UUID: l.UUID, OrgID: l.OrgID, Timestamp: c.Now, Residents: targets,
		Source: src, VisitorName: c.VisitorName, Message: c.Message}}, nil
}

func respond(s State, userID string) (Target, error) {
	if !s.Exists() {
		return Target{}, domain.Errorf(domain.NotFound, "Ring not found")
	}
	t, ok := s.Target(userID)
	if !ok {
		return t, domain.Errorf(domain.Forbidden, "Only a resident this ring notified may answer it")
	}
	if s.Status == StatusAnswered {
		return t, domain.Errorf(domain.Conflict, "Ring %s was already answered at %s", s.RingID, s.AnsweredAt)
	}
	if s.declined(userID) {
		return t, domain.Errorf(domain.Conflict, "You already declined ring %s", s.RingID)
	}
	return t, nil
}

// DecideAnswer returns DoorbellAnswered: the first answer wins. It returns
// NotFound for an unknown ring, Forbidden for a user the ring did not
// target, and Conflict once the ring is answered or the user declined it.
func DecideAnswer(s State, userID, now string) ([]domain.Event, error) {
	t, err := respond(s, userID)
	if err != nil {
		return nil, err
	}
	return []domain.Event{DoorbellAnswered{RingID: s.RingID, LockID: s.LockID, Timestamp: now, UserID: userID, Name: t.Name}}, nil
}

// DecideDecline returns DoorbellDeclined, with the errors of DecideAnswer.
func DecideDecline(s State, userID, now string) ([]domain.Event, error) {
	t, err := respond(s, userID)
	if err != nil {
		return nil, err
	}
	return []domain.Event{DoorbellDeclined{RingID: s.RingID, LockID: s.LockID, Timestamp: now, UserID: userID, Name: t.Name}}, nil
}
