package outbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/store"
)

// Run delivers until ctx ends, then waits for the attempts in flight.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	channels := []string{pgOutbox}
	heard := map[string]func(string){}
	for _, c := range e.consumers {
		if c.Listen != "" && c.Heard != nil {
			channels = append(channels, c.Listen)
			heard[c.Listen] = c.Heard
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.q.Listen(ctx, channels, func() {
			// (Re)connected: whatever was announced meanwhile is found by
			// looking again.
			for c := range e.kicks {
				e.kick(c)
			}
		}, func(channel, payload string) {
			if channel == pgOutbox {
				// "consumer|node" (Announce) or "consumer" (Queued).
				c, node, _ := strings.Cut(payload, "|")
				if node != e.cfg.Node {
					e.kick(c)
				}
			} else if f := heard[channel]; f != nil {
				f(payload)
			}
		})
	}()
	for _, c := range e.consumers {
		switch {
		case c.DeliverBatch != nil:
			wg.Add(1)
			go func(c Consumer) {
				defer wg.Done()
				e.loop(ctx, c.Name, nil, func(ctx context.Context, claims []store.Claim) { e.deliverBatch(ctx, c, claims) }, c.Policy)
			}(c)
		case c.Deliver != nil:
			wg.Add(1)
			go func(c Consumer) {
				defer wg.Done()
				e.loop(ctx, c.Name, func(ctx context.Context, cl store.Claim) string {
					started := e.cfg.Now()
					r := c.Deliver(ctx, cl)
					e.finish(ctx, cl, r, started, c.Policy)
					if c.Recorded != nil {
						c.Recorded(cl, r.Status)
					}
					return r.Status
				}, nil, c.Policy)
			}(c)
		}
		if c.Job != nil {
			wg.Add(1)
			go func(c Consumer) { defer wg.Done(); e.every(ctx, c.Name, c.Job) }(c)
		}
	}
	wg.Wait()
	return nil
}

// deliverBatch hands claims to c at once and records the verdicts the
// consumer did not record itself.
func (e *Engine) deliverBatch(ctx context.Context, c Consumer, claims []store.Claim) {
	started := e.cfg.Now()
	rs := c.DeliverBatch(ctx, claims)
	for i, cl := range claims {
		r := Result{Status: store.OutcomeRetry, Err: errors.New("no verdict")}
		if i < len(rs) {
			r = rs[i]
		}
		if !r.Recorded {
			e.finish(ctx, cl, r, started, c.Policy)
			continue
		}
		if errors.Is(r.Err, store.ErrLeaseLost) {
			e.log.Warn("delivery outlived its lease; another node owns the row now", "consumer", cl.Consumer, "outbox_id", cl.ID)
			continue
		}
		if e.cfg.Observe != nil {
			e.cfg.Observe(cl.Consumer, r.Status, r.Latency)
		}
	}
}

// loop claims and delivers rows of consumer whenever kicked or polled,
// until ctx ends: one row at a time on up to workers goroutines (deliver),
// or each claimed batch at once (batch). deliver returns the attempt's
// status (Result.Status) for PerTarget. Deliveries in flight finish (with
// their own timeouts) after ctx ends; their rows are recorded.
func (e *Engine) loop(ctx context.Context, consumer string, deliver func(context.Context, store.Claim) string, batch func(context.Context, []store.Claim), p Policy) {
	workers := p.Workers
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	limit := e.cfg.Batch
	if batch != nil {
		// A batch is one transaction: a ring to many residents goes out
		// in one commit.
		limit = 8 * e.cfg.Batch
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	tg := newTargets(p.PerTarget, max(1, workers/2), 2*p.RetryMax+e.cfg.Lease, e.cfg.Now)
	fresh := e.fresh[consumer]
	fresh.Store(true)
	healthyLeft := true // the last healthy claim may have left rows
	exclude := func(healthyOnly bool) []string {
		if p.PerTarget <= 0 {
			return nil
		}
		return tg.exclude(healthyOnly)
	}
	// Attempts in flight when ctx ends get a grace period to finish, then
	// their context is cancelled; either way the attempt is recorded.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		t := time.AfterFunc(e.cfg.ShutdownGrace, cancelWork)
		wg.Wait()
		t.Stop()
		cancelWork()
	}()
	for {
		for ctx.Err() == nil {
			n := limit
			if batch == nil {
				// Claim only the rows idle workers can start now: a lease
				// runs from the claim, and a row left waiting for a worker
				// could outlive it and be sent twice.
				n = 0
				select {
				case sem <- struct{}{}:
					n = 1
				case <-ctx.Done():
				}
			more:
				for n > 0 && n < limit {
					select {
					case sem <- struct{}{}:
						n++
					default:
						break more
					}
				}
				if n == 0 {
					break
				}
			}
			// Healthy targets first: rows are claimed oldest first, and a
			// failing target's backlog is usually the oldest. Then, in the
			// room left, the failing targets' rows. The healthy claim is
			// skipped when it found nothing last time and nothing since
			// could have changed that (fresh): with dead receivers, each
			// of their attempts ending would otherwise walk their queues.
			var claims []store.Claim
			var err error
			if healthyLeft || fresh.Swap(false) || p.PerTarget <= 0 {
				claims, err = e.q.ClaimWith(ctx, consumer, e.cfg.Node, e.cfg.Now(), e.cfg.Lease, n, store.ClaimOptions{Ordered: p.Ordered, Exclude: exclude(true), PerTarget: p.PerTarget})
				healthyLeft = len(claims) == n
			}
			if m := min(n-len(claims), tg.room()); err == nil && p.PerTarget > 0 && m > 0 {
				var more []store.Claim
				more, err = e.q.ClaimWith(ctx, consumer, e.cfg.Node, e.cfg.Now(), e.cfg.Lease, m, store.ClaimOptions{Ordered: p.Ordered, Exclude: exclude(false), PerTarget: min(p.PerTarget, 1)})
				claims = append(claims, more...)
			}
			if p.PerTarget > 0 && len(claims) > 0 {
				// A batch can still hold more rows of one target than the
				// cap: the excess goes back to the queue.
				kept := claims[:0]
				for _, cl := range claims {
					if !tg.take(cl.Target) {
						e.release(ctx, cl)
						continue
					}
					kept = append(kept, cl)
				}
				claims = kept
			}
			if batch == nil {
				for i := len(claims); i < n; i++ {
					<-sem // slots this claim did not use
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					e.log.Error("claim outbox rows", "consumer", consumer, "err", err)
				}
				break
			}
			if batch != nil && len(claims) > 0 {
				batch(work, claims)
			}
			for _, cl := range claims {
				if batch != nil {
					break
				}
				wg.Add(1)
				go func(cl store.Claim) {
					status := ""
					defer func() {
						if p.PerTarget > 0 {
							tg.done(cl.Target, status)
						}
						<-sem
						wg.Done()
						if p.Ordered || p.PerTarget > 0 {
							// The next row of this aggregate (Ordered) or
							// of this target (PerTarget) may be claimable
							// now: look again at once, not at the next poll.
							// After a retry its target is failing: only the
							// failing targets' claim can find anything new.
							if p.PerTarget > 0 && (status == store.OutcomeRetry || status == store.OutcomeDefer) {
								e.nudge(consumer)
							} else {
								e.kick(consumer)
							}
						}
					}()
					status = deliver(work, cl)
				}(cl)
			}
			if len(claims) < n {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kicks[consumer]:
		case <-tick.C:
			fresh.Store(true) // rows come due with time, leases run out
		}
	}
}
