package app

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// FeedEntry is one entry of a user's live feed as a stream sends it.
type FeedEntry struct {
	N    int64           // the per-user entry number (the SSE id)
	Kind string          // the event type: DoorbellRang, DoorbellAnswered, DoorbellDeclined
	Data json.RawMessage // the event's JSON with its type
}

// Subscription is one live stream's wake-ups on this node, with the
// entries handed over with them (notify.Sub).
type Subscription interface {
	Wake() <-chan struct{}
	Take() []store.FeedEntry
}

// Waker wakes the live streams of a user on this node (notify.Hub, through
// WakerOf).
type Waker interface {
	Subscribe(userID string) (Subscription, func())
}

// WakerOf makes a Waker of a hub's Subscribe that returns its own
// subscription type.
func WakerOf[S Subscription](subscribe func(userID string) (S, func())) Waker {
	return wakerFunc(func(userID string) (Subscription, func()) { return subscribe(userID) })
}

type wakerFunc func(userID string) (Subscription, func())

func (f wakerFunc) Subscribe(userID string) (Subscription, func()) { return f(userID) }

// errFeedOff: the server runs no live streams (no Waker).
var errFeedOff = errors.New("live stream not configured")

// FeedPage is how many entries one read of the feed returns at most.
const FeedPage = 100

// FeedOptions says how a live stream starts and reads.
type FeedOptions struct {
	// Resume is the event id to resume after ("0" replays the whole feed);
	// "" starts after the feed's current head.
	Resume string
	// Admit runs once the caller is authorized, before anything else: it
	// may refuse the stream (a limit); release runs when the feed closes.
	Admit func() (release func(), err error)
	// Read runs each database read of the stream (a bound on concurrent
	// reads); nil runs them directly.
	Read func(ctx context.Context, read func(ctx context.Context) error) error
}

// LiveFeed is one open live stream of a user's feed.
type LiveFeed struct {
	s      *Service
	sub    Subscription
	close  func()
	read   func(ctx context.Context, read func(ctx context.Context) error) error
	userID string
	org    string // the tenant whose entries the caller sees ("" = all)
	last   int64
}

// OpenFeed opens p's live stream of userID's feed: it authorizes p
// (AuthorizeUserStream), admits the stream, subscribes to the feed's
// wake-ups and places the stream after opt.Resume. Close must be called
// when the stream ends.
func (s *Service) OpenFeed(ctx context.Context, p Principal, userID string, opt FeedOptions) (*LiveFeed, error) {
	if s.waker == nil {
		return nil, errFeedOff
	}
	if err := s.AuthorizeUserStream(ctx, p, userID); err != nil {
		return nil, err
	}
	release := func() {}
	if opt.Admit != nil {
		r, err := opt.Admit()
		if err != nil {
			return nil, err
		}
		release = r
	}
	if opt.Read == nil {
		opt.Read = func(ctx context.Context, read func(ctx context.Context) error) error { return read(ctx) }
	}
	// Subscribe before reading the head: an entry added in between wakes
	// the stream instead of being skipped.
	sub, unsubscribe := s.waker.Subscribe(userID)
	f := &LiveFeed{s: s, sub: sub, close: func() { unsubscribe(); release() }, read: opt.Read, userID: userID, org: FeedScope(p)}
	if opt.Resume != "" {
		n, err := strconv.ParseInt(opt.Resume, 10, 64)
		if err != nil || n < 0 {
			f.Close()
			return nil, domain.InvalidField("Last-Event-ID", "Last-Event-ID (or after) must be an event id from this stream")
		}
		f.last = n
		return f, nil
	}
	err := f.read(ctx, func(ctx context.Context) (err error) {
		f.last, err = s.st.FeedHead(ctx, userID)
		return err
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Wake receives a value when the feed may have new entries.
func (f *LiveFeed) Wake() <-chan struct{} { return f.sub.Wake() }

// Close ends the subscription and releases the stream's admission.
func (f *LiveFeed) Close() { f.close() }

// Next returns the entries after the last one it returned. With handed
// set (after a wake-up) it uses the entries handed over with the wake-up
// when they follow without a gap, and reads the feed otherwise. more is
// true when a full page was read: call again at once.
func (f *LiveFeed) Next(ctx context.Context, handed bool) (entries []FeedEntry, more bool, err error) {
	var rows []store.FeedEntry
	var upTo int64
	readDB := true
	if handed {
		rows, upTo, readDB = handedOver(f.sub.Take(), f.last, f.org)
	}
	if readDB {
		err := f.read(ctx, func(ctx context.Context) (err error) {
			rows, err = f.s.st.FeedFor(ctx, f.userID, f.org, f.last, FeedPage)
			return err
		})
		if err != nil {
			return nil, false, err
		}
		if len(rows) > 0 {
			upTo = rows[len(rows)-1].N
		}
	}
	entries = make([]FeedEntry, len(rows))
	for i, e := range rows {
		entries[i] = FeedEntry{N: e.N, Kind: e.Kind, Data: e.Data}
	}
	f.last = max(f.last, upTo)
	return entries, readDB && len(rows) == FeedPage, nil
}

// handedOver returns the entries of pushed (handed over with a wake-up)
// that follow last, for tenant org ("" = all), and the highest number they
// cover. readDB is true when they cannot be trusted to be complete (none
// came, or they do not follow last without a gap): then the stream reads
// the feed instead.
func handedOver(pushed []store.FeedEntry, last int64, org string) (entries []store.FeedEntry, upTo int64, readDB bool) {
	if len(pushed) == 0 {
		return nil, 0, true
	}
	next := last + 1
	for _, e := range pushed {
		switch {
		case e.N < next:
			continue // already sent
		case e.N > next:
			return nil, 0, true // a gap: another node's entry, or one dropped
		}
		next++
		if org == "" || e.OrgID == org {
			entries = append(entries, e)
		}
	}
	return entries, next - 1, false
}
