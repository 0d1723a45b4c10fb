package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// RateWindow is the window of the per-tenant rate limits (replays,
// redeliveries).
const RateWindow = time.Hour

// RateLimitedError reports that a tenant used up a per-RateWindow quota;
// one more request is accepted at RetryAt.
type RateLimitedError struct{ RetryAt time.Time }

func (e *RateLimitedError) Error() string {
	return "store: rate limit reached until " + stamp(e.RetryAt)
}

// Advisory lock classes of lockTenant.
const (
	lockReplays      = 7331002
	lockRedeliveries = 7331003
)

// lockTenant serialises, on PostgreSQL, one tenant's requests of one class
// until the transaction ends, so that a check-then-insert (a running
// replay, a pending redelivery, a rate limit) is exact across nodes.
// SQLite has one writer already.
func (tx *Tx) lockTenant(ctx context.Context, class int, orgID string) error {
	if tx.s.dialect != Postgres {
		return nil
	}
	if _, err := tx.q.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || $2))`, class, orgID); err != nil {
		return fmt.Errorf("lock tenant %s: %w", orgID, err)
	}
	return nil
}

// checkRate returns a *RateLimitedError when table (which has org_id and
// created_at columns) holds perWindow rows of orgID created in the last
// RateWindow before now; perWindow 0 is no limit. RetryAt is when the
// perWindow-th newest of them leaves the window.
func (tx *Tx) checkRate(ctx context.Context, table, orgID string, now time.Time, perWindow int) error {
	if perWindow <= 0 {
		return nil
	}
	var at string
	err := tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT created_at FROM `+table+` WHERE org_id = $1 AND created_at > $2
		ORDER BY created_at DESC LIMIT 1 OFFSET $3`), orgID, stamp(now.Add(-RateWindow)), perWindow-1).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("count %s: %w", table, err)
	}
	oldest, err := time.Parse(domain.TimeLayout, at)
	if err != nil {
		return fmt.Errorf("read %s time: %w", table, err)
	}
	return &RateLimitedError{RetryAt: oldest.Add(RateWindow)}
}
