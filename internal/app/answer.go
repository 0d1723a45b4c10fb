package app

import (
	"encoding/json"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Event is the event of a command answer whose payload is P: its type and
// its data exactly as recorded (P's JSON; not decoded and encoded again).
type Event[P domain.Event] struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// eventOf types the first event save returned as the command's event.
func eventOf[P domain.Event](e *EventOut) *Event[P] { return (*Event[P])(e) }

// Answer is the answer of a command whose event carries payload P:
// upstream's envelope (aggregateId, version, the event or nil when nothing
// changed) and whether the command created the aggregate. Commands with
// extras answer a type embedding it. Its JSON is the Idempotency-Key
// record's form.
type Answer[P domain.Event] struct {
	Created     bool      `json:"created"`
	AggregateID string    `json:"aggregateId"`
	Version     int64     `json:"version"`
	Event       *Event[P] `json:"event"`
	// Replayed is true when the answer came from an Idempotency-Key record.
	Replayed bool `json:"-"`
}

// answer is what run needs of a command's answer R: its stored form for
// the Idempotency-Key record, and R marked as a replay.
type answer[R any] interface {
	stored() R
	replay() R
}

func (a Answer[P]) stored() Answer[P] { return a }

func (a Answer[P]) replay() Answer[P] {
	a.Replayed = true
	return a
}

// ResidentAnswer is the answer of AddResident and RemoveResident.
type ResidentAnswer[P domain.Event] struct {
	Answer[P]
	// Email is the resident's e-mail address as the caller may see it.
	Email string `json:"email,omitempty"`
}

// stored keeps no raw e-mail address: a replayed answer omits it (the
// event data is already masked).
func (a ResidentAnswer[P]) stored() ResidentAnswer[P] {
	a.Email = ""
	return a
}

func (a ResidentAnswer[P]) replay() ResidentAnswer[P] {
	a.Answer = a.Answer.replay()
	return a
}

// UserAnswer is the answer of CreateUser.
type UserAnswer[P domain.Event] struct {
	Answer[P]
	UserID string `json:"userId,omitempty"`
}

func (a UserAnswer[P]) stored() UserAnswer[P] { return a }

func (a UserAnswer[P]) replay() UserAnswer[P] {
	a.Answer = a.Answer.replay()
	return a
}

// RingAnswer is the answer of RingDoorbell: the envelope of the new ring
// stream plus the ring id, the lock and how many residents it notifies.
type RingAnswer[P domain.Event] struct {
	Answer[P]
	RingID   string `json:"ringId,omitempty"`
	LockID   int64  `json:"lockId,omitempty"`
	Notified int    `json:"notified,omitempty"`
}

func (a RingAnswer[P]) stored() RingAnswer[P] { return a }

func (a RingAnswer[P]) replay() RingAnswer[P] {
	a.Answer = a.Answer.replay()
	return a
}

// WebhookAnswer is the answer of the webhook commands (aggregateId is the
// orgId: tenants are aggregates).
type WebhookAnswer[P domain.Event] struct {
	Answer[P]
	WebhookID string `json:"webhookId,omitempty"`
	// Secret is the signing secret, only when set or rotated.
	Secret string `json:"secret,omitempty"`
	Status string `json:"status,omitempty"`
}

// stored keeps no secret: a replay after a rotation must not hand out the
// old secret (it is read with GET …/secret).
func (a WebhookAnswer[P]) stored() WebhookAnswer[P] {
	a.Secret = ""
	return a
}

func (a WebhookAnswer[P]) replay() WebhookAnswer[P] {
	a.Answer = a.Answer.replay()
	return a
}
