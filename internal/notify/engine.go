package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/user"
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
	kicks    map[string]chan struct{}
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
	e := &Engine{st: st, hub: hub, cfg: cfg, log: log, channels: chans, kicks: map[string]chan struct{}{}}
	e.kicks[es.ConsumerDoorbellLive] = make(chan struct{}, 1)
	for _, c := range chans {
		e.kicks[c.Consumer()] = make(chan struct{}, 1)
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
	go func() { defer wg.Done(); e.loop(ctx, es.ConsumerDoorbellLive, nil, e.deliverLive, 1) }()
	for _, c := range e.channels {
		wg.Add(1)
		go func(c Channel) {
			defer wg.Done()
			e.loop(ctx, c.Consumer(), func(ctx context.Context, cl store.Claim) { e.deliverVia(ctx, c, cl) }, nil, e.cfg.Workers)
		}(c)
	}
	wg.Wait()
	return nil
}

// loop claims and delivers rows of consumer whenever kicked or polled,
// until ctx ends: one row at a time on up to workers goroutines (deliver),
// or each claimed batch at once (batch). Deliveries in flight finish (with
// their own timeouts) after ctx ends; their rows are recorded.
func (e *Engine) loop(ctx context.Context, consumer string, deliver func(context.Context, store.Claim), batch func(context.Context, []store.Claim), workers int) {
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
			claims, err := e.st.Claim(ctx, consumer, e.cfg.Node, e.cfg.Now(), e.cfg.Lease, n)
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
					defer func() { <-sem; wg.Done() }()
					deliver(work, cl)
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
		}
	}
}

// backoff is the delay before retry number attempt (1-based): doubling
// from RetryBase, capped at RetryMax, with "equal jitter" (half fixed, half
// random) so that retries of many rows spread out.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.cfg.RetryBase
	for i := 1; i < attempt && d < e.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, e.cfg.RetryMax)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// finish records an attempt; a retry past MaxAttempts becomes a failure.
func (e *Engine) finish(ctx context.Context, cl store.Claim, r Result, started time.Time) {
	ctx = context.WithoutCancel(ctx) // record the attempt even when stopping
	now := e.cfg.Now()
	o := store.Outcome{Status: r.Status, At: now, StatusCode: r.StatusCode, Latency: now.Sub(started)}
	if r.Err != nil {
		o.Error = r.Err.Error()
	}
	if o.Status == store.OutcomeRetry {
		if cl.Attempts+1 >= e.cfg.MaxAttempts {
			o.Status = store.StatusFailed
			o.Error = fmt.Sprintf("gave up after %d attempts: %s", cl.Attempts+1, o.Error)
		} else {
			wait := e.backoff(cl.Attempts + 1)
			if r.RetryAfter > 0 {
				wait = min(max(wait, r.RetryAfter), e.cfg.RetryMax)
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

// loader reads what deliveries need, remembering what it read: a batch of
// rows about one ring reads the event, the ring and the lock once.
type loader struct {
	st     *store.Store
	events map[int64]*es.Record
	rings  map[string]*doorbell.State
	locks  map[int64]*lock.State
	prefs  map[string]user.Preferences
}

func newLoader(st *store.Store) *loader {
	return &loader{st: st, events: map[int64]*es.Record{}, rings: map[string]*doorbell.State{}, locks: map[int64]*lock.State{}, prefs: map[string]user.Preferences{}}
}

func (l *loader) event(ctx context.Context, seq int64) (*es.Record, error) {
	if r, ok := l.events[seq]; ok {
		return r, nil
	}
	rec, found, err := l.st.Event(ctx, seq)
	if err != nil {
		return nil, err
	}
	var r *es.Record
	if found {
		r = &rec
	}
	l.events[seq] = r
	return r, nil
}

func (l *loader) ring(ctx context.Context, id string) (*doorbell.State, error) {
	if r, ok := l.rings[id]; ok {
		return r, nil
	}
	snap, found, err := l.st.Snapshot(ctx, doorbell.AggregateType, id)
	if err != nil {
		return nil, err
	}
	var r *doorbell.State
	if found {
		r = &doorbell.State{}
		if err := json.Unmarshal(snap.State, r); err != nil {
			return nil, fmt.Errorf("decode ring %s: %w", id, err)
		}
	}
	l.rings[id] = r
	return r, nil
}

func (l *loader) lock(ctx context.Context, id int64) (*lock.State, error) {
	if s, ok := l.locks[id]; ok {
		return s, nil
	}
	snap, found, err := l.st.Snapshot(ctx, lock.AggregateType, strconv.FormatInt(id, 10))
	if err != nil {
		return nil, err
	}
	s := &lock.State{}
	if found {
		if err := json.Unmarshal(snap.State, s); err != nil {
			return nil, fmt.Errorf("decode lock %d: %w", id, err)
		}
	}
	l.locks[id] = s
	return s, nil
}

// loadPrefs reads the preferences of users in one query.
func (l *loader) loadPrefs(ctx context.Context, users []string) error {
	snaps, err := l.st.SnapshotsOf(ctx, user.AggregateType, users)
	if err != nil {
		return err
	}
	for _, u := range users {
		p := user.DefaultPreferences()
		if sn, ok := snaps[u]; ok {
			var us user.State
			if err := json.Unmarshal(sn.State, &us); err != nil {
				return fmt.Errorf("decode user %s: %w", u, err)
			}
			p = us.Prefs()
		}
		l.prefs[u] = p
	}
	return nil
}

// check loads the event and ring of a row and decides whether the row is
// still wanted on channel. skip is a reason when it is not (recorded as
// skipped).
func (e *Engine) check(ctx context.Context, l *loader, cl store.Claim, channel string) (d Delivery, skip string, err error) {
	d.Claim = cl
	rec, err := l.event(ctx, cl.EventSeq)
	if err != nil || rec == nil {
		return d, "event not found", err
	}
	d.Event = *rec
	ring, err := l.ring(ctx, cl.AggregateID)
	if err != nil || ring == nil {
		return d, "ring not found", err
	}
	d.Ring = *ring
	t, ok := ring.Target(cl.Target)
	if !ok {
		return d, "not a recipient of this ring", nil
	}
	d.Resident = t
	// A resident taken off the list after the ring is not told any more.
	lk, err := l.lock(ctx, ring.LockID)
	if err != nil {
		return d, "", err
	}
	if _, ok := lk.Resident(cl.Target); !ok {
		return d, "resident removed from the lock", nil
	}
	prefs, ok := l.prefs[cl.Target]
	if !ok {
		if err := l.loadPrefs(ctx, []string{cl.Target}); err != nil {
			return d, "", err
		}
		prefs = l.prefs[cl.Target]
	}
	if !prefs.Enabled(channel) {
		return d, "channel switched off by the resident", nil
	}
	if channel != user.ChannelLive {
		// A ring somebody already answered (or everybody declined) is
		// news nobody needs by e-mail or SMS any more.
		if rec.Type == doorbell.TypeDoorbellRang && ring.Status != doorbell.StatusRinging {
			return d, "ring already " + ring.Status, nil
		}
		if q := prefs.QuietHours; q != nil {
			loc, err := time.LoadLocation(q.TimeZone)
			if err != nil {
				// Never send in quiet hours we cannot check.
				return d, "", fmt.Errorf("quiet hours: time zone %q: %w", q.TimeZone, err)
			}
			if q.Contains(e.cfg.Now().In(loc)) {
				return d, "quiet hours", nil
			}
		}
	}
	return d, "", nil
}

// prepare is check plus the recipient's contact details, for one row of a
// channel that sends somewhere (e-mail, hook).
func (e *Engine) prepare(ctx context.Context, cl store.Claim, channel string) (d Delivery, skip string, err error) {
	d, skip, err = e.check(ctx, newLoader(e.st), cl, channel)
	if err != nil || skip != "" {
		return d, skip, err
	}
	u, found, err := e.st.User(ctx, store.ByID, cl.Target)
	if err != nil {
		return d, "", err
	}
	if !found {
		return d, "user not found", nil
	}
	d.User = u
	return d, "", nil
}

func (e *Engine) deliverVia(ctx context.Context, c Channel, cl store.Claim) {
	started := e.cfg.Now()
	d, skip, err := e.prepare(ctx, cl, c.Name())
	switch {
	case err != nil:
		e.finish(ctx, cl, Result{Status: store.OutcomeRetry, Err: err}, started)
	case skip != "":
		e.finish(ctx, cl, Result{Status: store.StatusSkipped, Err: errors.New(skip)}, started)
	default:
		e.finish(ctx, cl, c.Deliver(ctx, d), started)
	}
}

// FeedData is what a live-feed entry (and an SSE event's data) holds: the
// event's own fields plus its type. A DoorbellRang's list of targeted
// residents is replaced by their number ("notified"): one resident's stream
// does not list the others.
func FeedData(rec es.Record) (json.RawMessage, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(rec.Data))
	dec.UseNumber() // large ids stay exact
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", rec.Type, err)
	}
	if rs, ok := m["residents"].([]any); ok && rec.Type == doorbell.TypeDoorbellRang {
		delete(m, "residents")
		m["notified"] = len(rs)
	}
	m["type"] = rec.Type
	return json.Marshal(m)
}

// deliverLive appends each event to its resident's feed and records the
// deliveries, all in one transaction, then wakes the residents' streams
// here and on every other node.
func (e *Engine) deliverLive(ctx context.Context, claims []store.Claim) {
	started := e.cfg.Now()
	l := newLoader(e.st)
	users := make([]string, 0, len(claims))
	for _, cl := range claims {
		users = append(users, cl.Target)
	}
	if err := l.loadPrefs(ctx, users); err != nil {
		for _, cl := range claims {
			e.finish(ctx, cl, Result{Status: store.OutcomeRetry, Err: err}, started)
		}
		return
	}
	data := map[int64]json.RawMessage{}
	var ready []store.LiveItem
	for _, cl := range claims {
		d, skip, err := e.check(ctx, l, cl, user.ChannelLive)
		if err == nil && skip == "" {
			fd, ok := data[cl.EventSeq]
			if !ok {
				fd, err = FeedData(d.Event)
				data[cl.EventSeq] = fd
			}
			if err == nil {
				ready = append(ready, store.LiveItem{Claim: cl, Kind: d.Event.Type, Data: fd})
				continue
			}
		}
		if err != nil {
			e.finish(ctx, cl, Result{Status: store.OutcomeRetry, Err: err}, started)
		} else {
			e.finish(ctx, cl, Result{Status: store.StatusSkipped, Err: errors.New(skip)}, started)
		}
	}
	if len(ready) == 0 {
		return
	}
	now := e.cfg.Now()
	var lost map[int64]bool
	var entries []store.FeedEntry
	err := e.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		var err error
		entries, lost, err = tx.DeliverLive(ctx, e.cfg.Node, now, now.Sub(started), ready)
		return err
	})
	if err != nil {
		for _, it := range ready {
			e.finish(ctx, it.Claim, Result{Status: store.OutcomeRetry, Err: err}, started)
		}
		return
	}
	for _, it := range ready {
		if lost[it.Claim.ID] {
			e.log.Warn("delivery outlived its lease; another node owns the row now", "consumer", it.Claim.Consumer, "outbox_id", it.Claim.ID)
			continue
		}
		if e.cfg.Observe != nil {
			e.cfg.Observe(it.Claim.Consumer, store.StatusDelivered, now.Sub(started))
		}
	}
	// This node's streams get the committed entries handed over (entries
	// come grouped by user, in number order).
	var wake []string
	for i := 0; i < len(entries); {
		j := i
		for j < len(entries) && entries[j].UserID == entries[i].UserID {
			j++
		}
		e.hub.Deliver(entries[i].UserID, entries[i:j])
		wake = append(wake, entries[i].UserID)
		i = j
	}
	// Other nodes' streams: one NOTIFY per 100 users (payloads stay far
	// below PostgreSQL's 8000-byte limit), naming this node so that it
	// does not wake its own streams twice.
	for len(wake) > 0 {
		n := min(len(wake), 100)
		if err := e.st.Notify(ctx, pgLive, e.cfg.Node+"|"+strings.Join(wake[:n], ",")); err != nil {
			e.log.Warn("notify other nodes of live entries", "err", err)
		}
		wake = wake[n:]
	}
}
