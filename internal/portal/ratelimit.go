package portal

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limit is a token bucket: at most Burst requests at once, then one more
// every Every. A Limit with a zero Every or Burst means "use the default".
type Limit struct {
	Every time.Duration
	Burst int
}

func (l Limit) valid() bool { return l.Every > 0 && l.Burst > 0 }

// The buckets are kept as GCRA "theoretical arrival times" (tat): a bucket
// whose tat is not after now is full, which is the same as having no
// bucket at all, so such buckets are dropped. Everything is integer time,
// so the waits it reports are exact.

// clientKey names the bucket of one client address at one lock.
type clientKey struct {
	lock int64
	addr string
}

// limiter holds the two families of buckets of the doorbell: per lock and
// client address, and per lock. It is safe for concurrent use.
type limiter struct {
	clock              func() time.Time
	perClient, perLock Limit
	// maxKeys caps each map; sweepEvery is how often idle buckets go.
	maxKeys    int
	sweepEvery time.Duration

	mu        sync.Mutex
	clients   map[clientKey]time.Time
	locks     map[int64]time.Time
	lastSweep time.Time
}

const (
	defaultMaxKeys    = 100_000
	defaultSweepEvery = time.Minute
)

func newLimiter(clock func() time.Time, perClient, perLock Limit) *limiter {
	return &limiter{
		clock: clock, perClient: perClient, perLock: perLock,
		maxKeys: defaultMaxKeys, sweepEvery: defaultSweepEvery,
		clients: map[clientKey]time.Time{}, locks: map[int64]time.Time{},
	}
}

// take reports whether a ring from client addr at lock may go ahead now;
// if so it uses one token of both buckets. If not, it uses none and returns
// how long until both buckets have a token again.
func (l *limiter) take(lock int64, addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if now.Sub(l.lastSweep) >= l.sweepEvery || now.Before(l.lastSweep) {
		l.sweep(now)
	}
	ck := clientKey{lock, addr}
	ctat, cwait := admit(l.clients[ck], now, l.perClient)
	ltat, lwait := admit(l.locks[lock], now, l.perLock)
	if cwait > 0 || lwait > 0 {
		return false, max(cwait, lwait)
	}
	store(l, l.clients, ck, ctat, now)
	store(l, l.locks, lock, ltat, now)
	return true, 0
}

// refund gives back the token take used, for a ring that did not happen.
func (l *limiter) refund(lock int64, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	giveBack(l.clients, clientKey{lock, addr}, l.perClient.Every, now)
	giveBack(l.locks, lock, l.perLock.Every, now)
}

func giveBack[K comparable](m map[K]time.Time, k K, every time.Duration, now time.Time) {
	tat, ok := m[k]
	if !ok {
		return
	}
	if tat = tat.Add(-every); tat.After(now) {
		m[k] = tat
	} else {
		delete(m, k)
	}
}

// admit is one GCRA step: the bucket's new tat if a request is let through
// now, or how long to wait (> 0) when it is not.
func admit(tat, now time.Time, lim Limit) (time.Time, time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(lim.Every)
	if over := next.Sub(now) - time.Duration(lim.Burst)*lim.Every; over > 0 {
		return tat, over
	}
	return next, 0
}

// store saves a bucket, making room first when its map is full: idle
// buckets go, then (only under a flood of distinct keys) the bucket
// closest to idle.
func store[K comparable](l *limiter, m map[K]time.Time, k K, tat, now time.Time) {
	if _, ok := m[k]; !ok && len(m) >= l.maxKeys {
		l.sweep(now)
		if len(m) >= l.maxKeys {
			var oldest K
			var low time.Time
			first := true
			for key, t := range m {
				if first || t.Before(low) {
					oldest, low, first = key, t, false
				}
			}
			delete(m, oldest)
		}
	}
	m[k] = tat
}

// sweep drops every full (idle) bucket: it keeps memory proportional to
// the clients seen in the last Burst×Every.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, tat := range l.clients {
		if !tat.After(now) {
			delete(l.clients, k)
		}
	}
	for k, tat := range l.locks {
		if !tat.After(now) {
			delete(l.locks, k)
		}
	}
}

// size returns how many buckets are held (for tests).
func (l *limiter) size() (clients, locks int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients), len(l.locks)
}

// retryAfterSeconds turns a wait into the integer seconds of a Retry-After
// header: rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}

// clientAddr is the address the limiter keys a request by: the host part
// of RemoteAddr or, with trustProxy, the last X-Forwarded-For entry (the
// one our reverse proxy appended; earlier entries are the client's word).
// IPv6 addresses are cut to their /64, which one client usually owns whole.
func clientAddr(r *http.Request, trustProxy bool) string {
	raw := r.RemoteAddr
	if host, _, err := net.SplitHostPort(raw); err == nil {
		raw = host
	}
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				raw = last
			}
		}
	}
	a, err := netip.ParseAddr(raw)
	if err != nil {
		return raw
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
