package webhook

import (
	"context"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// PartnerRows is the routing of the partner webhook consumer alone:
// every event of an aggregate that belongs to a tenant with a webhook
// (in any state, when the event is appended) gets one row, which the
// fan-out (Register) turns into one delivery per matching subscription.
// A tenant without webhooks gets no row. Its wake-ups stay on the node
// that queued the rows.
func PartnerRows() outbox.Consumer {
	return outbox.Consumer{Name: es.ConsumerWebhooks, Route: routePartner, OnlyIfWebhook: true, Policy: outbox.Policy{Local: true}}
}

func routePartner(_ context.Context, _ *store.Tx, rec es.Record) ([]string, error) {
	if rec.OrgID == "" {
		return nil, nil
	}
	return []string{""}, nil
}

// Register adds the partner consumers to e: the fan-out step (which also
// queues replays, a chunk at a time) on the rows of PartnerRows, the
// sender and the verifier.
func (d *Dispatcher) Register(e *outbox.Engine) {
	fanOut := PartnerRows()
	fanOut.Job = func(ctx context.Context) bool {
		now := d.cfg.Now()
		// Parked webhooks are looked at when a delivery made room
		// (Recorded below), and at least every second.
		catchUp := d.catchUpDue.Swap(false) || now.Sub(d.lastCatchUp) >= time.Second
		if catchUp {
			d.lastCatchUp = now
		}
		handled, queued, parked, err := d.st.FanOutWebhooks(ctx, now, d.cfg.FanOutBatch, d.cfg.Window, catchUp)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("fan out partner events", "err", err)
			}
			return false
		}
		d.parked.Store(parked > 0)
		// One chunk of a replay per step: the writer is free between
		// chunks for everybody else's commands. A replay is paced by its
		// webhook's window: one that waits for room moves on when its
		// deliveries end (Recorded below), or at the next poll.
		rp, err := d.st.ReplayStep(ctx, now, d.cfg.ReplayChunk, d.cfg.Window)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("queue replay chunk", "err", err)
			}
		} else {
			var open map[string]bool
			if len(rp.Open) > 0 {
				open = make(map[string]bool, len(rp.Open))
				for _, id := range rp.Open {
					open[id] = true
				}
			}
			d.replaying.Store(&open)
		}
		if queued > 0 || rp.Queued > 0 {
			e.Queued([]string{es.ConsumerWebhookSend})
		}
		return handled == d.cfg.FanOutBatch || (rp.More && err == nil)
	}
	e.Register(fanOut)
	e.Register(outbox.Consumer{Name: es.ConsumerWebhookSend, Deliver: d.Send, Policy: outbox.Policy{
		RetryBase: d.cfg.RetryBase, RetryMax: d.cfg.RetryMax, MaxAttempts: -1, Horizon: d.cfg.Horizon,
		Workers: d.cfg.Workers, Ordered: true, PerTarget: d.cfg.PerTarget,
	}, Recorded: func(cl store.Claim, status string) {
		// A parked webhook's queue, or that of a webhook being replayed,
		// may have room now: the fan-out is to queue what it missed
		// (FanOutWebhooks) or the replay's next chunk (ReplayStep), soon,
		// once for the many deliveries that end meanwhile. Retries free
		// no room.
		if status == store.OutcomeRetry || status == store.OutcomeDefer {
			return
		}
		parked, replaying := d.parked.Load(), false
		if open := d.replaying.Load(); open != nil {
			replaying = (*open)[cl.Target]
		}
		if (parked || replaying) && d.catchUpTimer.CompareAndSwap(false, true) {
			time.AfterFunc(catchUpDelay, func() {
				d.catchUpTimer.Store(false)
				if d.parked.Load() {
					d.catchUpDue.Store(true)
				}
				e.Kick(es.ConsumerWebhooks)
			})
		}
	}})
	e.Register(outbox.Consumer{Name: es.ConsumerWebhookVerify, Deliver: d.Verify, Policy: outbox.Policy{
		RetryBase: d.cfg.RetryBase, RetryMax: d.cfg.RetryMax, MaxAttempts: 5, Workers: 4, PerTarget: 1,
	}})
}
