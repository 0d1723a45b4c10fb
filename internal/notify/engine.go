package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// PostgreSQL notification channels between nodes.
const (
	pgOutbox = "spkey_outbox" // payload: a consumer with new rows
	pgLive   = "spkey_live"   // payload: a user whose feed grew
)

// Delivery is one claimed row with everything a channel needs to send it,
// loaded and checked by the engine.
type Delivery struct {
	store.Claim
	Event    es.Record       // the event the row is about
	Ring     doorbell.State  // the ring as it is now
	Resident doorbell.Target // the recipient, as the ring named them
	User     store.User      // the recipient's contact details now
}

// Result is a channel's verdict on one attempt.
type Result struct {
	// Status is store.StatusDelivered, store.StatusFailed (final: do not
	// retry), store.StatusSkipped (final: nothing to send any more) or
	// store.OutcomeRetry.
	Status     string
	StatusCode int
	Err        error
	// RetryAfter, when > 0, is the receiver's own wish (429 Retry-After).
	RetryAfter time.Duration
}

// Channel sends deliveries of one outbox consumer (e-mail, hook).
type Channel interface {
	// Consumer is the outbox consumer the channel serves.
	Consumer() string
	// Name is the preference channel (user.ChannelEmail, ...).
	Name() string
	// Deliver makes one attempt. It must honour ctx.
	Deliver(ctx context.Context, d Delivery) Result
}

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	Node         string        // this node's id in leases and attempts (random)
	Lease        time.Duration // how long a claimed row stays with a node (60s)
	RetryBase    time.Duration // first retry delay (2s); doubles each attempt
	RetryMax     time.Duration // longest retry delay (10m)
	MaxAttempts  int           // attempts before a row fails for good (8)
	PollInterval time.Duration // safety-net poll when no wake-up comes (2s)
	Batch        int           // rows claimed at a time (64; 512 for the live channel, delivered in one transaction)
	Workers      int           // concurrent sends per channel (8)
	// ShutdownGrace is how long attempts in flight may go on after Run's
	// context ends before they are cancelled (and recorded for a retry) (5s).
	ShutdownGrace time.Duration
	Now           func() time.Time
	// Observe, if set, receives every attempt (metrics).
	Observe func(consumer, outcome string, latency time.Duration)
}

// Engine runs the dispatchers of every channel.
type Engine struct {
	st       *store.Store
	hub      *Hub
	cfg      Config
	log      *slog.Logger
	channels []Channel
	handlers []Handler
	jobs     []job
	kicks    map[string]chan struct{}
	// fresh[consumer] is set by every wake-up that may have made rows of
	// healthy targets claimable (Kick, Queued, another node, an attempt
	// that did not end in a retry); see loop.
	fresh map[string]*atomic.Bool
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
}

// Handler delivers the rows of one outbox consumer its own way (partner
// webhooks); the engine claims, leases, retries and records.
type Handler struct {
	Consumer string
	Deliver  func(ctx context.Context, cl store.Claim) Result
	Policy   Policy
	// Recorded, if set, runs after each attempt's outcome is recorded (or
	// its row handed back) with the Result's status. It must not block.
	Recorded func(cl store.Claim, status string)
}

// job is work that is not a claimed row, run when its consumer is kicked
// or polled, again at once while it reports more.
type job struct {
	consumer string
	run      func(ctx context.Context) (more bool)
}

// Handle adds a handler; call it before Run.
func (e *Engine) Handle(h Handler) {
	e.handlers = append(e.handlers, h)
	e.addKick(h.Consumer)
}

// Every runs f whenever consumer is kicked (Kick, Queued) or polled, and
// again at once while f reports more; call it before Run.
func (e *Engine) Every(consumer string, f func(ctx context.Context) (more bool)) {
	e.jobs = append(e.jobs, job{consumer, f})
	e.addKick(consumer)
}

func (e *Engine) addKick(consumer string) {
	if _, ok := e.kicks[consumer]; !ok {
		e.kicks[consumer] = make(chan struct{}, 1)
		e.fresh[consumer] = &atomic.Bool{}
	}
}

// Kick wakes this node's dispatcher of consumer (no other node's).
func (e *Engine) Kick(consumer string) { e.kick(consumer) }

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

// New returns an engine delivering the live channel and every channel in
// chans. Run starts it.
func New(st *store.Store, hub *Hub, cfg Config, log *slog.Logger, chans ...Channel) *Engine {
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
	e := &Engine{st: st, hub: hub, cfg: cfg, log: log, channels: chans, kicks: map[string]chan struct{}{}, fresh: map[string]*atomic.Bool{}}
	e.addKick(es.ConsumerDoorbellLive)
	for _, c := range chans {
		e.addKick(c.Consumer())
	}
	return e
}

// Node returns the engine's node id.
func (e *Engine) Node() string { return e.cfg.Node }

// Queued wakes the local dispatchers of consumers and, on PostgreSQL, the
// other nodes' (app.Options.Queued). It never blocks for long.
func (e *Engine) Queued(consumers []string) {
	for _, c := range consumers {
		e.kick(c)
		go func(c string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.st.Notify(ctx, pgOutbox, c); err != nil {
				e.log.Warn("notify other nodes", "err", err)
			}
		}(c)
	}
}

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

// Run delivers until ctx ends, then waits for the attempts in flight.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.st.Listen(ctx, []string{pgOutbox, pgLive}, func() {
			// (Re)connected: whatever was announced meanwhile is found by
			// looking again.
			for c := range e.kicks {
				e.kick(c)
			}
		}, func(channel, payload string) {
			switch channel {
			case pgOutbox:
				e.kick(payload)
			case pgLive:
				node, users, _ := strings.Cut(payload, "|")
				if node == e.cfg.Node {
					return // this node woke its streams already
				}
				for _, u := range strings.Split(users, ",") {
					e.hub.Publish(u)
				}
			}
		})
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.loop(ctx, es.ConsumerDoorbellLive, nil, e.deliverLive, e.policy(Policy{Workers: 1}))
	}()
	for _, c := range e.channels {
		wg.Add(1)
		go func(c Channel) {
			defer wg.Done()
			e.loop(ctx, c.Consumer(), func(ctx context.Context, cl store.Claim) string { e.deliverVia(ctx, c, cl); return "" }, nil, e.policy(Policy{}))
		}(c)
	}
	for _, h := range e.handlers {
		wg.Add(1)
		go func(h Handler) {
			defer wg.Done()
			p := e.policy(h.Policy)
			e.loop(ctx, h.Consumer, func(ctx context.Context, cl store.Claim) string {
				started := e.cfg.Now()
				r := h.Deliver(ctx, cl)
				e.finishWith(ctx, cl, r, started, p)
				if h.Recorded != nil {
					h.Recorded(cl, r.Status)
				}
				return r.Status
			}, nil, p)
		}(h)
	}
	for _, j := range e.jobs {
		wg.Add(1)
		go func(j job) { defer wg.Done(); e.every(ctx, j) }(j)
	}
	wg.Wait()
	return nil
}

// loop claims and delivers rows of consumer whenever kicked or polled,
// until ctx ends: one row at a time on up to workers goroutines (deliver),
// or each claimed batch at once (batch). deliver returns the attempt's
// status (Result.Status) for PerTarget. Deliveries in flight finish (with
// their own timeouts) after ctx ends; their rows are recorded.
func (e *Engine) loop(ctx context.Context, consumer string, deliver func(context.Context, store.Claim) string, batch func(context.Context, []store.Claim), p Policy) {
	workers := p.Workers
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	limit := e.cfg.Batch
	if batch != nil {
		// A batch is one transaction: a ring to many residents goes out
		// in one commit.
		limit = 8 * e.cfg.Batch
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	tg := newTargets(p.PerTarget, max(1, workers/2), 2*p.RetryMax+e.cfg.Lease, e.cfg.Now)
	fresh := e.fresh[consumer]
	fresh.Store(true)
	healthyLeft := true // the last healthy claim may have left rows
	exclude := func(healthyOnly bool) []string {
		if p.PerTarget <= 0 {
			return nil
		}
		return tg.exclude(healthyOnly)
	}
	// Attempts in flight when ctx ends get a grace period to finish, then
	// their context is cancelled; either way the attempt is recorded.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		t := time.AfterFunc(e.cfg.ShutdownGrace, cancelWork)
		wg.Wait()
		t.Stop()
		cancelWork()
	}()
	for {
		for ctx.Err() == nil {
			n := limit
			if batch == nil {
				// Claim only the rows idle workers can start now: a lease
				// runs from the claim, and a row left waiting for a worker
				// could outlive it and be sent twice.
				n = 0
				select {
				case sem <- struct{}{}:
					n = 1
				case <-ctx.Done():
				}
			more:
				for n > 0 && n < limit {
					select {
					case sem <- struct{}{}:
						n++
					default:
						break more
					}
				}
				if n == 0 {
					break
				}
			}
			// Healthy targets first: rows are claimed oldest first, and a
			// failing target's backlog is usually the oldest. Then, in the
			// room left, the failing targets' rows. The healthy claim is
			// skipped when it found nothing last time and nothing since
			// could have changed that (fresh): with dead receivers, each
			// of their attempts ending would otherwise walk their queues.
			var claims []store.Claim
			var err error
			if healthyLeft || fresh.Swap(false) || p.PerTarget <= 0 {
				claims, err = e.st.ClaimWith(ctx, consumer, e.cfg.Node, e.cfg.Now(), e.cfg.Lease, n, store.ClaimOptions{Ordered: p.Ordered, Exclude: exclude(true), PerTarget: p.PerTarget})
				healthyLeft = len(claims) == n
			}
			if m := min(n-len(claims), tg.room()); err == nil && p.PerTarget > 0 && m > 0 {
				var more []store.Claim
				more, err = e.st.ClaimWith(ctx, consumer, e.cfg.Node, e.cfg.Now(), e.cfg.Lease, m, store.ClaimOptions{Ordered: p.Ordered, Exclude: exclude(false), PerTarget: min(p.PerTarget, 1)})
				claims = append(claims, more...)
			}
			if p.PerTarget > 0 && len(claims) > 0 {
				// A batch can still hold more rows of one target than the
				// cap: the excess goes back to the queue.
				kept := claims[:0]
				for _, cl := range claims {
					if !tg.take(cl.Target) {
						e.release(ctx, cl)
						continue
					}
					kept = append(kept, cl)
				}
				claims = kept
			}
			if batch == nil {
				for i := len(claims); i < n; i++ {
					<-sem // slots this claim did not use
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					e.log.Error("claim outbox rows", "consumer", consumer, "err", err)
				}
				break
			}
			if batch != nil && len(claims) > 0 {
				batch(work, claims)
			}
			for _, cl := range claims {
				if batch != nil {
					break
				}
				wg.Add(1)
				go func(cl store.Claim) {
					status := ""
					defer func() {
						if p.PerTarget > 0 {
							tg.done(cl.Target, status)
						}
						<-sem
						wg.Done()
						if p.Ordered || p.PerTarget > 0 {
							// The next row of this aggregate (Ordered) or
							// of this target (PerTarget) may be claimable
							// now: look again at once, not at the next poll.
							// After a retry its target is failing: only the
							// failing targets' claim can find anything new.
							if p.PerTarget > 0 && (status == store.OutcomeRetry || status == store.OutcomeDefer) {
								e.nudge(consumer)
							} else {
								e.kick(consumer)
							}
						}
					}()
					status = deliver(work, cl)
				}(cl)
			}
			if len(claims) < n {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kicks[consumer]:
		case <-tick.C:
			fresh.Store(true) // rows come due with time, leases run out
		}
	}
}

// targets keeps Policy.PerTarget for one consumer's loop: the attempts in
// flight per target, and the targets whose latest attempt is to be
// retried (failing), which get one attempt at a time and together at most
// budget.
type targets struct {
	mu        sync.Mutex
	perTarget int
	budget    int
	busy      map[string]int
	failing   map[string]time.Time // when each failing target last failed
	// forget is how long a failing target with nothing in flight is
	// remembered after its last failure: longer than any retry wait, so
	// only a target that is gone (a deleted webhook) is forgotten.
	forget time.Duration
	now    func() time.Time
}

func newTargets(perTarget, budget int, forget time.Duration, now func() time.Time) *targets {
	return &targets{perTarget: perTarget, budget: budget, busy: map[string]int{}, failing: map[string]time.Time{}, forget: forget, now: now}
}

// blocked reports whether target may not start another attempt; t.mu is
// held.
func (t *targets) blocked(target string, inFailing int) bool {
	if _, failing := t.failing[target]; !failing {
		return t.busy[target] >= t.perTarget
	}
	return t.busy[target] >= 1 || inFailing >= t.budget
}

// inFailing counts the attempts in flight to failing targets; t.mu is held.
func (t *targets) inFailing() int {
	n := 0
	for target := range t.failing {
		n += t.busy[target]
	}
	return n
}

// exclude lists the targets whose rows are not to be claimed now; with
// healthyOnly, every failing target too.
func (t *targets) exclude(healthyOnly bool) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for target, at := range t.failing {
		if t.busy[target] == 0 && now.Sub(at) > t.forget {
			delete(t.failing, target)
		}
	}
	in := t.inFailing()
	var out []string
	for target := range t.busy {
		if t.blocked(target, in) {
			out = append(out, target)
		}
	}
	if healthyOnly || in >= t.budget {
		for target := range t.failing {
			if t.busy[target] == 0 { // the busy ones are in already
				out = append(out, target)
			}
		}
	}
	return out
}

// room is how many more attempts failing targets may start now.
func (t *targets) room() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failing) == 0 {
		return 0
	}
	return max(0, t.budget-t.inFailing())
}

// take counts a claimed row of target in flight, unless target is blocked.
func (t *targets) take(target string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.blocked(target, t.inFailing()) {
		return false
	}
	t.busy[target]++
	return true
}

// done counts an attempt out and notes whether its target is failing: a
// retry makes it so; any other outcome but a deferral (no attempt) ends it.
func (t *targets) done(target, status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.busy[target]--; t.busy[target] <= 0 {
		delete(t.busy, target)
	}
	switch status {
	case store.OutcomeRetry:
		t.failing[target] = t.now()
	case store.OutcomeDefer:
	default:
		delete(t.failing, target)
	}
}

// every runs j whenever its consumer is kicked or polled, until ctx ends.
func (e *Engine) every(ctx context.Context, j job) {
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	for {
		for ctx.Err() == nil && j.run(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kicks[j.consumer]:
		case <-tick.C:
		}
	}
}

// release hands a claimed row back at once, unattempted.
func (e *Engine) release(ctx context.Context, cl store.Claim) { e.handBack(ctx, cl, e.cfg.Now()) }

// handBack returns a claimed row to the queue, unattempted, due at until.
func (e *Engine) handBack(ctx context.Context, cl store.Claim, until time.Time) {
	if err := e.st.Defer(context.WithoutCancel(ctx), cl, e.cfg.Node, until); err != nil && !errors.Is(err, store.ErrLeaseLost) {
		e.log.Error("hand back outbox row", "consumer", cl.Consumer, "outbox_id", cl.ID, "err", err)
	}
}

// backoff is the delay before retry number attempt (1-based): doubling
// from RetryBase, capped at RetryMax, with "equal jitter" (half fixed, half
// random) so that retries of many rows spread out.
func backoff(p Policy, attempt int) time.Duration {
	d := p.RetryBase
	for i := 1; i < attempt && d < p.RetryMax; i++ {
		d *= 2
	}
	d = min(d, p.RetryMax)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// finish records an attempt under the engine's own policy.
func (e *Engine) finish(ctx context.Context, cl store.Claim, r Result, started time.Time) {
	e.finishWith(ctx, cl, r, started, e.policy(Policy{}))
}

// finishWith records an attempt; a retry past MaxAttempts or the Horizon
// becomes a failure. A deferral records nothing and hands the row back
// until RetryAfter.
func (e *Engine) finishWith(ctx context.Context, cl store.Claim, r Result, started time.Time, p Policy) {
	ctx = context.WithoutCancel(ctx) // record the attempt even when stopping
	now := e.cfg.Now()
	if r.Status == store.OutcomeDefer {
		e.handBack(ctx, cl, now.Add(r.RetryAfter))
		return
	}
	o := store.Outcome{Status: r.Status, At: now, StatusCode: r.StatusCode, Latency: now.Sub(started)}
	if r.Err != nil {
		o.Error = r.Err.Error()
	}
	if o.Status == store.OutcomeRetry {
		queued, _ := time.Parse(domain.TimeLayout, cl.CreatedAt)
		switch {
		case p.MaxAttempts > 0 && cl.Attempts+1 >= p.MaxAttempts:
			o.Status = store.StatusFailed
			o.Error = fmt.Sprintf("gave up after %d attempts: %s", cl.Attempts+1, o.Error)
		case p.Horizon > 0 && !queued.IsZero() && now.Sub(queued) >= p.Horizon:
			o.Status = store.StatusFailed
			o.Error = fmt.Sprintf("gave up after %d attempts over %s: %s", cl.Attempts+1, p.Horizon, o.Error)
		default:
			wait := backoff(p, cl.Attempts+1)
			if r.RetryAfter > 0 {
				wait = min(max(wait, r.RetryAfter), p.RetryMax)
			}
			o.NextAttempt = now.Add(wait)
		}
	}
	if err := e.st.Finish(ctx, cl, e.cfg.Node, o); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			e.log.Warn("delivery outlived its lease; another node owns the row now", "consumer", cl.Consumer, "outbox_id", cl.ID)
		} else {
			e.log.Error("record delivery attempt", "consumer", cl.Consumer, "outbox_id", cl.ID, "err", err)
		}
		return
	}
	if e.cfg.Observe != nil {
		e.cfg.Observe(cl.Consumer, o.Status, o.Latency)
	}
	e.log.Debug("delivery attempt", "consumer", cl.Consumer, "outbox_id", cl.ID, "outcome", o.Status, "user_id", cl.Target, "err", o.Error)
}
