package store

// The read cache on PostgreSQL, and why it is exact across nodes.
//
// Claim: a read on node B that starts after a write's answer on node A
// never sees the state from before that write.
//
//  1. Every write transaction that changes a cached row (a snapshot, a
//     user, an API key) sends, inside the transaction and just before
//     COMMIT, pg_notify('spkey_cache', ...) naming those rows (snapshots
//     with their new version). PostgreSQL delivers a notification only if
//     its transaction commits, and the committing backend signals the
//     listening backends before COMMIT returns to its client; so by the
//     time A answers, B's listening backend has been signalled.
//  2. Each node keeps one connection LISTENing on spkey_cache. A backend
//     sends its session's pending notifications before the ReadyForQuery
//     of any query, so once a query sent on that connection after A's
//     answer has completed, B has received (and applied: dropped the rows,
//     raised the version floors) every invalidation of A's write.
//     TestNotifyBeforeReadyForQuery checks this against the server.
//  3. fence(ctx) waits for such a round trip that started after fence was
//     called (concurrent fences share one). A request fences once, before
//     its first cached read (the context token of WithFreshReads); a read
//     without a token never uses the cache on PostgreSQL.
//  4. A reader that queried the database before an invalidation arrived
//     cannot put the older row back: users and keys carry the generation
//     read before the query, snapshots the epoch and a per-aggregate
//     version floor. The node's own commits are applied by its writer after
//     commit (as on SQLite), so it skips its own notifications, except
//     those of a commit whose outcome it does not know.
//  5. While the LISTEN connection is down fences fail, so reads go to the
//     database; the cache is emptied when it is lost and again once LISTEN
//     is back in place, before any fence succeeds.
//
// Inside a write transaction a cached snapshot may be stale only by writes
// that answered after the request's fence; an append to that stream then
// fails its expected version (refuse drops the entry) and the app retries.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// cacheChannel is the NOTIFY channel of cache invalidations.
const cacheChannel = "spkey_cache"

const (
	// maxPayload bounds one notification's payload (PostgreSQL's limit
	// is 8000 bytes).
	maxPayload = 7900
	// maxInvalidations: a transaction that changes more cached rows than
	// this sends one "forget everything" instead.
	maxInvalidations = 2000
	// fenceWait bounds how long a read waits for a fence before going to
	// the database instead; roundTripWait bounds one round trip on the
	// LISTEN connection before it is thrown away.
	fenceWait     = 2 * time.Second
	roundTripWait = 5 * time.Second
)

// Invalidation keys, one line each in a payload: "s\t<type>\t<id>\t<version>",
// "u\t<id>", "k" (API keys), "*" (everything).
const invAll = "*"

// invalidate records that this transaction changes a cached row (key).
func (b *batch) invalidate(key string) {
	if strings.ContainsAny(key, "\n") {
		key = invAll
	}
	b.inv = append(b.inv, key)
}

func (b *batch) invalidateSnapshot(typ, id string, version int64) {
	if strings.ContainsAny(typ+id, "\t\n") {
		b.invalidate(invAll)
		return
	}
	b.invalidate("s\t" + typ + "\t" + id + "\t" + strconv.FormatInt(version, 10))
}

func (b *batch) invalidateUser(id string) {
	if strings.ContainsAny(id, "\t\n") {
		b.invalidate(invAll)
		return
	}
	b.invalidate("u\t" + id)
}

// invalidations returns the payloads that tell the other nodes what this
// batch changed, each naming the sender (tag: "<node> <commit>") and
// shorter than maxPayload.
func (b *batch) invalidations(tag string) []string {
	if len(b.inv) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(b.inv))
	keys := make([]string, 0, len(b.inv))
	for _, k := range b.inv {
		if k == invAll || len(keys) >= maxInvalidations || len(k) > maxPayload-len(tag)-2 {
			return []string{tag + "\n" + invAll}
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	var out []string
	var p strings.Builder
	for _, k := range keys {
		if p.Len() > 0 && p.Len()+1+len(k) >= maxPayload {
			out = append(out, p.String())
			p.Reset()
		}
		if p.Len() == 0 {
			p.WriteString(tag)
		}
		p.WriteByte('\n')
		p.WriteString(k)
	}
	return append(out, p.String())
}

// sendInvalidations notifies the other nodes, inside transaction q and
// just before its COMMIT, of the cached rows the batch changed (nothing
// when it changed none, or on SQLite: node is nil). Call commitFailed if
// the COMMIT then fails.
func (b *batch) sendInvalidations(ctx context.Context, q querier, node *cacheNode) error {
	if node == nil || len(b.inv) == 0 {
		return nil
	}
	b.tag, b.node = node.nextTag(), node
	for _, p := range b.invalidations(b.tag) {
		if _, err := q.ExecContext(ctx, `SELECT pg_notify('`+cacheChannel+`', $1)`, p); err != nil {
			return fmt.Errorf("notify cache invalidations: %w", err)
		}
	}
	return nil
}

// commitFailed handles a COMMIT that returned an error (the writer calls
// it): if the batch sent invalidations, the transaction may have committed
// all the same while the writer's upkeep did not run, so this node applies
// its own notification of it should it come, and forgets its cache now.
func (b *batch) commitFailed() {
	if b.node == nil || b.tag == "" {
		return
	}
	b.node.unsure(b.tag)
}

// cacheNode is one store's identity among the nodes that share a
// PostgreSQL database, for the cache invalidations.
type cacheNode struct {
	id    string
	cache *readCache

	mu   sync.Mutex
	seq  uint64
	odd  map[string]bool // tags of own commits with an unknown outcome
	keep bool            // too many of those: apply every own notification
}

func newCacheNode(c *readCache) *cacheNode {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return &cacheNode{id: hex.EncodeToString(r[:]), cache: c, odd: map[string]bool{}}
}

func (n *cacheNode) nextTag() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	return n.id + " " + strconv.FormatUint(n.seq, 10)
}

func (n *cacheNode) unsure(tag string) {
	n.mu.Lock()
	if len(n.odd) >= 1000 {
		n.keep = true
	}
	n.odd[tag] = true
	n.mu.Unlock()
	// After marking: a notification that came before was skipped, but
	// what it named is gone now; one that comes after is applied.
	n.cache.clear()
}

// own reports whether a notification tagged tag is this node's own commit,
// already applied by its writer.
func (n *cacheNode) own(tag string) bool {
	id, _, _ := strings.Cut(tag, " ")
	if id != n.id {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.keep {
		return false
	}
	if n.odd[tag] {
		delete(n.odd, tag)
		return false
	}
	return true
}

// apply applies one invalidation payload to the cache.
func (n *cacheNode) apply(payload string) {
	tag, body, _ := strings.Cut(payload, "\n")
	if n.own(tag) {
		return
	}
	c := n.cache
	for line := range strings.SplitSeq(body, "\n") {
		f := strings.Split(line, "\t")
		switch {
		case f[0] == "s" && len(f) == 4:
			v, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil {
				c.clear()
				return
			}
			c.staleSnapshot(f[1], f[2], v)
		case f[0] == "u" && len(f) == 2:
			c.dropUser(f[1])
		case f[0] == "k" && len(f) == 1:
			c.dropKeys()
		default: // "*", or something this version does not know
			c.clear()
			return
		}
	}
}

// errFenceDown: the LISTEN connection is not in place.
var errFenceDown = errors.New("cache listener not connected")

// fencer owns the LISTEN connection of one PostgreSQL store: it applies
// the invalidations that arrive and runs the round trips fences wait for.
type fencer struct {
	node *cacheNode
	s    *Store

	mu      sync.Mutex
	up      bool
	waiters []chan error
	kick    context.CancelFunc // ends the idle wait when a fence arrives

	pid uint32 // the LISTEN connection's backend (tests)

	stop context.CancelFunc
	done chan struct{}
}

func (s *Store) startFencer() {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fencer{node: newCacheNode(s.cache), s: s, stop: cancel, done: make(chan struct{})}
	s.fence = f
	go f.run(ctx)
}

// close stops the listener and waits for it.
func (f *fencer) close() {
	if f == nil {
		return
	}
	f.stop()
	<-f.done
}

func (f *fencer) run(ctx context.Context) {
	defer close(f.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := f.listen(ctx)
		if f.lost(err) {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		f.s.log.Warn("cache listener lost; reads go to the database until it is back", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// lost marks the listener down: fences fail, waiting ones are released
// with err, and the cache is emptied (invalidations may be missed now). It
// reports whether the listener had been up.
func (f *fencer) lost(err error) (wasUp bool) {
	if err == nil {
		err = errFenceDown
	}
	f.mu.Lock()
	wasUp = f.up
	f.up = false
	ws := f.waiters
	f.waiters = nil
	f.mu.Unlock()
	for _, w := range ws {
		w <- err
	}
	f.node.cache.clear()
	return wasUp
}

func (f *fencer) listen(ctx context.Context) error {
	if err := f.s.dedicated(ctx, func(pc *pgx.Conn) error { return f.serve(ctx, pc) }); err != nil {
		return fmt.Errorf("cache listener: %w", err)
	}
	return nil
}

func (f *fencer) serve(ctx context.Context, pc *pgx.Conn) error {
	lctx, cancel := context.WithTimeout(ctx, roundTripWait)
	_, err := pc.Exec(lctx, `LISTEN `+cacheChannel)
	cancel()
	if err != nil {
		return fmt.Errorf("cache listener: listen: %w", err)
	}
	// Whatever was cached may have missed invalidations until now.
	f.node.cache.clear()
	f.mu.Lock()
	f.up, f.pid = true, pc.PgConn().PID()
	f.mu.Unlock()
	drained, undo := context.WithCancel(context.Background())
	undo()
	drain := func() {
		for {
			n, _ := pc.WaitForNotification(drained) // buffered ones only
			if n == nil {
				return
			}
			f.node.apply(n.Payload)
		}
	}
	for {
		f.mu.Lock()
		if len(f.waiters) == 0 {
			// Idle: wait for a notification or a fence. pgx treats the
			// cancelled wait as a read timeout and keeps the connection
			// (pgconn.peekMessage closes it on other errors only).
			wctx, kick := context.WithTimeout(ctx, time.Minute)
			f.kick = kick
			f.mu.Unlock()
			n, err := pc.WaitForNotification(wctx)
			kick()
			f.mu.Lock()
			f.kick = nil
			f.mu.Unlock()
			if n != nil {
				f.node.apply(n.Payload)
			}
			if err != nil && (ctx.Err() != nil || pc.IsClosed() || wctx.Err() == nil) {
				return fmt.Errorf("cache listener: wait: %w", err)
			}
			continue
		}
		ws := f.waiters
		f.waiters = nil
		f.mu.Unlock()
		// Every waiter in ws called fence before this query is sent.
		rctx, cancel := context.WithTimeout(ctx, roundTripWait)
		_, err := pc.PgConn().Exec(rctx, `SELECT 1`).ReadAll()
		cancel()
		if err == nil {
			drain()
		}
		for _, w := range ws {
			w <- err
		}
		if err != nil {
			return fmt.Errorf("cache listener: round trip: %w", err)
		}
	}
}

// wait returns once every invalidation of every commit that answered
// before wait was called has been applied (see the top of this file).
func (f *fencer) wait(ctx context.Context) error {
	ch := make(chan error, 1)
	f.mu.Lock()
	if !f.up {
		f.mu.Unlock()
		return errFenceDown
	}
	f.waiters = append(f.waiters, ch)
	if f.kick != nil {
		f.kick()
		f.kick = nil
	}
	f.mu.Unlock()
	t := time.NewTimer(fenceWait)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("cache fence timed out")
	}
}

// freshKey marks a context whose reads may use the cache (WithFreshReads).
type freshKey struct{}

// freshToken is the fence of one request, done at most once per store.
type freshToken struct {
	mu sync.Mutex
	s  *Store
	ok bool
}

// WithFreshReads marks ctx as one request's: its reads may use this node's
// read cache on PostgreSQL once, at its first such read (or write), the
// node has fenced. Call it once per request, where the request starts;
// reads without it go to the database (on SQLite the cache is always
// exact and it changes nothing).
func WithFreshReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshKey{}, &freshToken{})
}

// cached reports whether reads under ctx may use the read cache, fencing
// first if this is the request's first cached read on PostgreSQL.
func (s *Store) cached(ctx context.Context) bool {
	if s.cache == nil {
		return false
	}
	if s.fence == nil {
		return true // SQLite: the writer keeps the cache exact
	}
	t, _ := ctx.Value(freshKey{}).(*freshToken)
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.s == s {
		return t.ok
	}
	ok := s.fence.wait(ctx) == nil
	if t.s == nil {
		t.s, t.ok = s, ok
	}
	return ok
}

// CacheListener reports the server process (backend pid) of the store's
// cache listener and whether it is connected: while it is not, reads on
// PostgreSQL go to the database. On SQLite it reports 0, false.
func (s *Store) CacheListener() (pid uint32, up bool) {
	if s.fence == nil {
		return 0, false
	}
	s.fence.mu.Lock()
	defer s.fence.mu.Unlock()
	return s.fence.pid, s.fence.up
}
