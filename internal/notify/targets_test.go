package notify_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestHangingTargetsLeaveWorkers: ten targets whose receivers hang until
// the attempt's timeout, with many rows queued before a healthy target's,
// cannot take every worker. Once their first attempts have timed out they
// get one attempt at a time and half the workers together, so the healthy
// target's rows go out while the dead ones still have rows due (before,
// the oldest due rows, all dead, took every freed worker).
func TestHangingTargetsLeaveWorkers(t *testing.T) {
	const (
		consumer    = "test.send"
		workers     = 8
		deadTargets = 10
		deadRows    = 40 // per dead target, each on an aggregate of its own
		liveRows    = 20
		hang        = 300 * time.Millisecond
	)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			now := time.Now().UTC().Format(domain.TimeLayout)
			err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				for i := range deadRows {
					for d := range deadTargets {
						if err := tx.EnqueueFor(ctx, consumer, "lock", fmt.Sprintf("d%d-%d", d, i), "org", fmt.Sprintf("dead-%d", d), 1, now); err != nil {
							return err
						}
					}
				}
				for i := range liveRows {
					if err := tx.EnqueueFor(ctx, consumer, "lock", fmt.Sprintf("l%d", i), "org", "live", 1, now); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var liveDone, deadTried, inFlightDead, maxDead int
			e := notify.New(st, notify.NewHub(), notify.Config{PollInterval: 50 * time.Millisecond}, testenv.Discard())
			e.Handle(notify.Handler{Consumer: consumer, Policy: notify.Policy{Workers: workers, PerTarget: 4, Ordered: true, MaxAttempts: -1, RetryBase: time.Hour},
				Deliver: func(ctx context.Context, cl store.Claim) notify.Result {
					if cl.Target == "live" {
						mu.Lock()
						liveDone++
						mu.Unlock()
						return notify.Result{Status: store.StatusDelivered, StatusCode: 204}
					}
					mu.Lock()
					deadTried++
					inFlightDead++
					maxDead = max(maxDead, inFlightDead)
					mu.Unlock()
					// The receiver never answers: the attempt ends at its
					// timeout.
					select {
					case <-time.After(hang):
					case <-ctx.Done():
					}
					mu.Lock()
					inFlightDead--
					mu.Unlock()
					return notify.Result{Status: store.OutcomeRetry, Err: errors.New("timeout")}
				}})
			rctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = e.Run(rctx) }()
			defer func() { stop(); <-done }()

			started := time.Now()
			deadline := started.Add(10 * time.Second)
			for {
				mu.Lock()
				live, tried := liveDone, deadTried
				mu.Unlock()
				if live == liveRows {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %s: %d of %d healthy rows delivered, %d attempts at the dead targets", time.Since(started), live, liveRows, tried)
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			// The dead targets had rows due all along: the healthy rows did
			// not just wait for them to run out.
			if deadTried >= deadTargets*deadRows {
				t.Errorf("every dead row (%d) was tried before the healthy ones went out", deadTried)
			}
			t.Logf("healthy rows delivered after %s; %d dead attempts, at most %d at once", time.Since(started).Round(time.Millisecond), deadTried, maxDead)
		})
	}
}
