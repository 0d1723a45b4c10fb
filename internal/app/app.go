// Package app is the command and query layer: it authorizes a caller,
// validates input, runs the pure decide step of an aggregate inside one
// store transaction and shapes the answer. HTTP knows nothing of SQL and
// the domain knows nothing of either.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/store"
)

// Kind says how a caller authenticated.
type Kind int

// The kinds of callers.
const (
	Anonymous Kind = iota
	UserCaller
	TenantCaller
)

// Principal is the authenticated caller of one request.
type Principal struct {
	Kind   Kind
	UserID string // JWT user
	Email  string // JWT e-mail claim, if any
	// EmailVerified: the token's issuer vouches for Email (the local
	// issuer always; an outside one with email_verified: true).
	EmailVerified bool
	Phone         string // JWT phone_number claim, if any
	PhoneVerified bool   // the issuer vouches for Phone
	OrgID         string // API key's tenant
	KeyID         string
	Super         bool
	Admin         bool // passed the admin check (admin routes only)
}

func (p Principal) scope() string {
	switch p.Kind {
	case UserCaller:
		return "user:" + p.UserID
	case TenantCaller:
		return "org:" + p.OrgID
	}
	if p.Admin {
		return "admin"
	}
	return "anonymous"
}

func requireAuth(p Principal) error {
	if p.Kind == Anonymous && !p.Admin {
		return domain.Errorf(domain.Unauthorized, "Authentication required: send a Bearer JWT or an X-API-Key")
	}
	return nil
}

// Service runs commands and queries against a store.
type Service struct {
	st      *store.Store
	stripes *stripes
	now     func() time.Time
	newUUID func() string
	random  func(n int) string
	log     *slog.Logger
	chans   Channels
	safety  netsafe.Policy
	signIns signIns
	// allowUserLockCreate: user tokens may provision locks (CreateLock).
	allowUserLockCreate bool
	// replaysPerHour bounds the webhook replays one tenant starts per hour.
	replaysPerHour int
	// redeliveriesPerHour bounds the webhook redeliveries of one tenant
	// per hour.
	redeliveriesPerHour int
	// aggs is the aggregate registry by stream type (registry.go).
	aggs map[string]registered
	// waker wakes this node's live streams.
	waker Waker
	// users reads the user vault outside transactions.
	users userVault
	// shadows reads the devices' shadow message logs.
	shadows shadowLog
	// devices writes the device commands' desired states (nil: the device
	// commands answer 503).
	devices DeviceShadows
	// actions wakes the readers waiting on a device action.
	actions actionBoard
	// actionTTL and keyActionTimeout: how long an action stays open
	// (opens and card writes; keys).
	actionTTL, keyActionTimeout time.Duration
	// region and account name the things' ARNs.
	region, account string
	// node names this node in the workflow leases; workflowWake wakes its
	// runner; workflowLease and bulkStepInterval tune the runs.
	node                            string
	workflowWake                    chan struct{}
	workflowLease, bulkStepInterval time.Duration
	// devices is the node's device layer (devicecreds.go), once started.
	deviceCreds deviceSlot
}

// Channels says which operator-configured doorbell channels exist
// (ConfiguredChannels). A ring's e-mail and hook rows come from those
// channels' outbox consumers (internal/notify), registered only when
// configured.
type Channels struct {
	Email bool // an SMTP relay is configured
	Hook  bool // an outgoing notification hook is configured
}

// Options carries the outside-world functions the service needs; tests
// replace them.
type Options struct {
	Now     func() time.Time
	NewUUID func() string
	// Random returns n random alphanumeric characters (API keys).
	Random func(n int) string
	// Channels lists the configured doorbell channels.
	Channels Channels
	// Safety says which webhook URLs are acceptable (https only and public
	// addresses only, unless the operator allows more).
	Safety netsafe.Policy
	// AllowUserLockCreate lets user tokens call CreateLock (off: locks are
	// provisioned by tenants' keys and the admin).
	AllowUserLockCreate bool
	// ReplaysPerHour is how many webhook replays one tenant may start per
	// hour (0: DefaultReplaysPerHour; negative: no limit).
	ReplaysPerHour int
	// RedeliveriesPerHour is how many webhook redeliveries one tenant may
	// ask for per hour (0: DefaultRedeliveriesPerHour; negative: no
	// limit).
	RedeliveriesPerHour int
	// Waker wakes this node's live streams (nil: OpenFeed refuses them).
	Waker Waker
	// Devices is the device gateway the device commands write desired
	// states through (nil: they answer 503).
	Devices DeviceShadows
	// ActionTimeout is how long an open or card-write action waits for the
	// device's result (0: DefaultActionTimeout); KeyActionTimeout the same
	// for AddKey and RemoveKey (0: DefaultKeyActionTimeout).
	ActionTimeout, KeyActionTimeout time.Duration
	// Region and Account name the AWS-shaped ARNs spkey records (a lock's
	// thingArn), as the webhook envelopes do ("" : "local", "spkey").
	Region, Account string
	// WorkflowLease is how long a node holds a workflow run between two
	// steps (0: DefaultWorkflowLease); BulkStepInterval the pause between
	// two keys of a BulkAddKeys (0: none).
	WorkflowLease, BulkStepInterval time.Duration
}

// New returns a Service over st.
func New(st *store.Store, opt Options, log *slog.Logger) *Service {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.NewUUID == nil {
		opt.NewUUID = NewUUID
	}
	if opt.Random == nil {
		opt.Random = RandomAlnum
	}
	switch {
	case opt.ReplaysPerHour == 0:
		opt.ReplaysPerHour = DefaultReplaysPerHour
	case opt.ReplaysPerHour < 0:
		opt.ReplaysPerHour = 0
	}
	switch {
	case opt.RedeliveriesPerHour == 0:
		opt.RedeliveriesPerHour = DefaultRedeliveriesPerHour
	case opt.RedeliveriesPerHour < 0:
		opt.RedeliveriesPerHour = 0
	}
	s := &Service{st: st, now: opt.Now, newUUID: opt.NewUUID, random: opt.Random, log: log, chans: opt.Channels, safety: opt.Safety,
		replaysPerHour: opt.ReplaysPerHour, redeliveriesPerHour: opt.RedeliveriesPerHour, allowUserLockCreate: opt.AllowUserLockCreate,
		aggs: map[string]registered{}}
	s.register(builtins()...)
	s.waker, s.users, s.shadows, s.devices = opt.Waker, st, st, opt.Devices
	s.actionTTL, s.keyActionTimeout = opt.ActionTimeout, opt.KeyActionTimeout
	if s.actionTTL <= 0 {
		s.actionTTL = DefaultActionTimeout
	}
	if s.keyActionTimeout <= 0 {
		s.keyActionTimeout = DefaultKeyActionTimeout
	}
	s.region, s.account = opt.Region, opt.Account
	if s.region == "" {
		s.region = "local"
	}
	if s.account == "" {
		s.account = "spkey"
	}
	s.node, s.workflowWake = "node-"+opt.NewUUID(), make(chan struct{}, 1)
	s.workflowLease, s.bulkStepInterval = opt.WorkflowLease, opt.BulkStepInterval
	if s.workflowLease <= 0 {
		s.workflowLease = DefaultWorkflowLease
	}
	if st.Dialect() == store.Postgres {
		// SQLite has one writer already; on PostgreSQL commands run in
		// parallel, so keep one writer per aggregate inside this node and
		// leave optimistic versions to settle races between nodes.
		s.stripes = &stripes{}
	}
	return s
}

func (s *Service) stamp() string { return s.now().UTC().Format(domain.TimeLayout) }

// EventOut is the first event a command records, as save returns it:
// {type, data} with data as recorded.
type EventOut struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Call identifies one command call for the idempotency record.
type Call struct {
	// Aggregate is the stream the command writes ("lock/123"), used to
	// serialise commands on one aggregate inside this node.
	Aggregate      string
	P              Principal
	Route          string
	IdempotencyKey string
	Input          any // the decoded request, hashed to recognise a changed body
}

const maxAttempts = 8

// stripes serialises commands per aggregate within one node.
type stripes [256]sync.Mutex

func (s *stripes) lock(key string) func() {
	if s == nil || key == "" {
		return func() {}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &s[h.Sum32()%uint32(len(s))]
	m.Lock()
	return m.Unlock
}

// run executes fn in a write transaction with bounded retries on version
// conflicts, honouring the Idempotency-Key of c: a replay answers the
// stored answer (R without what PR forgets) marked replayed.
func run[R any, PR answer[R]](ctx context.Context, s *Service, c Call, fn func(ctx context.Context, tx *store.Tx) (R, error)) (R, error) {
	var zero R
	var hash string
	if c.IdempotencyKey != "" {
		if len(c.IdempotencyKey) > 255 {
			return zero, domain.InvalidField("Idempotency-Key", "Idempotency-Key must be at most 255 characters")
		}
		b, err := json.Marshal(c.Input)
		if err != nil {
			return zero, fmt.Errorf("hash request: %w", err)
		}
		sum := sha256.Sum256(append([]byte(c.Route+"\n"), b...))
		hash = hex.EncodeToString(sum[:])
	}
	scope := c.P.scope() + " " + c.Route
	unlock := s.stripes.lock(c.Aggregate)
	defer unlock()
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// Another node won the race: back off a little, with jitter.
			time.Sleep(time.Duration(attempt*attempt) * time.Duration(100+mrand.IntN(400)) * time.Microsecond)
		}
		var res R
		err := s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
			if c.IdempotencyKey != "" {
				h, resp, found, err := tx.Idempotent(ctx, scope, c.IdempotencyKey)
				if err != nil {
					return err
				}
				if found {
					if h != hash {
						return domain.Errorf(domain.Unprocessable, "Idempotency-Key was already used with a different request body")
					}
					if err := json.Unmarshal(resp, &res); err != nil {
						return fmt.Errorf("decode idempotent answer: %w", err)
					}
					PR(&res).markReplayed()
					return nil
				}
			}
			r, err := fn(ctx, tx)
			if err != nil {
				return err
			}
			res = r
			if c.IdempotencyKey != "" {
				stored := res
				PR(&stored).forget()
				b, err := json.Marshal(stored)
				if err != nil {
					return fmt.Errorf("encode idempotent answer: %w", err)
				}
				return tx.SaveIdempotent(ctx, scope, c.IdempotencyKey, hash, b, s.stamp())
			}
			return nil
		})
		var conflict *es.ConflictError
		if errors.As(err, &conflict) {
			if attempt < maxAttempts {
				continue
			}
			return res, domain.Errorf(domain.Conflict, "Too many concurrent changes to %s %s; retry the request", conflict.AggregateType, conflict.AggregateID)
		}
		return res, err
	}
}

// load reads the snapshot of one aggregate inside tx.
func load[S any](ctx context.Context, tx eventTx, a aggregate[S], id string) (S, es.Snapshot, error) {
	var st S
	snap, found, err := tx.Snapshot(ctx, a.typ, id)
	if err != nil {
		return st, snap, err
	}
	if found {
		if st, err = decodeState(a, id, snap.State, a.shared); err != nil {
			return st, snap, err
		}
	}
	return st, snap, nil
}

// read is load outside a transaction: the committed state of one
// aggregate. found is false when it has no events yet.
func read[S any](ctx context.Context, st eventReader, a aggregate[S], id string) (S, es.Snapshot, bool, error) {
	var state S
	snap, found, err := st.Snapshot(ctx, a.typ, id)
	if err != nil || !found {
		return state, snap, false, err
	}
	if state, err = decodeState(a, id, snap.State, false); err != nil {
		return state, snap, false, err
	}
	return state, snap, true, nil
}

// save appends evs after snap and stores the folded state. It returns the
// new state, the new version and the first event as a command answer.
func save[S any](ctx context.Context, tx eventTx, a aggregate[S], snap es.Snapshot, st S, evs []domain.Event, now string) (S, int64, *EventOut, error) {
	st, v, ev, _, err := saveRecs(ctx, tx, a, snap, st, evs, now)
	return st, v, ev, err
}

// saveRecs is save that also returns the stored records (with their global
// positions), for callers that queue outbox work about them.
func saveRecs[S any](ctx context.Context, tx eventTx, a aggregate[S], snap es.Snapshot, st S, evs []domain.Event, now string) (S, int64, *EventOut, []es.Record, error) {
	if len(evs) == 0 {
		return st, snap.Version, nil, nil, nil
	}
	recs := make([]es.Record, len(evs))
	var first *EventOut
	for i, e := range evs {
		typ := a.events.Name(e)
		if typ == "" {
			return st, 0, nil, nil, fmt.Errorf("encode %T: not an event of %s", e, a.typ)
		}
		data, err := json.Marshal(e)
		if err != nil {
			return st, 0, nil, nil, fmt.Errorf("encode %s: %w", typ, err)
		}
		st = a.apply(st, e)
		recs[i] = es.Record{AggregateType: a.typ, AggregateID: snap.AggregateID, Version: snap.Version + int64(i) + 1,
			Type: typ, Timestamp: now, OrgID: a.org(st), Data: data}
		if i == 0 {
			first = &EventOut{Type: typ, Data: data}
		}
	}
	state, err := json.Marshal(st)
	if err != nil {
		return st, 0, nil, nil, fmt.Errorf("encode %s state: %w", a.typ, err)
	}
	if a.shared {
		// The next command (or residents list) on this stream finds its
		// state decoded.
		states.put(a.typ, snap.AggregateID, state, st)
	}
	expected := snap.Version
	snap.OrgID, snap.State = a.org(st), state
	if err := tx.Append(ctx, expected, snap, recs); err != nil {
		return st, 0, nil, nil, err
	}
	return st, recs[len(recs)-1].Version, first, recs, nil
}
