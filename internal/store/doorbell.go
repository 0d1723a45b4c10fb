package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/es"
)

// projectDoorbell keeps the ring indexes (by lock, by targeted user) in
// step with DoorbellRang events. Rebuild runs the same code.
func (s *Store) projectDoorbell(ctx context.Context, q querier, r es.Record) error {
	if r.Type != doorbell.TypeDoorbellRang {
		return nil
	}
	var e doorbell.DoorbellRang
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return fmt.Errorf("project %s: %w", r.Type, err)
	}
	lockID := fmt.Sprint(e.LockID)
	if _, err := q.ExecContext(ctx, s.sql(`INSERT INTO doorbell_rings (ring_id, lock_id, org_id, rang_at, event_seq) VALUES ($1, $2, $3, $4, $5)`),
		e.RingID, lockID, r.OrgID, e.Timestamp, r.Seq); err != nil {
		return fmt.Errorf("project %s: %w", r.Type, err)
	}
	for _, t := range e.Residents {
		if _, err := q.ExecContext(ctx, s.sql(`INSERT INTO doorbell_ring_targets (user_id, ring_id, lock_id, event_seq) VALUES ($1, $2, $3, $4)`),
			t.UserID, e.RingID, lockID, r.Seq); err != nil {
			return fmt.Errorf("project %s target: %w", r.Type, err)
		}
	}
	return nil
}

// Ring is one ring as the history routes list it: its position (the cursor)
// and the folded ring state.
type Ring struct {
	Seq   int64
	State json.RawMessage
}

// RingsByLock returns the rings of lockID, newest first, older than the
// position before (0 = from the newest), at most limit.
func (s *Store) RingsByLock(ctx context.Context, lockID string, before int64, limit int) ([]Ring, error) {
	return s.rings(ctx, `SELECT r.event_seq, a.state FROM doorbell_rings r
		JOIN aggregates a ON a.aggregate_type = 'doorbell-ring' AND a.aggregate_id = r.ring_id
		WHERE r.lock_id = $1 AND ($2 = 0 OR r.event_seq < $2) ORDER BY r.event_seq DESC LIMIT $3`, lockID, before, limit)
}

// RingsForUser returns the rings that targeted userID, newest first, with
// the paging of RingsByLock.
func (s *Store) RingsForUser(ctx context.Context, userID string, before int64, limit int) ([]Ring, error) {
	return s.rings(ctx, `SELECT t.event_seq, a.state FROM doorbell_ring_targets t
		JOIN aggregates a ON a.aggregate_type = 'doorbell-ring' AND a.aggregate_id = t.ring_id
		WHERE t.user_id = $1 AND ($2 = 0 OR t.event_seq < $2) ORDER BY t.event_seq DESC LIMIT $3`, userID, before, limit)
}

func (s *Store) rings(ctx context.Context, q string, key string, before int64, limit int) ([]Ring, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(q), key, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list rings: %w", err)
	}
	defer rows.Close()
	var out []Ring
	for rows.Next() {
		var r Ring
		var st string
		if err := rows.Scan(&r.Seq, &st); err != nil {
			return nil, fmt.Errorf("scan ring: %w", err)
		}
		r.State = json.RawMessage(st)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Delivery is the state of one notification outbox row.
type Delivery struct {
	OutboxID      int64
	RingID        string
	Target        string
	Consumer      string
	EventType     string
	Status        string
	Attempts      int
	LastError     string
	CreatedAt     string
	DoneAt        string
	NextAttemptAt string
}

// Deliveries returns the doorbell notification rows of the given rings,
// for every recipient (target "") or one, ordered by ring, recipient,
// consumer and row.
func (s *Store) Deliveries(ctx context.Context, ringIDs []string, target string) ([]Delivery, error) {
	if len(ringIDs) == 0 {
		return nil, nil
	}
	args := []any{target}
	ph := make([]string, len(ringIDs))
	for i, id := range ringIDs {
		args = append(args, id)
		ph[i] = fmt.Sprintf("$%d", i+2)
	}
	q := `SELECT o.id, o.aggregate_id, o.target, o.consumer, e.type, o.status, o.attempts, COALESCE(o.last_error, ''), o.created_at,
			COALESCE(o.done_at, ''), COALESCE(o.next_attempt_at, '')
		FROM outbox o JOIN events e ON e.seq = o.event_seq
		WHERE o.aggregate_type = 'doorbell-ring' AND o.consumer LIKE 'doorbell.%' AND ($1 = '' OR o.target = $1)
			AND o.aggregate_id IN (` + strings.Join(ph, ", ") + `)
		ORDER BY o.aggregate_id, o.target, o.consumer, o.id`
	rows, err := s.r.QueryContext(ctx, s.sql(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		if err := rows.Scan(&d.OutboxID, &d.RingID, &d.Target, &d.Consumer, &d.EventType, &d.Status, &d.Attempts, &d.LastError, &d.CreatedAt, &d.DoneAt, &d.NextAttemptAt); err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// FeedEntry is one entry of a user's live feed: what the live stream sends,
// numbered per user without gaps in commit order (the SSE event id).
type FeedEntry struct {
	UserID    string
	N         int64
	Kind      string // the event type: DoorbellRang, DoorbellAnswered, DoorbellDeclined
	RingID    string
	OutboxID  int64
	Data      json.RawMessage
	CreatedAt string
}

// AppendFeed adds e to its user's feed in this transaction and returns its
// number. On PostgreSQL a per-user advisory lock, held until commit, makes
// the numbers follow commit order, so a reader that resumes after number N
// never skips an entry committed later with a smaller number.
func (tx *Tx) AppendFeed(ctx context.Context, e FeedEntry) (int64, error) {
	s := tx.s
	if s.dialect == Postgres {
		if _, err := tx.q.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('spkey.feed:' || $1))`, e.UserID); err != nil {
			return 0, fmt.Errorf("lock feed of %s: %w", e.UserID, err)
		}
	}
	var n int64
	if err := tx.q.QueryRowContext(ctx, s.sql(`SELECT COALESCE(MAX(n), 0) + 1 FROM live_feed WHERE user_id = $1`), e.UserID).Scan(&n); err != nil {
		return 0, fmt.Errorf("number feed entry: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, s.sql(`INSERT INTO live_feed (user_id, n, kind, ring_id, outbox_id, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`),
		e.UserID, n, e.Kind, e.RingID, e.OutboxID, string(e.Data), e.CreatedAt); err != nil {
		return 0, fmt.Errorf("append feed entry: %w", err)
	}
	return n, nil
}

// Feed returns userID's feed entries numbered after `after`, oldest first,
// at most limit.
func (s *Store) Feed(ctx context.Context, userID string, after int64, limit int) ([]FeedEntry, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT n, kind, ring_id, outbox_id, data, created_at FROM live_feed
		WHERE user_id = $1 AND n > $2 ORDER BY n LIMIT $3`), userID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read feed: %w", err)
	}
	defer rows.Close()
	var out []FeedEntry
	for rows.Next() {
		e := FeedEntry{UserID: userID}
		var data string
		if err := rows.Scan(&e.N, &e.Kind, &e.RingID, &e.OutboxID, &data, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("scan feed entry: %w", err)
		}
		e.Data = json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// FeedHead returns the number of userID's newest feed entry (0 if none).
func (s *Store) FeedHead(ctx context.Context, userID string) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, s.sql(`SELECT COALESCE(MAX(n), 0) FROM live_feed WHERE user_id = $1`), userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	return n, nil
}
