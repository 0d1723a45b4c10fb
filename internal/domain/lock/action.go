// Actions: spkey's record of each device command (AddKey, RemoveKey,
// WriteKey, OpenLock) from the request to the device's result. An action
// is keyed by its requestId on the lock; its transitions are
// LockActionUpdated events on the lock's stream (spkey's extension event).
//
//	pending | queued → delivered → succeeded | failed
//	        any open status      → expired
//
// pending: the desired state is in the shadow and the device was online;
// queued: the device was offline, it gets the desired state when it comes
// back; delivered: the device fetched the shadow (get) after the request;
// succeeded or failed: the device reported the result (open, writeKey) or
// the state (keys) the request asked for; expired: no result before
// ExpiresAt. The open actions live in the lock's state (State.Actions),
// so a report is decided against them.

package lock

import (
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// TypeLockActionUpdated is the event of an action's transition.
const TypeLockActionUpdated = "LockActionUpdated"

// Action kinds: the command an action is for.
const (
	ActionOpenLock  = "OpenLock"
	ActionAddKey    = "AddKey"
	ActionRemoveKey = "RemoveKey"
	ActionWriteKey  = "WriteKey"
)

// Action statuses.
const (
	StatusPending   = "pending"
	StatusQueued    = "queued"
	StatusDelivered = "delivered"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusExpired   = "expired"
)

// Open reports whether status is one an action may still leave.
func Open(status string) bool {
	return status == StatusPending || status == StatusQueued || status == StatusDelivered
}

// MaxOpenActions bounds the open actions of one lock: a lock's device
// reports at most MaxReportedResults results of a kind, and a lock that
// does not answer must not make spkey hold without end.
const MaxOpenActions = 64

// Action is an open action in the lock's state.
type Action struct {
	RequestID string `json:"requestId"`
	Action    string `json:"action"`
	Status    string `json:"status"`
	KeyUUID   string `json:"keyUuid,omitempty"`
	// At is the Unix second the desired entry was stamped with (its "at"):
	// the device's report answers this request when it carries the same.
	At        int64  `json:"at"`
	ExpiresAt string `json:"expiresAt"`
}

// LockActionUpdated is recorded when an action is created (pending or
// queued) and at each of its transitions. Error is the device's reason for
// a failure; ExpiresAt is when an open action expires.
type LockActionUpdated struct {
	LockID         int64  `json:"lockId"`
	UUID           string `json:"uuid"`
	Timestamp      string `json:"timestamp"`
	RequestID      string `json:"requestId"`
	Action         string `json:"action"`
	Status         string `json:"status"`
	KeyUUID        string `json:"keyUuid,omitempty"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
	At             int64  `json:"at"`
	ExpiresAt      string `json:"expiresAt,omitempty"`
	Error          string `json:"error,omitempty"`
}

// applyAction folds an action's transition into the open actions.
func applyAction(actions []Action, v LockActionUpdated) []Action {
	out := make([]Action, 0, len(actions)+1)
	for _, a := range actions {
		if a.RequestID != v.RequestID {
			out = append(out, a)
		}
	}
	if Open(v.Status) {
		out = append(out, Action{RequestID: v.RequestID, Action: v.Action, Status: v.Status, KeyUUID: v.KeyUUID, At: v.At, ExpiresAt: v.ExpiresAt})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// OpenAction returns the open action requestID of the lock, if any.
func (s State) OpenAction(requestID string) (Action, bool) {
	for _, a := range s.Actions {
		if a.RequestID == requestID {
			return a, true
		}
	}
	return Action{}, false
}

// NewAction is the first record of a device command's action.
type NewAction struct {
	RequestID string
	// Command is the command's event (KeyAdded, KeyRemoved,
	// KeyWriteRequested or LockOpenRequested).
	Command domain.Event
	// At is the desired entry's stamp (Unix seconds).
	At int64
	// Online says whether the device was connected when asked.
	Online bool
	// Now is the event time; Expires when the action expires.
	Now     string
	Expires time.Time
}

// DecideNewAction returns the LockActionUpdated (pending, or queued when
// the device is offline) that opens the action of a device command. It
// returns Conflict when an open action of the lock has the same requestId
// and TooMany when the lock has MaxOpenActions open actions, and false
// for an event that is no device command.
func DecideNewAction(s State, c NewAction) (domain.Event, bool, error) {
	e := LockActionUpdated{LockID: s.LockID, UUID: s.UUID, Timestamp: c.Now, RequestID: c.RequestID, At: c.At,
		ExpiresAt: c.Expires.UTC().Format(domain.TimeLayout), Status: StatusPending}
	if !c.Online {
		e.Status = StatusQueued
	}
	switch v := c.Command.(type) {
	case KeyAdded:
		e.Action, e.KeyUUID, e.KeyIndexNumber = ActionAddKey, v.KeyUUID, v.KeyIndexNumber
	case KeyRemoved:
		e.Action, e.KeyUUID, e.KeyIndexNumber = ActionRemoveKey, v.KeyUUID, v.KeyIndexNumber
	case KeyWriteRequested:
		e.Action, e.KeyUUID, e.KeyIndexNumber = ActionWriteKey, v.KeyUUID, v.KeyIndexNumber
	case LockOpenRequested:
		e.Action = ActionOpenLock
	default:
		return nil, false, nil
	}
	if _, ok := s.OpenAction(c.RequestID); ok {
		return nil, false, domain.Errorf(domain.Conflict, "Request %s is still in progress on lock %d: use another requestId", c.RequestID, s.LockID)
	}
	if len(s.Actions) >= MaxOpenActions {
		err := domain.Errorf(domain.TooMany, "Lock %d has %d device actions in progress: wait for them to finish or expire", s.LockID, len(s.Actions))
		err.RetryAfter = 5 * time.Second
		return nil, false, err
	}
	return e, true, nil
}

// DecideReport returns the transitions a device's shadow shadowName (""
// for the classic one, or a key page) gives the lock's open actions that
// this shadow answers (ShadowOf). rep is the shadow's whole reported state after the
// request (ParseReported); fetched is true when the device read the
// shadow (a get), which delivers the pending and queued actions. An
// open or writeKey result of the same at, or the keys the device holds,
// finish them: AddKey when the device holds the key stamped with the
// action's at, RemoveKey when it does not hold the key.
func DecideReport(s State, shadowName string, rep Report, fetched bool, now string) []domain.Event {
	var evs []domain.Event
	for _, a := range s.Actions {
		if ShadowOf(a) != shadowName {
			// Another shadow of the thing answers this action.
			continue
		}
		status, reason := a.Status, ""
		switch a.Action {
		case ActionOpenLock, ActionWriteKey:
			results := rep.Open
			if a.Action == ActionWriteKey {
				results = rep.WriteKey
			}
			if r, ok := results[a.RequestID]; ok && r.At == a.At {
				status, reason = r.Result, r.Error
			}
		case ActionAddKey:
			if k, ok := rep.Keys[a.KeyUUID]; ok && k.At == a.At {
				status = StatusSucceeded
			}
		case ActionRemoveKey:
			if _, ok := rep.Keys[a.KeyUUID]; !ok {
				status = StatusSucceeded
			}
		}
		if status == a.Status && fetched && a.Status != StatusDelivered {
			status = StatusDelivered
		}
		if status == a.Status {
			continue
		}
		evs = append(evs, transition(s, a, status, reason, now))
	}
	return evs
}

// DecideExpire returns an expired transition for each open action whose
// ExpiresAt is at or before now.
func DecideExpire(s State, now time.Time) []domain.Event {
	stamp := now.UTC().Format(domain.TimeLayout)
	var evs []domain.Event
	for _, a := range s.Actions {
		if exp, err := time.Parse(domain.TimeLayout, a.ExpiresAt); err == nil && !exp.After(now) {
			evs = append(evs, transition(s, a, StatusExpired, "", stamp))
		}
	}
	return evs
}

// NextExpiry returns the earliest ExpiresAt of the lock's open actions.
func (s State) NextExpiry() (time.Time, bool) {
	var next time.Time
	for _, a := range s.Actions {
		if exp, err := time.Parse(domain.TimeLayout, a.ExpiresAt); err == nil && (next.IsZero() || exp.Before(next)) {
			next = exp
		}
	}
	return next, !next.IsZero()
}

func transition(s State, a Action, status, reason, now string) LockActionUpdated {
	e := LockActionUpdated{LockID: s.LockID, UUID: s.UUID, Timestamp: now, RequestID: a.RequestID, Action: a.Action,
		Status: status, KeyUUID: a.KeyUUID, At: a.At, Error: reason}
	if Open(status) {
		e.ExpiresAt = a.ExpiresAt
	}
	return e
}

// ShadowOf returns the shadow that carries action a's desired entry and
// the device's answer: the key's page for AddKey and RemoveKey, the
// classic shadow ("") for opens and card writes.
func ShadowOf(a Action) string {
	if a.Action == ActionAddKey || a.Action == ActionRemoveKey {
		return KeyPage(a.KeyUUID)
	}
	return ""
}

// KindOf returns the request kind (KindOpen, KindWriteKey) of an action
// whose desired entry is a one-shot request, and false for key actions
// (the desired key stays: it is the state the lock must hold).
func KindOf(action string) (string, bool) {
	switch action {
	case ActionOpenLock:
		return KindOpen, true
	case ActionWriteKey:
		return KindWriteKey, true
	}
	return "", false
}
