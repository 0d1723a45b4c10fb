// Package notify delivers doorbell notifications: one dispatcher per
// channel claims its outbox rows (live feed, e-mail, outgoing hook),
// delivers, retries with backoff and records every attempt. The Hub wakes
// the live streams of this node when a user's feed grows.
package notify

import "sync"

// Hub tells the live streams open on this node that a user's feed has new
// entries. A wake-up carries no data: a stream re-reads the feed from its
// last entry, so a missed or doubled wake-up loses nothing.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[chan struct{}]struct{}{}} }

// Subscribe returns a channel that receives a value after each Publish for
// userID (wake-ups coalesce while the reader is busy) and a cancel func that
// must be called when the stream ends.
func (h *Hub) Subscribe(userID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	m := h.subs[userID]
	if m == nil {
		m = map[chan struct{}]struct{}{}
		h.subs[userID] = m
	}
	m[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[userID], ch)
		if len(h.subs[userID]) == 0 {
			delete(h.subs, userID)
		}
		h.mu.Unlock()
	}
}

// Publish wakes every stream of userID on this node.
func (h *Hub) Publish(userID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[userID] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// Streams returns how many streams are open on this node (a gauge).
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
