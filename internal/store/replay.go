package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// DefaultReplayChunk is how many deliveries one step of a replay queues
// at most, in one transaction, unless told otherwise: a window
// (DefaultWebhookWindow). A step never queues more than fills the
// webhook's window (ReplayStep), so a larger chunk changes nothing
// unless the window is larger too.
const DefaultReplayChunk = DefaultWebhookWindow

// ErrReplayRunning reports that a replay of the webhook is still being
// queued or still has undone rows.
var ErrReplayRunning = errors.New("store: a replay of this webhook is still running")

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
	// PerWindow is how many replays the tenant may start per RateWindow
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
// being queued or has undone rows, and a *RateLimitedError when the
// tenant started r.PerWindow replays in the last RateWindow.
func (tx *Tx) StartReplay(ctx context.Context, r ReplayRequest) (int64, error) {
	w := r.Webhook
	if err := tx.lockTenant(ctx, lockReplays, w.OrgID); err != nil {
		return 0, err
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
	if err := tx.checkRate(ctx, "webhook_replays", w.OrgID, r.Now, r.PerWindow); err != nil {
		return 0, err
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

// ReplayProgress is what one ReplayStep did.
type ReplayProgress struct {
	// Queued is how many deliveries the step queued.
	Queued int
	// More is true when the step moved a replay (queued a chunk or ended
	// one): another step may at once move more.
	More bool
	// Open lists the webhooks that still have a replay open after the
	// step: being queued, or waiting for room in the webhook's window.
	Open []string
}

// ReplayStep queues the next chunk of the oldest open replay whose
// webhook has room, and moves its cursor in the same transaction. A
// replay is paced by its webhook's window (FanOutWebhooks): its next
// chunk is queued only while the webhook has fewer than half the window
// undone deliveries, and is at most chunk deliveries and at most what
// fills the window. So a replay never leaves the webhook a backlog of
// more than a window, which every ordered claim would scan. A replay
// that waits for room stays open (a second replay of the webhook is still
// refused); one whose webhook is gone or disabled ends here. On
// PostgreSQL nodes take different replays (SKIP LOCKED).
func (s *Store) ReplayStep(ctx context.Context, now time.Time, chunk, window int) (ReplayProgress, error) {
	if window <= 0 {
		window = DefaultWebhookWindow
	}
	if chunk <= 0 {
		chunk = DefaultReplayChunk
	}
	half := max(window/2, 1)
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var p ReplayProgress
	err := s.writeAside(ctx, func(ctx context.Context, tx *Tx) error {
		p = ReplayProgress{}
		type open struct {
			id     int64
			hook   string
			status string
		}
		var list []open
		rows, err := tx.q.QueryContext(ctx, `SELECT r.id, r.webhook_id, COALESCE(w.status, '') FROM webhook_replays r
			LEFT JOIN webhooks w ON w.webhook_id = r.webhook_id WHERE r.done_at IS NULL ORDER BY r.id`)
		if err != nil {
			return fmt.Errorf("read open replays: %w", err)
		}
		for rows.Next() {
			var o open
			if err := rows.Scan(&o.id, &o.hook, &o.status); err != nil {
				rows.Close()
				return fmt.Errorf("scan open replay: %w", err)
			}
			list = append(list, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read open replays: %w", err)
		}
		for _, o := range list {
			if o.status == "" || o.status == tenant.StatusDisabled {
				if err := s.endReplay(ctx, tx, o.id, now); err != nil {
					return err
				}
				p.More = true
				continue
			}
			if p.Queued > 0 {
				p.Open = append(p.Open, o.hook) // one chunk per step
				continue
			}
			var hook, org, evs, since string
			var cursor, upto int64
			err := tx.q.QueryRowContext(ctx, s.sql(`SELECT webhook_id, org_id, events, since, cursor_seq, upto_seq FROM webhook_replays
				WHERE id = $1 AND done_at IS NULL`+lock), o.id).Scan(&hook, &org, &evs, &since, &cursor, &upto)
			if errors.Is(err, sql.ErrNoRows) {
				continue // another node is queueing it, or it just ended
			}
			if err != nil {
				return fmt.Errorf("read replay %d: %w", o.id, err)
			}
			undone, err := tx.undone(ctx, []string{hook}, window)
			if err != nil {
				return err
			}
			u := undone[hook]
			if u >= half {
				p.Open = append(p.Open, hook) // waits for room
				continue
			}
			limit := min(chunk, window-u)
			n, err := s.queueReplayChunk(ctx, tx, o.id, hook, org, evs, since, cursor, upto, limit, now)
			if err != nil {
				return err
			}
			p.Queued, p.More = n, true
			if n < limit {
				if err := s.endReplay(ctx, tx, o.id, now); err != nil {
					return err
				}
				continue
			}
			p.Open = append(p.Open, hook)
		}
		return nil
	})
	return p, err
}

// queueReplayChunk queues the next (at most limit) deliveries of replay
// id, in event order, and moves its cursor past them. It returns how many
// it queued: fewer than limit when the replay has nothing more.
func (s *Store) queueReplayChunk(ctx context.Context, tx *Tx, id int64, hook, org, evs, since string, cursor, upto int64, limit int, now time.Time) (int, error) {
	var events []string
	if err := json.Unmarshal([]byte(evs), &events); err != nil {
		return 0, fmt.Errorf("decode replay %d events: %w", id, err)
	}
	all, list := replayFilter(events)
	match := `FROM events WHERE org_id = $1 AND org_id <> '' AND seq > $2 AND seq <= $3 AND ts >= $4 AND aggregate_type <> $5
		AND ($6 = 1 OR type IN (` + s.inList("$7") + `))`
	var n int
	var last int64
	err := tx.q.QueryRowContext(ctx, s.sql(`SELECT count(*), COALESCE(max(seq), 0) FROM (SELECT seq `+match+` ORDER BY seq LIMIT $8) t`),
		org, cursor, upto, since, tenant.AggregateType, all, list, limit).Scan(&n, &last)
	if err != nil {
		return 0, fmt.Errorf("read replay %d chunk: %w", id, err)
	}
	if n > 0 {
		_, err = tx.q.ExecContext(ctx, s.sql(`INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at, replay_id)
			SELECT $9, seq, aggregate_type, aggregate_id, version, org_id, $10, $11, $12 `+match+` AND seq <= $8 ORDER BY seq`),
			org, cursor, upto, since, tenant.AggregateType, all, list, last, es.ConsumerWebhookSend, hook, stamp(now), id)
		if err != nil {
			return 0, fmt.Errorf("queue replay %d chunk: %w", id, err)
		}
	}
	if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE webhook_replays SET cursor_seq = $1, queued = queued + $2 WHERE id = $3`), max(last, cursor), n, id); err != nil {
		return 0, fmt.Errorf("move replay %d: %w", id, err)
	}
	return n, nil
}

// endReplay ends replay id: everything it had to queue is queued, or its
// webhook is gone or disabled.
func (s *Store) endReplay(ctx context.Context, tx *Tx, id int64, now time.Time) error {
	if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE webhook_replays SET done_at = $1 WHERE id = $2 AND done_at IS NULL`), stamp(now), id); err != nil {
		return fmt.Errorf("end replay %d: %w", id, err)
	}
	return nil
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
