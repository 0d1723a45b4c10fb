package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// Device commands: the lock commands that reach the lock's device through
// its shadow (AddKey, RemoveKey, WriteKey, OpenLock), their action records
// (lock.Action) and the report side (ShadowSeen). A command's events, its
// action's first record and the desired-state change are one transaction:
// when the shadow refuses the change the command answers 502 and nothing
// is recorded (upstream's rule).

// Defaults of the action timeouts (Options.ActionTimeout,
// Options.KeyActionTimeout).
const (
	DefaultActionTimeout    = time.Minute
	DefaultKeyActionTimeout = 24 * time.Hour
	// MaxActionWait bounds ?wait= of GET /locks/{id}/actions/{requestId}.
	MaxActionWait = 30 * time.Second
)

// actionPoll is how often a waiting read looks at the store for a change
// made on another node (changes on this node wake it at once).
const actionPoll = 250 * time.Millisecond

// DeviceAnswer is the answer of a device command: the envelope, the
// action's requestId and whether the device was offline (the desired state
// then waits for it in the shadow).
type DeviceAnswer[P domain.Event] struct {
	Answer[P]
	RequestID string `json:"requestId,omitempty"`
	Offline   bool   `json:"offline"`
	// after publishes the desired state once the transaction committed.
	after func()
}

// DeviceInput is what every device command may carry besides its own
// fields: the action's id (generated when empty).
type DeviceInput struct {
	RequestID string
}

// actionBoard wakes the readers waiting on an action of this node.
type actionBoard struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next change.
func (b *actionBoard) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// changed wakes every waiter.
func (b *actionBoard) changed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// deviceCommand runs a device command on lock id: decide returns the
// command's events (none: nothing to do); the first one's desired state
// goes into the lock's shadow with a new action (pending, or queued when
// the device is offline).
//
// Without withAction (a BulkAddKeys step: the run is the record) the
// command records no action and takes no requestId.
func deviceCommand[P domain.Event](ctx context.Context, s *Service, c Call, id int64, in DeviceInput, withAction bool,
	decide func(st lock.State, now, requestID string) ([]domain.Event, error)) (DeviceAnswer[P], error) {
	type answer = DeviceAnswer[P]
	if s.devices == nil {
		return answer{}, domain.Errorf(domain.Unavailable, "This server has no device gateway")
	}
	requestID := in.RequestID
	if requestID == "" {
		requestID = s.newUUID()
	} else if err := domain.CheckText("requestId", requestID, lock.MaxRequestIDLen, false); err != nil {
		return answer{}, err
	}
	res, err := lockCommand[P](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, res *answer) ([]domain.Event, error) {
		evs, err := decide(st, now, requestID)
		if err != nil || len(evs) == 0 {
			return evs, err
		}
		t := s.now()
		at := t.Unix()
		patches, err := lock.DesiredFor(evs[0], requestID, at)
		if err != nil || len(patches) == 0 {
			return evs, err
		}
		thing := lock.ThingName(id)
		online, err := s.deviceOnline(ctx, tx, thing)
		if err != nil {
			return nil, err
		}
		if withAction {
			act, ok, err := lock.DecideNewAction(st, lock.NewAction{RequestID: requestID, Command: evs[0], At: at, Online: online, Now: now,
				Expires: t.Add(s.actionTimeout(evs[0]))})
			if err != nil {
				return nil, err
			}
			if ok {
				evs = append(evs, act)
			}
		}
		var afters []func()
		for _, p := range patches {
			after, err := s.devices.UpdateDesired(ctx, tx, thing, p.Shadow, p.Desired, requestID, at)
			if err != nil {
				var se *shadow.Error
				if errors.As(err, &se) {
					return nil, domain.Errorf(domain.BadGateway, "The device shadow of lock %d refused the change (%d: %s); nothing was recorded", id, se.Code, se.Message)
				}
				return nil, err
			}
			afters = append(afters, after)
		}
		res.Offline = !online
		if withAction {
			res.RequestID = requestID
		}
		res.after = func() {
			for _, a := range afters {
				a()
			}
		}
		return evs, nil
	})
	if err == nil && res.after != nil {
		res.after()
		s.actions.changed()
	}
	return res, err
}

// deviceOnline says whether thing is connected: to this node's broker (the
// gateway knows at once), or to another node's, as the presence table says.
func (s *Service) deviceOnline(ctx context.Context, tx *store.Tx, thing string) (bool, error) {
	if s.devices.Online(thing) {
		return true, nil
	}
	p, found, err := tx.Presence(ctx, thing)
	if err != nil {
		return false, err
	}
	return found && p.Online, nil
}

// actionTimeout is how long the action of command event e stays open: an
// open or a card write must not happen long after it was asked; a key
// stays desired whatever its action says.
func (s *Service) actionTimeout(e domain.Event) time.Duration {
	switch e.(type) {
	case lock.KeyAdded, lock.KeyRemoved:
		return s.keyActionTimeout
	}
	return s.actionTTL
}

// AddKeyInput is the body of AddKey.
type AddKeyInput struct {
	KeyUUID        string `json:"keyUuid"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
	UserID         string `json:"userId,omitempty"`
	RequestID      string `json:"requestId,omitempty"`
}

// AddKey puts a key on lock id and on its device.
func (s *Service) AddKey(ctx context.Context, c Call, id int64, in AddKeyInput) (DeviceAnswer[lock.KeyAdded], error) {
	return s.addKey(ctx, c, id, in, true)
}

func (s *Service) addKey(ctx context.Context, c Call, id int64, in AddKeyInput, withAction bool) (DeviceAnswer[lock.KeyAdded], error) {
	return deviceCommand[lock.KeyAdded](ctx, s, c, id, DeviceInput{RequestID: in.RequestID}, withAction, func(st lock.State, now, _ string) ([]domain.Event, error) {
		return lock.DecideAddKey(st, lock.AddKey{KeyUUID: in.KeyUUID, KeyIndexNumber: in.KeyIndexNumber, UserID: in.UserID, Now: now})
	})
}

// RemoveKeyInput is the body of RemoveKey.
type RemoveKeyInput struct {
	KeyUUID        string `json:"keyUuid,omitempty"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
	RequestID      string `json:"requestId,omitempty"`
}

// RemoveKey takes a key off lock id and its device.
func (s *Service) RemoveKey(ctx context.Context, c Call, id int64, in RemoveKeyInput) (DeviceAnswer[lock.KeyRemoved], error) {
	return deviceCommand[lock.KeyRemoved](ctx, s, c, id, DeviceInput{RequestID: in.RequestID}, true, func(st lock.State, now, _ string) ([]domain.Event, error) {
		return lock.DecideRemoveKey(st, lock.RemoveKey{KeyUUID: in.KeyUUID, KeyIndexNumber: in.KeyIndexNumber, Now: now})
	})
}

// WriteKeyInput is the body of WriteKey.
type WriteKeyInput struct {
	KeyUUID        string `json:"keyUuid"`
	KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
	RequestID      string `json:"requestId,omitempty"`
}

// WriteKey asks lock id's device to write a key onto a card.
func (s *Service) WriteKey(ctx context.Context, c Call, id int64, in WriteKeyInput) (DeviceAnswer[lock.KeyWriteRequested], error) {
	return deviceCommand[lock.KeyWriteRequested](ctx, s, c, id, DeviceInput{RequestID: in.RequestID}, true, func(st lock.State, now, _ string) ([]domain.Event, error) {
		return lock.DecideWriteKey(st, lock.WriteKey{KeyUUID: in.KeyUUID, KeyIndexNumber: in.KeyIndexNumber, Now: now})
	})
}

// OpenLockInput is the body of OpenLock.
type OpenLockInput struct {
	RequestID string `json:"requestId,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// OpenLock asks lock id's device to unlock. The event carries the
// requestId, the caller's or the generated one.
func (s *Service) OpenLock(ctx context.Context, c Call, id int64, in OpenLockInput) (DeviceAnswer[lock.LockOpenRequested], error) {
	return deviceCommand[lock.LockOpenRequested](ctx, s, c, id, DeviceInput{RequestID: in.RequestID}, true, func(st lock.State, now, requestID string) ([]domain.Event, error) {
		return lock.DecideOpenLock(st, lock.OpenLock{RequestID: requestID, Reason: in.Reason, Now: now})
	})
}

// ChangeLockUUID moves lock id to device newUUID: super API keys only.
// The thing (and so the shadow with its keys) stays: the new device takes
// the lock's thing credentials.
func (s *Service) ChangeLockUUID(ctx context.Context, c Call, id int64, newUUID string) (Answer[lock.LockUUIDChanged], error) {
	if err := requireAuth(c.P); err != nil {
		return Answer[lock.LockUUIDChanged]{}, err
	}
	if !(c.P.Kind == TenantCaller && c.P.Super) && !c.P.Admin {
		return Answer[lock.LockUUIDChanged]{}, domain.Errorf(domain.Forbidden, "ChangeLockUuid needs a super API key")
	}
	return lockCommand[lock.LockUUIDChanged](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, _ *Answer[lock.LockUUIDChanged]) ([]domain.Event, error) {
		evs, err := lock.DecideChangeUUID(st, newUUID, now)
		if err != nil {
			return nil, err
		}
		u := evs[0].(lock.LockUUIDChanged).NewUUID
		if other, taken, err := tx.LockByDevice(ctx, u); err != nil {
			return nil, err
		} else if taken && other != lockKey(id) {
			return nil, domain.Errorf(domain.Conflict, "Another lock already has device uuid %s", u)
		}
		return evs, nil
	})
}

// ShadowSeen is the gateway's observer (devices.Observer): a request the
// gateway accepted on a lock's classic shadow or one of its key pages
// moves the lock's open actions that shadow answers (lock.DecideReport),
// in the request's transaction. A finished
// open or card write leaves the desired state.
func (s *Service) ShadowSeen(ctx context.Context, tx *store.Tx, thing, shadowName string, doc shadow.Document, fetched bool, now time.Time) (func(), error) {
	id, ok := lock.LockIDOfThing(thing)
	if !ok || (shadowName != "" && !lock.IsKeyPage(shadowName)) {
		return nil, nil
	}
	st, snap, err := load(ctx, tx, lockAgg, lockKey(id))
	if err != nil || !st.Exists() {
		return nil, err
	}
	if !fetched {
		if err := s.shadowUpdated(ctx, tx, st, thing, shadowName, doc, now); err != nil {
			return nil, err
		}
	}
	if len(st.Actions) == 0 && (fetched || shadowName != "") {
		return nil, nil // no action to move, and no press (a report of the classic shadow)
	}
	reported, err := json.Marshal(doc.Reported)
	if err != nil {
		return nil, fmt.Errorf("reported state of %s: %w", thing, err)
	}
	rep, err := lock.ParseReported(reported)
	if err != nil {
		// A get of a shadow reported before the layout was checked: it
		// says nothing (an empty report would finish every RemoveKey).
		return nil, nil
	}
	if !fetched && shadowName == "" {
		if err := s.devicePress(ctx, tx, st, rep.Doorbell, now); err != nil {
			return nil, err
		}
	}
	stamp := now.UTC().Format(domain.TimeLayout)
	evs := lock.DecideReport(st, shadowName, rep, fetched, stamp)
	return s.recordTransitions(ctx, tx, id, snap, st, evs, now)
}

// recordTransitions appends action transitions to lock id and takes the
// finished one-shot requests out of the desired and reported states. It returns what to
// run after the commit.
func (s *Service) recordTransitions(ctx context.Context, tx *store.Tx, id int64, snap es.Snapshot, st lock.State, evs []domain.Event, now time.Time) (func(), error) {
	if len(evs) == 0 {
		return nil, nil
	}
	stamp := now.UTC().Format(domain.TimeLayout)
	if _, _, _, err := save(ctx, tx, lockAgg, snap, st, evs, stamp); err != nil {
		return nil, err
	}
	clear := map[string]map[string]any{}
	for _, e := range evs {
		t, ok := e.(lock.LockActionUpdated)
		if !ok || lock.Open(t.Status) {
			continue
		}
		if kind, ok := lock.KindOf(t.Action); ok {
			if clear[kind] == nil {
				clear[kind] = map[string]any{}
			}
			clear[kind][t.RequestID] = nil
		}
	}
	var publish func()
	if len(clear) > 0 && s.devices != nil {
		patch, err := json.Marshal(clear)
		if err != nil {
			return nil, fmt.Errorf("clear finished requests of lock %d: %w", id, err)
		}
		// Out of desired and of reported at once: the lock has nothing
		// more to report about a request spkey has recorded.
		if publish, err = s.devices.UpdateState(ctx, tx, lock.ThingName(id), "", patch, patch, now.Unix()); err != nil {
			return nil, err
		}
	}
	return func() {
		if publish != nil {
			publish()
		}
		s.actions.changed()
	}, nil
}

// ExpireActions expires the open actions due at now, up to limit locks
// at a time; it returns how many locks it changed.
func (s *Service) ExpireActions(ctx context.Context, now time.Time, limit int) (int, error) {
	due, err := s.st.DueLockActions(ctx, now, limit)
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, key := range due {
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			continue
		}
		var after func()
		for attempt := 1; ; attempt++ {
			err = s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				st, snap, err := load(ctx, tx, lockAgg, key)
				if err != nil {
					return err
				}
				after, err = s.recordTransitions(ctx, tx, id, snap, st, lock.DecideExpire(st, now), now)
				return err
			})
			var conflict *es.ConflictError
			if (errors.As(err, &conflict) || errors.Is(err, store.ErrShadowMoved)) && attempt < maxAttempts {
				continue
			}
			break
		}
		if err != nil {
			return changed, fmt.Errorf("expire actions of lock %d: %w", id, err)
		}
		if after != nil {
			after()
			changed++
		}
	}
	return changed, nil
}

// RunActionExpiry expires due actions every interval until ctx ends.
func (s *Service) RunActionExpiry(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := s.ExpireActions(ctx, s.now(), 100)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("expire device actions", "err", err)
				}
				break
			}
			if n < 100 {
				break
			}
		}
	}
}

// ActionView is one action of a lock.
type ActionView struct {
	store.LockAction
}

// LockAction returns action requestID of lock id to a caller authorized
// on the lock. With wait > 0 it holds the answer until the action leaves
// pending, queued and delivered, or wait has passed (at most
// MaxActionWait), or ctx ends.
func (s *Service) LockAction(ctx context.Context, p Principal, id int64, requestID string, wait time.Duration) (ActionView, error) {
	if _, err := s.Lock(ctx, p, id); err != nil {
		return ActionView{}, err
	}
	if requestID == "" || len(requestID) > 4*lock.MaxRequestIDLen {
		return ActionView{}, domain.Errorf(domain.NotFound, "Action not found on lock %d", id)
	}
	if wait > MaxActionWait {
		wait = MaxActionWait
	}
	deadline := time.Now().Add(wait)
	key := lockKey(id)
	for {
		ch := s.actions.wait()
		a, found, err := s.st.LockAction(ctx, key, requestID)
		if err != nil {
			return ActionView{}, err
		}
		if !found {
			return ActionView{}, domain.Errorf(domain.NotFound, "Action %s not found on lock %d", requestID, id)
		}
		left := time.Until(deadline)
		if !lock.Open(a.Status) || left <= 0 {
			return ActionView{LockAction: a}, nil
		}
		poll := time.NewTimer(min(left, actionPoll))
		select {
		case <-ch:
		case <-poll.C:
		case <-ctx.Done():
			poll.Stop()
			return ActionView{LockAction: a}, nil
		}
		poll.Stop()
	}
}
