// Package notify delivers doorbell notifications as outbox consumers (one
// per channel: live feed, e-mail, outgoing hook): it decides each ring's
// rows (Rows) and delivers them (Register); internal/outbox claims,
// retries and records every attempt. The Hub wakes the live streams of
// this node when a user's feed grows.
package notify

import (
	"sync"

	"github.com/spkey-dev/spkey/internal/store"
)

// maxPending bounds what a slow stream's mailbox holds; past it the
// stream reads the feed from the database instead.
const maxPending = 256

// Hub tells the live streams open on this node that a user's feed has new
// entries. Entries delivered on this node are handed over with the wake-up
// (Deliver), so a stream need not read back what was just written; a bare
// wake-up (Publish, e.g. from another node) makes it read the feed. Either
// way the feed in the database is the truth: a missed or doubled wake-up
// loses nothing.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[*Sub]struct{}
}

// Sub is one stream's subscription: a wake-up channel and a mailbox of
// committed entries.
type Sub struct {
	c       chan struct{}
	mu      sync.Mutex
	pending []store.FeedEntry
	dropped bool
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[*Sub]struct{}{}} }

// Subscribe registers a stream of userID. The cancel func must be called
// when the stream ends.
func (h *Hub) Subscribe(userID string) (*Sub, func()) {
	s := &Sub{c: make(chan struct{}, 1)}
	h.mu.Lock()
	m := h.subs[userID]
	if m == nil {
		m = map[*Sub]struct{}{}
		h.subs[userID] = m
	}
	m[s] = struct{}{}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		delete(h.subs[userID], s)
		if len(h.subs[userID]) == 0 {
			delete(h.subs, userID)
		}
		h.mu.Unlock()
	}
}

// Wake is the channel that receives a value after each Publish or Deliver
// for the user (wake-ups coalesce while the reader is busy).
func (s *Sub) Wake() <-chan struct{} { return s.c }

// Take returns the entries handed over since the last Take, oldest first,
// or nil when there are none or some were dropped (then the caller reads
// the feed).
func (s *Sub) Take() []store.FeedEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, dropped := s.pending, s.dropped
	s.pending, s.dropped = nil, false
	if dropped {
		return nil
	}
	return out
}

func (s *Sub) wake() {
	select {
	case s.c <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Publish wakes every stream of userID on this node; they read the feed.
func (h *Hub) Publish(userID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[userID] {
		s.mu.Lock()
		s.dropped = true // whatever is pending may have a gap before it
		s.pending = nil
		s.mu.Unlock()
		s.wake()
	}
}

// Deliver hands committed entries of userID (in number order) to every
// stream of the user on this node and wakes them.
func (h *Hub) Deliver(userID string, entries []store.FeedEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[userID] {
		s.mu.Lock()
		if !s.dropped {
			if len(s.pending)+len(entries) > maxPending {
				s.pending, s.dropped = nil, true
			} else {
				s.pending = append(s.pending, entries...)
			}
		}
		s.mu.Unlock()
		s.wake()
	}
}
