package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// DefaultReplayChunk is how many deliveries one step of a replay queues,
// in one transaction, unless told otherwise: a replay of 100,000 events
// is 100 short transactions, not one long hold of the SQLite writer.
const DefaultReplayChunk = 1000

// ReplayWindow is the window of the per-tenant replay rate limit.
const ReplayWindow = time.Hour

// ErrReplayRunning reports that a replay of the webhook is still being
// queued or still has undone rows.
var ErrReplayRunning = errors.New("store: a replay of this webhook is still running")

// ReplayLimitedError reports that the tenant used up its replays of the
// last ReplayWindow; one more is accepted at RetryAt.
type ReplayLimitedError struct{ RetryAt time.Time }

func (e *ReplayLimitedError) Error() string {
	return "store: replay rate limit reached until " + stamp(e.RetryAt)
}

// ReplayRequest asks for a replay of webhook Webhook: every event of its
// tenant recorded at or after Since that its filter matches (tenant
// settings excepted), in event order.
type ReplayRequest struct {
	Webhook WebhookRow
	Since   time.Time
	Now     time.Time
	// Max is the most events one replay may queue: with more, StartReplay
	// records nothing and returns Max+1.
	Max int
	// PerWindow is how many replays the tenant may start per ReplayWindow
	// (0: no limit).
	PerWindow int
}

// replayFilter returns the filter arguments of a replay of events: all is
// 1 for every type, list the JSON list of types otherwise.
func replayFilter(events []string) (all int, list string) {
	if slices.Contains(events, tenant.AllEvents) {
		return 1, "[]"
	}
	b, _ := json.Marshal(events)
	return 0, string(b)
}

// inList is a subquery over the JSON text list in parameter ph.
func (s *Store) inList(ph string) string {
	if s.dialect == Postgres {
		return `SELECT json_array_elements_text(` + ph + `::json)`
	}
	return `SELECT value FROM json_each(` + ph + `)`
}

// StartReplay records a replay of r.Webhook and returns how many events
// it will queue; the engine queues them in chunks (ReplayStep), each
// chunk with the replay's cursor in one transaction, so an accepted
// replay completes, exactly once, across crashes and restarts. It
// returns ErrReplayRunning while an earlier replay of the webhook is
// being queued or has undone rows, and a *ReplayLimitedError when the
// tenant started r.PerWindow replays in the last ReplayWindow.
func (tx *Tx) StartReplay(ctx context.Context, r ReplayRequest) (int64, error) {
	w := r.Webhook
	if tx.s.dialect == Postgres {
		// One tenant's replays are started one at a time (the limit and
		// the running check are then exact across nodes).
		if _, err := tx.q.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7331002, hashtext(current_schema() || '/' || $1))`, w.OrgID); err != nil {
			return 0, fmt.Errorf("replay lock: %w", err)
		}
	}
	var open int
	err := tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT (SELECT count(*) FROM (SELECT 1 FROM webhook_replays WHERE webhook_id = $1 AND done_at IS NULL LIMIT 1) a)
		+ (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE target = $1 AND replay_id IS NOT NULL AND done_at IS NULL LIMIT 1) b)`), w.ID).Scan(&open)
	if err != nil {
		return 0, fmt.Errorf("check running replay: %w", err)
	}
	if open > 0 {
		return 0, ErrReplayRunning
	}
	if r.PerWindow > 0 {
		rows, err := tx.q.QueryContext(ctx, tx.s.sql(`SELECT created_at FROM webhook_replays WHERE org_id = $1 AND created_at > $2 ORDER BY created_at DESC LIMIT $3`),
			w.OrgID, stamp(r.Now.Add(-ReplayWindow)), r.PerWindow)
		if err != nil {
			return 0, fmt.Errorf("count replays: %w", err)
		}
		var recent []string
		for rows.Next() {
			var at string
			if err := rows.Scan(&at); err != nil {
				rows.Close()
				return 0, fmt.Errorf("count replays: %w", err)
			}
			recent = append(recent, at)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("count replays: %w", err)
		}
		if len(recent) >= r.PerWindow {
			// The oldest of the last PerWindow leaving the window makes room.
			oldest, err := time.Parse(domain.TimeLayout, recent[len(recent)-1])
			if err != nil {
				return 0, fmt.Errorf("read replay time: %w", err)
			}
			return 0, &ReplayLimitedError{RetryAt: oldest.Add(ReplayWindow)}
		}
	}
	var upto int64
	if err := tx.q.QueryRowContext(ctx, `SELECT COALESCE(max(seq), 0) FROM events`).Scan(&upto); err != nil {
		return 0, fmt.Errorf("read last event: %w", err)
	}
	all, list := replayFilter(w.Events)
	var n int64
	err = tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT count(*) FROM (SELECT 1 FROM events
		WHERE org_id = $1 AND ts >= $2 AND aggregate_type <> $3 AND seq <= $4 AND ($5 = 1 OR type IN (`+tx.s.inList("$6")+`)) LIMIT $7) t`),
		w.OrgID, stamp(r.Since), tenant.AggregateType, upto, all, list, r.Max+1).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count replay: %w", err)
	}
	if n > int64(r.Max) {
		return n, nil
	}
	evs, _ := json.Marshal(w.Events)
	var done any
	if n == 0 {
		done = stamp(r.Now) // nothing to queue; it still counts
	}
	_, err = tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO webhook_replays (webhook_id, org_id, events, since, cursor_seq, upto_seq, total, created_at, done_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8)`), w.ID, w.OrgID, string(evs), stamp(r.Since), upto, n, stamp(r.Now), done)
	if err != nil {
		return 0, fmt.Errorf("record replay: %w", err)
	}
	return n, nil
}

// ReplayStep queues the next chunk (at most chunk deliveries, in event
// order) of the oldest replay still being queued, and moves its cursor in
// the same transaction; a replay whose webhook is gone or disabled ends
// there. On PostgreSQL nodes take different replays (SKIP LOCKED). more
// is true when a replay may have more to queue.
func (s *Store) ReplayStep(ctx context.Context, now time.Time, chunk int) (more bool, queued int, err error) {
	if chunk <= 0 {
		chunk = DefaultReplayChunk
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	err = s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		more, queued = false, 0
		var id, cursor, upto int64
		var hook, org, evs, since string
		err := tx.q.QueryRowContext(ctx, `SELECT id, webhook_id, org_id, events, since, cursor_seq, upto_seq FROM webhook_replays
			WHERE done_at IS NULL ORDER BY id LIMIT 1`+lock).Scan(&id, &hook, &org, &evs, &since, &cursor, &upto)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read replay: %w", err)
		}
		more = true
		end := func() error {
			_, err := tx.q.ExecContext(ctx, s.sql(`UPDATE webhook_replays SET done_at = $1 WHERE id = $2`), stamp(now), id)
			if err != nil {
				return fmt.Errorf("end replay %d: %w", id, err)
			}
			return nil
		}
		var status string
		err = tx.q.QueryRowContext(ctx, s.sql(`SELECT status FROM webhooks WHERE webhook_id = $1`), hook).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) || status == tenant.StatusDisabled {
			return end()
		}
		if err != nil {
			return fmt.Errorf("read webhook %s: %w", hook, err)
		}
		var events []string
		if err := json.Unmarshal([]byte(evs), &events); err != nil {
			return fmt.Errorf("decode replay %d events: %w", id, err)
		}
		all, list := replayFilter(events)
		match := `FROM events WHERE org_id = $1 AND org_id <> '' AND seq > $2 AND seq <= $3 AND ts >= $4 AND aggregate_type <> $5
			AND ($6 = 1 OR type IN (` + s.inList("$7") + `))`
		var n int
		var last int64
		err = tx.q.QueryRowContext(ctx, s.sql(`SELECT count(*), COALESCE(max(seq), 0) FROM (SELECT seq `+match+` ORDER BY seq LIMIT $8) t`),
			org, cursor, upto, since, tenant.AggregateType, all, list, chunk).Scan(&n, &last)
		if err != nil {
			return fmt.Errorf("read replay %d chunk: %w", id, err)
		}
		if n > 0 {
			_, err = tx.q.ExecContext(ctx, s.sql(`INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at, replay_id)
				SELECT $9, seq, aggregate_type, aggregate_id, version, org_id, $10, $11, $12 `+match+` AND seq <= $8 ORDER BY seq`),
				org, cursor, upto, since, tenant.AggregateType, all, list, last, es.ConsumerWebhookSend, hook, stamp(now), id)
			if err != nil {
				return fmt.Errorf("queue replay %d chunk: %w", id, err)
			}
			queued = n
		}
		if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE webhook_replays SET cursor_seq = $1, queued = queued + $2 WHERE id = $3`), max(last, cursor), n, id); err != nil {
			return fmt.Errorf("move replay %d: %w", id, err)
		}
		if n < chunk {
			return end()
		}
		return nil
	})
	return more, queued, err
}

// endReplays ends the replays of webhook id still being queued (it was
// deleted or disabled).
func (tx *Tx) endReplays(ctx context.Context, id string, now time.Time) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`UPDATE webhook_replays SET done_at = $1 WHERE webhook_id = $2 AND done_at IS NULL`), stamp(now), id); err != nil {
		return fmt.Errorf("end replays of %s: %w", id, err)
	}
	return nil
}

// OpenReplays counts the replays still being queued (their rows are not
// all in the outbox yet).
func (s *Store) OpenReplays(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM webhook_replays WHERE done_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count open replays: %w", err)
	}
	return n, nil
}
