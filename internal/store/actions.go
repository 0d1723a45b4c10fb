package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
)

// LockActionsProjection keeps lock_actions (one row per device action of a
// lock) in step with LockActionUpdated.
func LockActionsProjection() Projection {
	return Projection{name: "lock-actions", tables: []string{"lock_actions"}, apply: (*Store).projectLockAction,
		dumps: []string{`SELECT lock_id, request_id, action, status, key_uuid, COALESCE(key_index, 0), at, error, created_at, updated_at, expires_at, open FROM lock_actions`}}
}

// FinishedActionsKept is how long a finished action stays readable.
const FinishedActionsKept = 30 * 24 * time.Hour

// LockAction is one action of a lock, as lock_actions holds it.
type LockAction struct {
	LockID    string
	RequestID string
	Action    string
	Status    string
	KeyUUID   string
	KeyIndex  *int64
	At        int64
	Error     string
	CreatedAt string
	UpdatedAt string
	// ExpiresAt is when an open action expires ("" once finished).
	ExpiresAt string
}

func (s *Store) projectLockAction(ctx context.Context, q querier, r es.Record) error {
	if r.Type != lock.TypeLockActionUpdated {
		return nil
	}
	var e lock.LockActionUpdated
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return fmt.Errorf("project %s: %w", r.Type, err)
	}
	open := 0
	if lock.Open(e.Status) {
		open = 1
	}
	if e.Status == lock.StatusPending || e.Status == lock.StatusQueued {
		// A new action: drop the lock's actions finished long before.
		if t, err := time.Parse(domain.TimeLayout, e.Timestamp); err == nil {
			cutoff := t.Add(-FinishedActionsKept).UTC().Format(domain.TimeLayout)
			if _, err := q.ExecContext(ctx, s.sql(`DELETE FROM lock_actions WHERE lock_id = $1 AND open = 0 AND updated_at < $2`), r.AggregateID, cutoff); err != nil {
				return fmt.Errorf("project %s of lock %s: %w", r.Type, r.AggregateID, err)
			}
		}
	}
	// A transition (lock.transition) carries no key slot: the row keeps
	// the first record's, as it keeps its created_at.
	_, err := q.ExecContext(ctx, s.sql(`INSERT INTO lock_actions (lock_id, request_id, action, status, key_uuid, key_index, at, error, created_at, updated_at, expires_at, open)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)
		ON CONFLICT (lock_id, request_id) DO UPDATE SET action = excluded.action, status = excluded.status, key_uuid = excluded.key_uuid,
		  key_index = CASE WHEN excluded.status IN ('pending', 'queued') THEN excluded.key_index ELSE lock_actions.key_index END, at = excluded.at, error = excluded.error, updated_at = excluded.updated_at,
		  expires_at = excluded.expires_at, open = excluded.open,
		  created_at = CASE WHEN excluded.status IN ('pending', 'queued') THEN excluded.created_at ELSE lock_actions.created_at END`),
		r.AggregateID, e.RequestID, e.Action, e.Status, e.KeyUUID, e.KeyIndexNumber, e.At, e.Error, e.Timestamp, e.ExpiresAt, open)
	if err != nil {
		return fmt.Errorf("project %s of lock %s: %w", r.Type, r.AggregateID, err)
	}
	return nil
}

// LockAction returns action requestID of lock lockID (its decimal id).
func (s *Store) LockAction(ctx context.Context, lockID, requestID string) (LockAction, bool, error) {
	a := LockAction{LockID: lockID, RequestID: requestID}
	var index sql.NullInt64
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT action, status, key_uuid, key_index, at, error, created_at, updated_at, expires_at
		FROM lock_actions WHERE lock_id = $1 AND request_id = $2`), lockID, requestID).
		Scan(&a.Action, &a.Status, &a.KeyUUID, &index, &a.At, &a.Error, &a.CreatedAt, &a.UpdatedAt, &a.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return LockAction{}, false, nil
	}
	if err != nil {
		return LockAction{}, false, fmt.Errorf("read action %s of lock %s: %w", requestID, lockID, err)
	}
	if index.Valid {
		a.KeyIndex = &index.Int64
	}
	return a, true, nil
}

// DueLockActions returns up to limit locks (decimal ids) with an open
// action whose expiry is at or before now, earliest first; none for a
// limit below 1.
func (s *Store) DueLockActions(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		// SQLite reads a negative LIMIT as none, PostgreSQL refuses it.
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT lock_id, MIN(expires_at) m FROM lock_actions WHERE open = 1 AND expires_at <= $1
		GROUP BY lock_id ORDER BY m LIMIT $2`), now.UTC().Format(domain.TimeLayout), limit)
	if err != nil {
		return nil, fmt.Errorf("list due actions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, m string
		if err := rows.Scan(&id, &m); err != nil {
			return nil, fmt.Errorf("scan due action: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list due actions: %w", err)
	}
	return out, nil
}
