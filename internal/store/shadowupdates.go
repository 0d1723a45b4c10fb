package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// Partner Shadow Updates: an accepted device update of a shadow is sent to
// the partner as upstream's "Shadow Update" through the partner webhook
// consumer, like an event, but it is not an event: its outbox row carries
// its rendered detail (outbox.payload) and no event (event_seq 0). The
// fan-out copies the payload into each delivery row; retention prunes it
// with its row.

// ShadowUpdateAggregate is the aggregate_type of the outbox rows of a
// Shadow Update (their aggregate_id names the shadow).
const ShadowUpdateAggregate = "shadow"

// ShadowUpdateType is the detail-type of a Shadow Update, the name a
// webhook's event filter subscribes to it with.
const ShadowUpdateType = "Shadow Update"

// rowType is the SQL type of outbox row o (joined to its event e): its
// event's type, or ShadowUpdateType for a Shadow Update.
const rowType = `CASE WHEN o.aggregate_type = '` + ShadowUpdateAggregate + `' THEN '` + ShadowUpdateType + `' ELSE COALESCE(e.type, '') END`

// EnqueueShadowUpdate queues, in this transaction, the partner row of one
// Shadow Update of tenant orgID about shadow aggID at version, whose
// detail is payload (at most maxShadowPayload bytes), if orgID has a
// webhook, not disabled, whose filter lets "Shadow Update" through; it
// wakes the fan-out after commit. It reports whether it queued the row.
func (tx *Tx) EnqueueShadowUpdate(ctx context.Context, orgID, aggID string, version int64, payload []byte, now string) (bool, error) {
	if orgID == "" || aggID == "" {
		return false, fmt.Errorf("enqueue shadow update: empty tenant or shadow")
	}
	if len(payload) == 0 || len(payload) > MaxShadowUpdateBytes {
		return false, fmt.Errorf("enqueue shadow update of %s: payload of %d bytes (want 1 to %d)", aggID, len(payload), MaxShadowUpdateBytes)
	}
	want, err := tx.wantsShadowUpdates(ctx, orgID)
	if err != nil || !want {
		return false, err
	}
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at, payload)
		VALUES ($1, 0, $2, $3, $4, $5, '', $6, $7)`), es.ConsumerWebhooks, ShadowUpdateAggregate, aggID, version, orgID, now, string(payload)); err != nil {
		return false, fmt.Errorf("enqueue shadow update of %s: %w", aggID, err)
	}
	tx.Wake(es.ConsumerWebhooks)
	return true, nil
}

// MaxShadowUpdateBytes bounds the detail of one Shadow Update. A shadow's
// states are bounded (8 KB each, shadow.Limits) and so is its metadata:
// a detail is well under this.
const MaxShadowUpdateBytes = 256 << 10

// wantsShadowUpdates reports whether tenant orgID has a webhook, not
// disabled, subscribed to Shadow Updates (or to everything).
func (tx *Tx) wantsShadowUpdates(ctx context.Context, orgID string) (bool, error) {
	rows, err := tx.q.QueryContext(ctx, tx.s.sql(`SELECT `+webhookCols+` FROM webhooks WHERE org_id = $1 AND status <> $2`), orgID, tenant.StatusDisabled)
	if err != nil {
		return false, fmt.Errorf("read webhooks of %s: %w", orgID, err)
	}
	defer rows.Close()
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return false, err
		}
		if w.Matches(ShadowUpdateType) {
			return true, nil
		}
	}
	return false, rows.Err()
}

// OutboxPayload returns the payload of outbox row id (a Shadow Update's
// detail); found is false when the row is gone or has none.
func (s *Store) OutboxPayload(ctx context.Context, id int64) ([]byte, bool, error) {
	var p sql.NullString
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT payload FROM outbox WHERE id = $1`), id).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !p.Valid) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read outbox row %d payload: %w", id, err)
	}
	return []byte(p.String), true, nil
}
