package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/spkey-dev/spkey/internal/store"
)

// DefaultRetention is what `spkey serve` keeps unless told otherwise:
// Idempotency-Key records a day (as Stripe), finished deliveries and
// their attempts 30 days, live-feed entries 7 days. Used portal nonces
// are kept as long as a sign-in link may live (the caller sets Nonces).
var DefaultRetention = store.Retention{Idempotency: 24 * time.Hour, Deliveries: 30 * 24 * time.Hour, LiveFeed: 7 * 24 * time.Hour}

// Prune deletes what r's horizons have passed (store.Prune) and returns
// how many rows it deleted per table.
func (s *Service) Prune(ctx context.Context, r store.Retention) (map[string]int64, error) {
	return s.st.Prune(ctx, s.now(), r, store.DefaultPruneBatch)
}

// RunRetention prunes at once and then every interval until ctx ends,
// telling pruned (if set) how many rows of each table went. Errors are
// logged and tried again at the next round.
func (s *Service) RunRetention(ctx context.Context, interval time.Duration, r store.Retention, pruned func(table string, n int64), log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		counts, err := s.Prune(ctx, r)
		for table, n := range counts {
			if pruned != nil && n > 0 {
				pruned(table, n)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Error("prune old rows", "err", err)
		} else if len(counts) > 0 {
			log.Debug("pruned old rows", "rows", counts)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
