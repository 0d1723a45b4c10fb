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

// answer is what run needs of a pointer to a command's answer R: to
// forget what its Idempotency-Key record must not keep, and to mark it a
// replay.
type answer[R any] interface {
	*R
	forget()
	markReplayed()
}

// forget keeps everything: the envelope holds no secret.
func (a *Answer[P]) forget() {}

func (a *Answer[P]) markReplayed() { a.Replayed = true }

// envelope is the envelope of an answer, with or without extras.
func (a *Answer[P]) envelope() *Answer[P] { return a }

// enveloped is answer for commands that fill in the envelope of R, whose
// event carries payload P.
type enveloped[R any, P domain.Event] interface {
	answer[R]
	envelope() *Answer[P]
}

// ResidentAnswer is the answer of AddResident and RemoveResident.
type ResidentAnswer[P domain.Event] struct {
	Answer[P]
	// Email is the resident's e-mail address as the caller may see it.
	Email string `json:"email,omitempty"`
}

// forget drops the raw e-mail address: a replayed answer omits it (the
// event data is already masked).
func (a *ResidentAnswer[P]) forget() { a.Email = "" }

// UserAnswer is the answer of CreateUser.
type UserAnswer[P domain.Event] struct {
	Answer[P]
	UserID string `json:"userId,omitempty"`
}

// RingAnswer is the answer of RingDoorbell: the envelope of the new ring
// stream plus the ring id, the lock and how many residents it notifies.
type RingAnswer[P domain.Event] struct {
	Answer[P]
	RingID   string `json:"ringId,omitempty"`
	LockID   int64  `json:"lockId,omitempty"`
	Notified int    `json:"notified,omitempty"`
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

// forget drops the secret: a replay after a rotation must not hand out the
// old secret (it is read with GET …/secret).
func (a *WebhookAnswer[P]) forget() { a.Secret = "" }
