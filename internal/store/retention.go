package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
)

// Retention says how long finished rows are kept; a zero horizon keeps
// them for ever. Events are never pruned, nor any row still pending.
type Retention struct {
	// Idempotency: Idempotency-Key records, by their creation time.
	Idempotency time.Duration
	// Deliveries: finished outbox rows (delivered, failed, skipped: doorbell
	// notifications, partner deliveries and the fan-out's partner rows)
	// with their delivery attempts, by when they finished, and finished
	// replays and redeliveries (kept at least RateWindow, which the rate
	// limits count).
	Deliveries time.Duration
	// LiveFeed: live-stream feed entries, by their creation time.
	LiveFeed time.Duration
	// Nonces: used portal sign-in nonces, by when they were used. It must
	// not be shorter than the longest link lifetime: a forgotten nonce is
	// fresh again.
	Nonces time.Duration
}

// DefaultPruneBatch is how many rows one pruning transaction deletes at
// most: the SQLite writer is never held long.
const DefaultPruneBatch = 1000

// Prune deletes the rows r's horizons have passed at now, at most batch
// rows per transaction, and returns how many it deleted per table. Rows
// still pending (undone, leased, retrying), partner rows a parked webhook
// has yet to be given, and events are kept. Deletes are idempotent:
// nodes of one PostgreSQL database may prune at the same time.
func (s *Store) Prune(ctx context.Context, now time.Time, r Retention, batch int) (map[string]int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	out := map[string]int64{}
	loop := func(table string, step func(ctx context.Context, tx *Tx) (int64, error)) error {
		for {
			var n int64
			err := s.writeAside(ctx, func(ctx context.Context, tx *Tx) error {
				var err error
				n, err = step(ctx, tx)
				return err
			})
			if err != nil {
				return fmt.Errorf("prune %s: %w", table, err)
			}
			out[table] += n
			if n < int64(batch) || ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	del := func(table, key, where string, cut time.Time) error {
		q := s.sql(`DELETE FROM ` + table + ` WHERE (` + key + `) IN (SELECT ` + key + ` FROM ` + table + ` WHERE ` + where + ` LIMIT $2)`)
		return loop(table, func(ctx context.Context, tx *Tx) (int64, error) {
			res, err := tx.q.ExecContext(ctx, q, stamp(cut), batch)
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		})
	}
	if r.Idempotency > 0 {
		if err := del("idempotency", "scope, key", `created_at < $1`, now.Add(-r.Idempotency)); err != nil {
			return out, err
		}
	}
	if r.LiveFeed > 0 {
		if err := del("live_feed", "user_id, n", `created_at < $1`, now.Add(-r.LiveFeed)); err != nil {
			return out, err
		}
	}
	if r.Nonces > 0 {
		if err := del("portal_nonces", "nonce", `used_at < $1`, now.Add(-r.Nonces)); err != nil {
			return out, err
		}
	}
	if r.Deliveries > 0 {
		cut := now.Add(-r.Deliveries)
		if err := loop("outbox", func(ctx context.Context, tx *Tx) (int64, error) { return tx.pruneOutbox(ctx, cut, batch, out) }); err != nil {
			return out, err
		}
		if w := now.Add(-RateWindow); w.Before(cut) {
			cut = w // the rate limits count the last hour's replays and redeliveries
		}
		if err := del("webhook_replays", "id", `done_at IS NOT NULL AND done_at < $1 AND created_at < $1`, cut); err != nil {
			return out, err
		}
		// A redelivery is kept while its row is undone (the pending check)
		// and for the window of the rate limit.
		if err := del("webhook_redeliveries", "row_id", `created_at < $1
			AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = webhook_redeliveries.row_id AND o.done_at IS NULL)`, cut); err != nil {
			return out, err
		}
	}
	return out, nil
}

// pruneOutbox deletes up to batch outbox rows finished before cut, and
// their delivery attempts (counted in out), and returns how many rows.
func (tx *Tx) pruneOutbox(ctx context.Context, cut time.Time, batch int, out map[string]int64) (int64, error) {
	// A parked webhook is given the finished partner rows from its
	// parked_from on when its queue drains: those stay.
	rows, err := tx.q.QueryContext(ctx, tx.s.sql(`SELECT id FROM outbox WHERE done_at IS NOT NULL AND done_at < $1
		AND (consumer <> $2 OR id < (SELECT COALESCE(min(parked_from), $3) FROM webhook_backlog)) LIMIT $4`),
		stamp(cut), es.ConsumerWebhooks, int64(1)<<62, batch)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, fmt.Sprint(id))
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return 0, err
	}
	in := strings.Join(ids, ",") // integers read just above
	res, err := tx.q.ExecContext(ctx, `DELETE FROM delivery_attempts WHERE outbox_id IN (`+in+`)`)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	out["delivery_attempts"] += n
	// done_at IS NOT NULL again: a row is never pending once done, but
	// the statement says what it keeps.
	res, err = tx.q.ExecContext(ctx, `DELETE FROM outbox WHERE done_at IS NOT NULL AND id IN (`+in+`)`)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
