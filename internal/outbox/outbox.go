// Package outbox is the one outbox engine: consumers register with it,
// it decides their rows when events are appended (Route, called by the
// store inside the appending transaction), wakes them once after commit
// (here and, on PostgreSQL, on the other nodes), and delivers their rows:
// claims with leases, per-target concurrency, retries with backoff and
// jitter, attempt records, hand-backs and shutdown grace. The consumers
// (internal/notify, internal/webhook) import this package, never each
// other.
package outbox

import (
	"context"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// pgOutbox is the PostgreSQL notification channel between nodes; its
// payload is a consumer with new rows.
const pgOutbox = "spkey_outbox"

// Queue is what the engine needs of the store: claiming, recording and
// handing back rows, and the hints between nodes. *store.Store implements
// it (FOR UPDATE SKIP LOCKED on PostgreSQL).
type Queue interface {
	ClaimWith(ctx context.Context, consumer, node string, now time.Time, lease time.Duration, limit int, opt store.ClaimOptions) ([]store.Claim, error)
	Finish(ctx context.Context, c store.Claim, node string, o store.Outcome) error
	Defer(ctx context.Context, c store.Claim, node string, until time.Time) error
	Notify(ctx context.Context, channel, payload string) error
	Listen(ctx context.Context, channels []string, ready func(), fn func(channel, payload string)) error
}

// Result is a consumer's verdict on one attempt.
type Result struct {
	// Status is store.StatusDelivered, store.StatusFailed (final: do not
	// retry), store.StatusSkipped (final: nothing to send any more),
	// store.OutcomeRetry or store.OutcomeDefer (hand the row back
	// unattempted until RetryAfter).
	Status     string
	StatusCode int
	Err        error
	// RetryAfter, when > 0, is the receiver's own wish (429 Retry-After).
	RetryAfter time.Duration
	// Recorded says the consumer recorded the attempt itself, in its own
	// transaction (the live feed): the engine only counts it (Observe,
	// with Latency), or, when Err is store.ErrLeaseLost, logs the loss.
	Recorded bool
	Latency  time.Duration
}

// Policy tunes how one consumer's rows are claimed and retried. Zero
// fields take the engine's Config.
type Policy struct {
	RetryBase, RetryMax time.Duration
	// MaxAttempts bounds the attempts of one row; < 0: no bound (Horizon
	// decides).
	MaxAttempts int
	// Horizon, when > 0, gives up on a row queued longer ago than this.
	Horizon time.Duration
	Workers int
	// Ordered delivers one aggregate's rows of one target one at a time,
	// in queue order (store.ClaimOptions.Ordered).
	Ordered bool
	// PerTarget, when > 0, caps the attempts in flight per target on this
	// node, so that one slow receiver cannot take every worker. A target
	// whose latest attempt here is to be retried (no answer, 5xx, 429)
	// gets one attempt at a time, and such targets together at most half
	// the workers: receivers that hang until the timeout cannot take the
	// workers of the healthy ones, however many webhooks they have.
	PerTarget int
	// Local keeps the wake-ups of this consumer on this node (no NOTIFY to
	// the others): the node that queued the work does it, the others
	// find it when they poll.
	Local bool
}

// RouteFunc returns the targets ("" for a row without one) of the rows a
// consumer wants for the appended record rec, reading inside the
// appending transaction tx (which sees the whole append). No rows: nil.
type RouteFunc func(ctx context.Context, tx *store.Tx, rec es.Record) ([]string, error)

// Consumer is the one registration of an outbox consumer. Every part but
// Name is optional: a consumer with only Route queues rows that a node
// with its deliverer sends.
type Consumer struct {
	Name string
	// Route decides this consumer's rows for every appended event.
	Route RouteFunc
	// OnlyIfWebhook queues Route's rows only for events of a tenant with a
	// partner webhook (store.Row.OnlyIfWebhook).
	OnlyIfWebhook bool
	// Deliver makes one attempt on a claimed row; it must honour ctx.
	Deliver func(ctx context.Context, cl store.Claim) Result
	// DeliverBatch, instead of Deliver, delivers each claimed batch at
	// once (one transaction: a ring to many residents in one commit);
	// results[i] is the verdict on claims[i].
	DeliverBatch func(ctx context.Context, claims []store.Claim) []Result
	// Recorded, if set, runs after each attempt of Deliver is recorded (or
	// its row handed back) with the Result's status. It must not block.
	Recorded func(cl store.Claim, status string)
	// Job is work that is not a claimed row (a fan-out, a replay step): it
	// runs whenever the consumer is woken or polled, and again at once
	// while it reports more.
	Job func(ctx context.Context) (more bool)
	// Listen, if set, is a PostgreSQL notification channel of this
	// consumer's own (the engine listens on one connection for all);
	// Heard gets each payload.
	Listen string
	Heard  func(payload string)
	Policy Policy
}

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	Node         string        // this node's id in leases and attempts (random)
	Lease        time.Duration // how long a claimed row stays with a node (60s)
	RetryBase    time.Duration // first retry delay (2s); doubles each attempt
	RetryMax     time.Duration // longest retry delay (10m)
	MaxAttempts  int           // attempts before a row fails for good (8)
	PollInterval time.Duration // safety-net poll when no wake-up comes (2s)
	Batch        int           // rows claimed at a time (64; 8 times that for DeliverBatch, delivered in one transaction)
	Workers      int           // concurrent attempts per consumer (8)
	// ShutdownGrace is how long attempts in flight may go on after Run's
	// context ends before they are cancelled (and recorded for a retry) (5s).
	ShutdownGrace time.Duration
	Now           func() time.Time
	// Observe, if set, receives every attempt (metrics).
	Observe func(consumer, outcome string, latency time.Duration)
}

// Engine runs the registered consumers. It implements store.Router.
type Engine struct {
	q         Queue
	cfg       Config
	log       *slog.Logger
	consumers []Consumer
	byName    map[string]int
	kicks     map[string]chan struct{}
	// fresh[consumer] is set by every wake-up that may have made rows of
	// healthy targets claimable (Kick, Queued, another node, an attempt
	// that did not end in a retry); see loop.
	fresh map[string]*atomic.Bool
}

// New returns an engine over q with no consumers; Register adds them and
// Run starts it.
func New(q Queue, cfg Config, log *slog.Logger) *Engine {
	if cfg.Node == "" {
		cfg.Node = "node-" + strconv.FormatUint(mrand.Uint64(), 36)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	return &Engine{q: q, cfg: cfg, log: log, byName: map[string]int{}, kicks: map[string]chan struct{}{}, fresh: map[string]*atomic.Bool{}}
}

// Register adds consumer c; call it before Run (and before the store
// routes appends to the engine). A second registration of a name
// replaces the first.
func (e *Engine) Register(c Consumer) {
	c.Policy = e.policy(c.Policy)
	if i, ok := e.byName[c.Name]; ok {
		e.consumers[i] = c
	} else {
		e.byName[c.Name] = len(e.consumers)
		e.consumers = append(e.consumers, c)
	}
	if _, ok := e.kicks[c.Name]; !ok {
		e.kicks[c.Name] = make(chan struct{}, 1)
		e.fresh[c.Name] = &atomic.Bool{}
	}
}

func (e *Engine) policy(p Policy) Policy {
	if p.RetryBase <= 0 {
		p.RetryBase = e.cfg.RetryBase
	}
	if p.RetryMax <= 0 {
		p.RetryMax = e.cfg.RetryMax
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = e.cfg.MaxAttempts
	}
	if p.Workers <= 0 {
		p.Workers = e.cfg.Workers
	}
	return p
}

// Node returns the engine's node id.
func (e *Engine) Node() string { return e.cfg.Node }

// Now is the engine's clock (Config.Now).
func (e *Engine) Now() time.Time { return e.cfg.Now() }

// Route implements store.Router: the rows every registered consumer
// wants for rec, in registration order.
func (e *Engine) Route(ctx context.Context, tx *store.Tx, rec es.Record) ([]store.Row, error) {
	var rows []store.Row
	for i := range e.consumers {
		c := &e.consumers[i]
		if c.Route == nil {
			continue
		}
		targets, err := c.Route(ctx, tx, rec)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			rows = append(rows, store.Row{Consumer: c.Name, Target: t, OnlyIfWebhook: c.OnlyIfWebhook})
		}
	}
	return rows, nil
}

// Queued wakes the dispatchers of consumers, this node's and, on
// PostgreSQL, the other nodes' (unless a consumer's Policy is Local), by a
// NOTIFY of its own: for rows made due outside a store transaction
// (commits wake through Announce and WakeLocal). It never blocks for long.
func (e *Engine) Queued(consumers []string) {
	for _, c := range consumers {
		e.kick(c)
		if i, ok := e.byName[c]; ok && e.consumers[i].Policy.Local {
			continue
		}
		go func(c string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.q.Notify(ctx, pgOutbox, c); err != nil {
				e.log.Warn("notify other nodes", "err", err)
			}
		}(c)
	}
}

// Announce implements store.Router: the NOTIFYs that tell the other
// nodes of rows for consumers (those not Local), which the store sends
// inside the committing transaction, so they cost no round trip of their
// own and reach nobody if it rolls back. The payload names this node,
// which ignores its own.
func (e *Engine) Announce(consumers []string) (channel string, payloads []string) {
	for _, c := range consumers {
		if i, ok := e.byName[c]; ok && e.consumers[i].Policy.Local {
			continue
		}
		payloads = append(payloads, c+"|"+e.cfg.Node)
	}
	return pgOutbox, payloads
}

// WakeLocal implements store.Router: after a commit, whose NOTIFYs went
// with it (Announce), only this node's dispatchers need waking.
func (e *Engine) WakeLocal(consumers []string) {
	for _, c := range consumers {
		e.kick(c)
	}
}

// Kick wakes this node's dispatcher of consumer (no other node's).
func (e *Engine) Kick(consumer string) { e.kick(consumer) }

func (e *Engine) kick(consumer string) {
	if f, ok := e.fresh[consumer]; ok {
		f.Store(true)
	}
	e.nudge(consumer)
}

// nudge wakes consumer's loop without marking it fresh: only rows of
// failing targets may have become claimable.
func (e *Engine) nudge(consumer string) {
	if ch, ok := e.kicks[consumer]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
