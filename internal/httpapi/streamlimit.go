package httpapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
)

// Defaults of the live stream bounds (Config.MaxStreams,
// Config.MaxStreamsPerUser, Config.MaxStreamsPerKey, Config.StreamReads).
const (
	DefaultMaxStreams        = 1000
	DefaultMaxStreamsPerUser = 5
	DefaultMaxStreamsPerKey  = 50
	DefaultStreamReads       = 4
)

// streamRetryAfter is the Retry-After of a refused stream.
const streamRetryAfter = 10 * time.Second

// streamLimits bounds the live streams of this node: at most perUser open
// for one caller and user, perCred for one caller whatever the users, and
// total in all. It also holds the semaphore through which streams read
// the database, so that however many are open they use at most
// cap(reads) connections of the pool.
type streamLimits struct {
	mu                      sync.Mutex
	open                    map[string]int // by streamKey
	byCred                  map[string]int // by credentialKey
	count                   int
	total, perUser, perCred int
	reads                   chan struct{}
	refused                 *prometheus.CounterVec
}

func newStreamLimits(cfg Config, reg *prometheus.Registry) *streamLimits {
	l := &streamLimits{open: map[string]int{}, byCred: map[string]int{},
		total: cfg.MaxStreams, perUser: cfg.MaxStreamsPerUser, perCred: cfg.MaxStreamsPerKey}
	if l.total <= 0 {
		l.total = DefaultMaxStreams
	}
	if l.perUser <= 0 {
		l.perUser = DefaultMaxStreamsPerUser
	}
	if l.perCred <= 0 {
		l.perCred = DefaultMaxStreamsPerKey
	}
	reads := cfg.StreamReads
	if reads <= 0 {
		reads = DefaultStreamReads
	}
	l.reads = make(chan struct{}, reads)
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spkey_live_stream_refusals_total",
		Help: "Live streams refused with 429, by the limit reached (user: --max-streams-per-user, key: --max-streams-per-key, node: --max-streams)."}, []string{"limit"})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spkey_live_streams", Help: "Open live notification streams on this node."},
		func() float64 { l.mu.Lock(); defer l.mu.Unlock(); return float64(l.count) })
	reg.MustRegister(l.refused, open)
	return l
}

// streamKey names whose streams count together: one caller (a user's
// token, or a tenant's key) streaming one user's feed.
func streamKey(p app.Principal, userID string) string {
	return fmt.Sprintf("%d|%s|%s|%s", p.Kind, p.UserID, p.OrgID, userID)
}

// credentialKey names whose streams count together whatever the user
// streamed: one tenant API key (by its key id), or one user's tokens (by
// the user id).
func credentialKey(p app.Principal) string {
	if p.Kind == app.TenantCaller {
		return "key|" + p.KeyID
	}
	return fmt.Sprintf("%d|%s", p.Kind, p.UserID)
}

// acquire takes a slot for a stream of userID's feed opened by p, or
// answers why not (429 with Retry-After). The release func must be called
// when the stream ends.
func (l *streamLimits) acquire(p app.Principal, userID string) (func(), error) {
	key, cred := streamKey(p, userID), credentialKey(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	var limit, msg string
	switch {
	case l.open[key] >= l.perUser:
		limit, msg = "user", fmt.Sprintf("Too many live streams: at most %d may be open for one user with one credential; close one before opening another", l.perUser)
	case l.byCred[cred] >= l.perCred:
		limit, msg = "key", fmt.Sprintf("Too many live streams: at most %d may be open with one credential (API key or user token), whatever the users; close one before opening another", l.perCred)
	case l.count >= l.total:
		limit, msg = "node", fmt.Sprintf("Too many live streams on this server (at most %d): try again later", l.total)
	}
	if limit != "" {
		l.refused.WithLabelValues(limit).Inc()
		return nil, &domain.Error{Code: domain.TooMany, Message: msg, RetryAfter: streamRetryAfter}
	}
	l.open[key]++
	l.byCred[cred]++
	l.count++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.count--
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
			if l.byCred[cred]--; l.byCred[cred] <= 0 {
				delete(l.byCred, cred)
			}
		})
	}, nil
}

// read runs fn, a stream's database read, once one of the stream read
// slots is free (or fails with ctx's error).
func (l *streamLimits) read(ctx context.Context, fn func(context.Context) error) error {
	select {
	case l.reads <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.reads }()
	return fn(ctx)
}
