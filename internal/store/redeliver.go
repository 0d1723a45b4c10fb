package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
)

// ErrRedeliveryPending reports that an earlier redelivery of the same
// event to the same webhook is still undone (queued, leased or retrying).
var ErrRedeliveryPending = errors.New("store: a redelivery of this event to this webhook is still undone")

// Redeliver queues delivery d's event again for the same webhook, as a new
// row, records the redelivery and returns the row's id. It returns
// ErrRedeliveryPending while an earlier redelivery of d's event to d's
// webhook is undone, and a *RateLimitedError when d's tenant made
// perWindow redeliveries in the last RateWindow (perWindow 0: no limit);
// a refusal records nothing.
func (tx *Tx) Redeliver(ctx context.Context, d DeliveryRow, now time.Time, perWindow int) (int64, error) {
	if err := tx.lockTenant(ctx, lockRedeliveries, d.OrgID); err != nil {
		return 0, err
	}
	var open int
	err := tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT count(*) FROM (SELECT 1 FROM webhook_redeliveries r JOIN outbox o ON o.id = r.row_id
		WHERE r.webhook_id = $1 AND r.event_seq = $2 AND o.done_at IS NULL LIMIT 1) t`), d.Target, d.EventSeq).Scan(&open)
	if err != nil {
		return 0, fmt.Errorf("check pending redelivery: %w", err)
	}
	if open > 0 {
		return 0, ErrRedeliveryPending
	}
	if err := tx.checkRate(ctx, "webhook_redeliveries", d.OrgID, now, perWindow); err != nil {
		return 0, err
	}
	var id int64
	err = tx.q.QueryRowContext(ctx, tx.s.sql(`INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`), es.ConsumerWebhookSend, d.EventSeq, d.AggregateType, d.AggID, d.Version, d.OrgID, d.Target, stamp(now)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queue redelivery: %w", err)
	}
	_, err = tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO webhook_redeliveries (row_id, webhook_id, org_id, event_seq, created_at) VALUES ($1, $2, $3, $4, $5)`),
		id, d.Target, d.OrgID, d.EventSeq, stamp(now))
	if err != nil {
		return 0, fmt.Errorf("record redelivery: %w", err)
	}
	return id, nil
}
