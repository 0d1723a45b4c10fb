package portal

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token bucket: at most Burst requests at once, then one more
// every Every. A Limit with a zero Every or Burst means "use the default".
type Limit struct {
	Every time.Duration
	Burst int
}

func (l Limit) valid() bool { return l.Every > 0 && l.Burst > 0 }

// bucket returns a new, full bucket of l.
func (l Limit) bucket() *rate.Limiter { return rate.NewLimiter(rate.Every(l.Every), l.Burst) }

// The buckets are golang.org/x/time/rate Limiters. A full bucket is the
// same as no bucket at all, so full buckets are dropped: memory follows
// the clients seen in the last Burst×Every, capped at maxKeys a map.

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

	mu      sync.Mutex
	clients map[clientKey]*rate.Limiter
	locks   map[int64]*rate.Limiter
	// latest is the latest clock reading: the buckets' time, which never
	// goes back (a rate.Limiter read at an earlier time and then at a later
	// one counts the time in between twice).
	latest    time.Time
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
		clients: map[clientKey]*rate.Limiter{}, locks: map[int64]*rate.Limiter{},
	}
}

// now returns the clock's reading and the buckets' time: the later of it
// and the latest reading.
func (l *limiter) now() (now, at time.Time) {
	now = l.clock()
	if now.Before(l.latest) {
		return now, l.latest
	}
	l.latest = now
	return now, now
}

// take reports whether a ring from client addr at lock may go ahead now;
// if so it uses one token of both buckets. If not, it uses none and returns
// how long until both buckets have a token again (counted from the clock's
// reading, should it have gone back).
func (l *limiter) take(lock int64, addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now, at := l.now()
	if at.Sub(l.lastSweep) >= l.sweepEvery {
		l.sweep(at)
	}
	ck := clientKey{lock, addr}
	cb, lb := l.clients[ck], l.locks[lock]
	if cb == nil {
		cb = l.perClient.bucket()
	}
	if lb == nil {
		lb = l.perLock.bucket()
	}
	// The waits to the microsecond: the library's float arithmetic is off
	// by a nanosecond or so (an exact 500 ms can come out 499.999999 ms).
	// A wait that rounds to 0 is none: the reservations stand.
	cr, lr := cb.ReserveN(at, 1), lb.ReserveN(at, 1)
	if wait := max(cr.DelayFrom(at), lr.DelayFrom(at)).Round(time.Microsecond); wait > 0 {
		cr.CancelAt(at)
		lr.CancelAt(at)
		return false, wait + at.Sub(now)
	}
	keep(l, l.clients, ck, cb, at)
	keep(l, l.locks, lock, lb, at)
	return true, 0
}

// refund gives back the token take used, for a ring that did not happen.
func (l *limiter) refund(lock int64, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, at := l.now()
	giveBack(l.clients, clientKey{lock, addr}, at)
	giveBack(l.locks, lock, at)
}

// giveBack returns one token to bucket k: a negative n does that in
// x/time/rate (golang/go#54082), up to the burst. A bucket full again goes.
func giveBack[K comparable](m map[K]*rate.Limiter, k K, at time.Time) {
	b, ok := m[k]
	if !ok {
		return
	}
	b.AllowN(at, -1)
	if full(b, at) {
		delete(m, k)
	}
}

func full(b *rate.Limiter, at time.Time) bool { return b.TokensAt(at) >= float64(b.Burst()) }

// keep saves a bucket, making room first when its map is full: idle
// buckets go, then (only under a flood of distinct keys) the bucket
// closest to idle.
func keep[K comparable](l *limiter, m map[K]*rate.Limiter, k K, b *rate.Limiter, at time.Time) {
	if _, ok := m[k]; !ok && len(m) >= l.maxKeys {
		l.sweep(at)
		if len(m) >= l.maxKeys {
			var fullest K
			most := -1.0
			for key, b := range m {
				if t := b.TokensAt(at); t > most {
					fullest, most = key, t
				}
			}
			delete(m, fullest)
		}
	}
	m[k] = b
}

// sweep drops every full (idle) bucket.
func (l *limiter) sweep(at time.Time) {
	l.lastSweep = at
	for k, b := range l.clients {
		if full(b, at) {
			delete(l.clients, k)
		}
	}
	for k, b := range l.locks {
		if full(b, at) {
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
