package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

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
func (e *deliverer) check(ctx context.Context, l *loader, cl store.Claim, channel string) (d Delivery, skip string, err error) {
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
			if q.Contains(e.now().In(loc)) {
				return d, "quiet hours", nil
			}
		}
	}
	return d, "", nil
}

// prepare is check plus the recipient's contact details, for one row of a
// channel that sends somewhere (e-mail, hook).
func (e *deliverer) prepare(ctx context.Context, cl store.Claim, channel string) (d Delivery, skip string, err error) {
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

// deliverVia makes one attempt of channel c on a claimed row.
func (e *deliverer) deliverVia(ctx context.Context, c Channel, cl store.Claim) outbox.Result {
	d, skip, err := e.prepare(ctx, cl, c.Name())
	switch {
	case err != nil:
		return outbox.Result{Status: store.OutcomeRetry, Err: err}
	case skip != "":
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New(skip)}
	}
	return c.Deliver(ctx, d)
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
// here and on every other node. The rows it skips or is to retry are
// the engine's to record.
func (e *deliverer) deliverLive(ctx context.Context, claims []store.Claim) []outbox.Result {
	started := e.now()
	rs := make([]outbox.Result, len(claims))
	l := newLoader(e.st)
	users := make([]string, 0, len(claims))
	for _, cl := range claims {
		users = append(users, cl.Target)
	}
	if err := l.loadPrefs(ctx, users); err != nil {
		for i := range rs {
			rs[i] = outbox.Result{Status: store.OutcomeRetry, Err: err}
		}
		return rs
	}
	data := map[int64]json.RawMessage{}
	var ready []store.LiveItem
	var at []int // at[j]: the index in claims of ready[j]
	for i, cl := range claims {
		d, skip, err := e.check(ctx, l, cl, user.ChannelLive)
		if err == nil && skip == "" {
			fd, ok := data[cl.EventSeq]
			if !ok {
				fd, err = FeedData(d.Event)
				data[cl.EventSeq] = fd
			}
			if err == nil {
				ready = append(ready, store.LiveItem{Claim: cl, Kind: d.Event.Type, Data: fd})
				at = append(at, i)
				continue
			}
		}
		if err != nil {
			rs[i] = outbox.Result{Status: store.OutcomeRetry, Err: err}
		} else {
			rs[i] = outbox.Result{Status: store.StatusSkipped, Err: errors.New(skip)}
		}
	}
	if len(ready) == 0 {
		return rs
	}
	now := e.now()
	var lost map[int64]bool
	var entries []store.FeedEntry
	err := e.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		var err error
		entries, lost, err = tx.DeliverLive(ctx, e.node, now, now.Sub(started), ready)
		return err
	})
	if err != nil {
		for _, i := range at {
			rs[i] = outbox.Result{Status: store.OutcomeRetry, Err: err}
		}
		return rs
	}
	for j, it := range ready {
		r := outbox.Result{Status: store.StatusDelivered, Recorded: true, Latency: now.Sub(started)}
		if lost[it.Claim.ID] {
			r.Err = store.ErrLeaseLost
		}
		rs[at[j]] = r
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
		if err := e.st.Notify(ctx, pgLive, e.node+"|"+strings.Join(wake[:n], ",")); err != nil {
			e.log.Warn("notify other nodes of live entries", "err", err)
		}
		wake = wake[n:]
	}
	return rs
}
