package outbox

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// every runs job whenever consumer is kicked or polled, until ctx ends.
func (e *Engine) every(ctx context.Context, consumer string, job func(ctx context.Context) (more bool)) {
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	for {
		for ctx.Err() == nil && job(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kicks[consumer]:
		case <-tick.C:
		}
	}
}

// release hands a claimed row back at once, unattempted.
func (e *Engine) release(ctx context.Context, cl store.Claim) { e.handBack(ctx, cl, e.cfg.Now()) }

// handBack returns a claimed row to the queue, unattempted, due at until.
func (e *Engine) handBack(ctx context.Context, cl store.Claim, until time.Time) {
	if err := e.q.Defer(context.WithoutCancel(ctx), cl, e.cfg.Node, until); err != nil && !errors.Is(err, store.ErrLeaseLost) {
		e.log.Error("hand back outbox row", "consumer", cl.Consumer, "outbox_id", cl.ID, "err", err)
	}
}

// backoff is the delay before retry number attempt (1-based): doubling
// from RetryBase, capped at RetryMax, with "equal jitter" (half fixed, half
// random) so that retries of many rows spread out.
func backoff(p Policy, attempt int) time.Duration {
	d := p.RetryBase
	for i := 1; i < attempt && d < p.RetryMax; i++ {
		d *= 2
	}
	d = min(d, p.RetryMax)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// finish records an attempt; a retry past MaxAttempts or the Horizon
// becomes a failure. A deferral records nothing and hands the row back
// until RetryAfter.
func (e *Engine) finish(ctx context.Context, cl store.Claim, r Result, started time.Time, p Policy) {
	ctx = context.WithoutCancel(ctx) // record the attempt even when stopping
	now := e.cfg.Now()
	if r.Status == store.OutcomeDefer {
		e.handBack(ctx, cl, now.Add(r.RetryAfter))
		return
	}
	o := store.Outcome{Status: r.Status, At: now, StatusCode: r.StatusCode, Latency: now.Sub(started)}
	if r.Err != nil {
		o.Error = r.Err.Error()
	}
	if o.Status == store.OutcomeRetry {
		queued, _ := time.Parse(domain.TimeLayout, cl.CreatedAt)
		switch {
		case p.MaxAttempts > 0 && cl.Attempts+1 >= p.MaxAttempts:
			o.Status = store.StatusFailed
			o.Error = fmt.Sprintf("gave up after %d attempts: %s", cl.Attempts+1, o.Error)
		case p.Horizon > 0 && !queued.IsZero() && now.Sub(queued) >= p.Horizon:
			o.Status = store.StatusFailed
			o.Error = fmt.Sprintf("gave up after %d attempts over %s: %s", cl.Attempts+1, p.Horizon, o.Error)
		default:
			wait := backoff(p, cl.Attempts+1)
			if r.RetryAfter > 0 {
				wait = min(max(wait, r.RetryAfter), p.RetryMax)
			}
			o.NextAttempt = now.Add(wait)
		}
	}
	if err := e.q.Finish(ctx, cl, e.cfg.Node, o); err != nil {
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
