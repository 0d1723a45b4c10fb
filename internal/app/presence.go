package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// Device presence: a device's connects and disconnects, as the node's
// broker (or an external broker's presence topic) reports them, become the
// thing's device_presence row (online, lastSeen: what GET
// /locks/{id}/basic-info and /details show, on every node) and, for a
// thing that is an existing lock, the partner-visible events
// LockDeviceConnected and LockDeviceDisconnected on the lock's stream.
//
// Bounding the noise: the events alternate (the row remembers what they
// last announced), and a LockDeviceConnected is recorded at most once per
// thing and PresenceWindow; a LockDeviceDisconnected always follows the
// connected one at once. A device flapping therefore writes at most one
// connected/disconnected pair per window; its connects inside the window
// only move the row, and once the window has passed the row's state is
// announced if it still differs (a timer of the node). Reports are
// queued and coalesced per thing (the latest wins), so a broker's
// presence callback never waits for the store and the queue is bounded by
// the number of things.

// DefaultPresenceWindow is PresenceRecorder's window when none is given.
const DefaultPresenceWindow = time.Minute

// presenceTimeout bounds the handling of one thing's report.
const presenceTimeout = 10 * time.Second

// presenceStore is what presence needs of the store outside a
// transaction: the committed row (reads, on any node) and the reset of a
// node's rows. store.Store implements it.
type presenceStore interface {
	Presence(ctx context.Context, thing string) (store.DevicePresence, bool, error)
	ResetNodePresence(ctx context.Context, node, now string) ([]string, error)
}

var _ presenceStore = (*store.Store)(nil)

// PresenceView is a lock's device presence as the lock routes show it.
type PresenceView struct {
	// Online is whether the device is connected.
	Online bool
	// LastSeen is when it last connected or disconnected; "": never seen.
	LastSeen string
}

// LockPresence returns the presence of the device of v, a lock that Lock
// returned (and so authorized for the caller). A lock whose device was
// never seen is offline with no LastSeen. It returns the store's error.
func (s *Service) LockPresence(ctx context.Context, v LockView) (PresenceView, error) {
	var r presenceStore = s.st
	p, found, err := r.Presence(ctx, lock.ThingName(v.State.LockID))
	if err != nil || !found {
		return PresenceView{}, err
	}
	return PresenceView{Online: p.Online, LastSeen: p.LastSeen}, nil
}

// presenceReport is one queued report of a thing; report false: only
// announce what the row says (a window has passed, or a reset).
type presenceReport struct {
	report bool
	online bool
	at     time.Time
}

// PresenceRecorder records the presence reports of one node's broker.
// NewPresenceRecorder makes it, Start starts it, Seen queues a report,
// Close drains the queue and stops it.
type PresenceRecorder struct {
	s      *Service
	node   string
	window time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]presenceReport
	timers  map[string]*time.Timer
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// NewPresenceRecorder returns the recorder of node's reports: node names
// the node holding the connections (stable across its restarts; "" for an
// external broker, whose connections no node holds), window bounds the
// events (0: DefaultPresenceWindow). A nil log discards its records.
func NewPresenceRecorder(s *Service, node string, window time.Duration, log *slog.Logger) *PresenceRecorder {
	if window <= 0 {
		window = DefaultPresenceWindow
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PresenceRecorder{s: s, node: node, window: window, log: log,
		pending: map[string]presenceReport{}, timers: map[string]*time.Timer{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start sets offline the things this node held online in its last run
// (their connections ended with it; lastSeen is kept) and queues their
// announcements, then starts the recorder's worker. It returns the
// store's error, and then starts nothing.
func (r *PresenceRecorder) Start(ctx context.Context) error {
	if r.node != "" {
		things, err := r.s.st.ResetNodePresence(ctx, r.node, r.s.now().UTC().Format(domain.TimeLayout))
		if err != nil {
			return fmt.Errorf("presence: %w", err)
		}
		for _, t := range things {
			r.queue(t, presenceReport{})
		}
	}
	go r.run()
	return nil
}

// Seen queues that thing went online or offline at at; it never waits
// for the store. After Close it drops the report.
func (r *PresenceRecorder) Seen(thing string, online bool, at time.Time) {
	r.queue(thing, presenceReport{report: true, online: online, at: at})
}

func (r *PresenceRecorder) queue(thing string, rep presenceReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.log.Warn("presence: report after close dropped", "thing", thing, "online", rep.online)
		return
	}
	// The latest report wins; an announcement never hides a report.
	if old, ok := r.pending[thing]; !ok || rep.report || !old.report {
		r.pending[thing] = rep
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close records the reports queued so far (a broker that closed first has
// queued its devices' disconnects), stops the window timers and waits for
// the worker. Reports after Close are dropped.
func (r *PresenceRecorder) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for t, tm := range r.timers {
		tm.Stop()
		delete(r.timers, t)
	}
	r.mu.Unlock()
	close(r.stop)
	<-r.done
}

func (r *PresenceRecorder) run() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
		case <-r.stop:
			r.drain()
			return
		}
		r.drain()
	}
}

// drain records every queued report.
func (r *PresenceRecorder) drain() {
	for {
		r.mu.Lock()
		batch := r.pending
		r.pending = map[string]presenceReport{}
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for thing, rep := range batch {
			retry, err := r.record(thing, rep)
			if err != nil {
				r.log.Error("presence: record failed", "thing", thing, "online", rep.online, "err", err)
				continue
			}
			if !retry.IsZero() {
				r.later(thing, retry)
			}
		}
	}
}

// later queues thing's announcement at t, once.
func (r *PresenceRecorder) later(thing string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.timers[thing] != nil {
		return
	}
	r.timers[thing] = time.AfterFunc(time.Until(t), func() {
		r.mu.Lock()
		delete(r.timers, thing)
		r.mu.Unlock()
		r.queue(thing, presenceReport{})
	})
}

// record writes one report in a transaction, again on a conflict. retry
// is when a LockDeviceConnected held back by the window may be recorded
// (zero: nothing held back).
func (r *PresenceRecorder) record(thing string, rep presenceReport) (retry time.Time, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err = r.s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
			retry, err = r.apply(ctx, tx, thing, rep)
			return err
		})
		var conflict *es.ConflictError
		if errors.As(err, &conflict) && attempt < maxAttempts {
			continue
		}
		return retry, err
	}
}

// apply moves thing's row by rep and records the lock event it calls for.
func (r *PresenceRecorder) apply(ctx context.Context, tx *store.Tx, thing string, rep presenceReport) (time.Time, error) {
	row, found, err := tx.Presence(ctx, thing)
	if err != nil {
		return time.Time{}, err
	}
	t := r.s.now()
	now := t.UTC().Format(domain.TimeLayout)
	switch {
	case !rep.report && !found:
		return time.Time{}, nil
	case rep.report && rep.online:
		row.Online, row.Node, row.LastSeen = true, r.node, rep.at.UTC().Format(domain.TimeLayout)
	case rep.report && found && row.Node != r.node:
		// Another node holds the thing's latest connection: this node's
		// older one ending does not make it offline.
		return time.Time{}, nil
	case rep.report:
		row.Online, row.Node, row.LastSeen = false, r.node, rep.at.UTC().Format(domain.TimeLayout)
	}
	row.Thing, row.UpdatedAt = thing, now
	var retry time.Time
	if id, ok := lock.LockIDOfThing(thing); ok && row.Online != row.Announced {
		announce := true
		if row.Online && row.ConnectedAt != "" {
			if last, err := time.Parse(domain.TimeLayout, row.ConnectedAt); err == nil && t.Before(last.Add(r.window)) {
				announce, retry = false, last.Add(r.window)
			}
		}
		if announce {
			st, snap, err := load(ctx, tx, lockAgg, lockKey(id))
			if err != nil {
				return time.Time{}, err
			}
			if evs := lock.DecidePresence(st, row.Online, now); len(evs) > 0 {
				if _, _, _, err := save(ctx, tx, lockAgg, snap, st, evs, now); err != nil {
					return time.Time{}, err
				}
			}
			// A thing that is no lock (yet) has nothing to announce: its
			// row remembers the state as told all the same.
			row.Announced = row.Online
			if row.Online {
				row.ConnectedAt = now
			}
		}
	}
	return retry, tx.PutPresence(ctx, row)
}
