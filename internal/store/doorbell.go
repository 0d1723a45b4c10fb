package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/es"
)

// The ring indexes' rows.
var (
	ringInsert       = newSeqInsert("doorbell_rings", "ring_id, lock_id, org_id, rang_at", 4)
	ringTargetInsert = newSeqInsert("doorbell_ring_targets", "user_id, ring_id, lock_id", 3)
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
	if err := s.insertWithSeq(ctx, q, ringInsert, r, e.RingID, lockID, r.OrgID, e.Timestamp); err != nil {
		return fmt.Errorf("project %s: %w", r.Type, err)
	}
	for _, t := range e.Residents {
		if err := s.insertWithSeq(ctx, q, ringTargetInsert, r, t.UserID, e.RingID, lockID); err != nil {
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
// position before (0 = from the newest), at most limit; only those rung
// while tenant org owned the lock unless org is "".
func (s *Store) RingsByLock(ctx context.Context, lockID, org string, before int64, limit int) ([]Ring, error) {
	return s.rings(ctx, `SELECT r.event_seq, a.state FROM doorbell_rings r
		JOIN aggregates a ON a.aggregate_type = 'doorbell-ring' AND a.aggregate_id = r.ring_id
		WHERE r.lock_id = $1 AND ($2 = 0 OR r.event_seq < $2) AND ($4 = '' OR r.org_id = $4) ORDER BY r.event_seq DESC LIMIT $3`, lockID, before, limit, org)
}

// RingsForUser returns the rings that targeted userID, newest first, with
// the paging of RingsByLock; only those of tenant org unless org is "".
func (s *Store) RingsForUser(ctx context.Context, userID, org string, before int64, limit int) ([]Ring, error) {
	return s.rings(ctx, `SELECT t.event_seq, a.state FROM doorbell_ring_targets t
		JOIN doorbell_rings r ON r.ring_id = t.ring_id
		JOIN aggregates a ON a.aggregate_type = 'doorbell-ring' AND a.aggregate_id = t.ring_id
		WHERE t.user_id = $1 AND ($2 = 0 OR t.event_seq < $2) AND ($4 = '' OR r.org_id = $4) ORDER BY t.event_seq DESC LIMIT $3`, userID, before, limit, org)
}

func (s *Store) rings(ctx context.Context, q string, args ...any) ([]Ring, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(q), args...)
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
	OrgID     string // the ring's tenant
}

// LiveItem is one claimed live-channel row and the feed entry that
// delivers it.
type LiveItem struct {
	Claim Claim
	Kind  string // the event type
	Data  json.RawMessage
}

// DeliverLive appends each item's entry to its user's feed and records the
// item's row as delivered by node (one attempt each), all in this
// transaction. Entries are numbered per user through live_feed_heads,
// whose row stays locked until commit, so a user's numbers follow commit
// order and a reader resuming after number N never skips an entry
// committed later with a smaller number. Users are locked in id order, so
// nodes delivering overlapping batches cannot deadlock. It returns the
// entries written (numbered, by user in number order) and the rows whose
// lease node had lost (nothing is written for those).
func (tx *Tx) DeliverLive(ctx context.Context, node string, at time.Time, latency time.Duration, items []LiveItem) ([]FeedEntry, map[int64]bool, error) {
	lost := map[int64]bool{}
	if len(items) == 0 {
		return nil, lost, nil
	}
	var kept []LiveItem
	if tx.s.dialect == Postgres {
		ids := make([]int64, len(items))
		for i, it := range items {
			ids[i] = it.Claim.ID
		}
		done, err := tx.finishDeliveredPG(ctx, node, at, latency, ids)
		if err != nil {
			return nil, nil, err
		}
		for _, it := range items {
			if done[it.Claim.ID] {
				kept = append(kept, it)
			} else {
				lost[it.Claim.ID] = true
			}
		}
	} else {
		for _, it := range items {
			err := tx.Finish(ctx, it.Claim, node, Outcome{Status: StatusDelivered, At: at, Latency: latency})
			if errors.Is(err, ErrLeaseLost) {
				lost[it.Claim.ID] = true
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			kept = append(kept, it)
		}
	}
	// Group by user (in id order), keeping each user's items in order.
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Claim.Target < kept[j].Claim.Target })
	var users []string
	var counts []int64
	for _, it := range kept {
		if n := len(users); n > 0 && users[n-1] == it.Claim.Target {
			counts[n-1]++
			continue
		}
		users, counts = append(users, it.Claim.Target), append(counts, 1)
	}
	heads, err := tx.advanceHeads(ctx, users, counts)
	if err != nil {
		return nil, nil, err
	}
	created := stamp(at)
	next := map[string]int64{}
	for i, u := range users {
		next[u] = heads[u] - counts[i] + 1
	}
	// Number the entries once; both dialects insert these.
	entries := make([]FeedEntry, len(kept))
	for i, it := range kept {
		u := it.Claim.Target
		entries[i] = FeedEntry{UserID: u, N: next[u], Kind: it.Kind, RingID: it.Claim.AggregateID,
			OutboxID: it.Claim.ID, Data: it.Data, CreatedAt: created, OrgID: it.Claim.OrgID}
		next[u]++
	}
	if tx.s.dialect == Postgres {
		n := len(entries)
		uu, nn, kk, rr, oo, dd, gg := make([]string, n), make([]int64, n), make([]string, n), make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
		for i, e := range entries {
			uu[i], nn[i], kk[i], rr[i], oo[i], dd[i], gg[i] = e.UserID, e.N, e.Kind, e.RingID, e.OutboxID, string(e.Data), e.OrgID
		}
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO live_feed (user_id, n, kind, ring_id, outbox_id, data, org_id, created_at)
			SELECT u, n, k, r, o, d, g, $8 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) AS x(u, n, k, r, o, d, g)`,
			uu, nn, kk, rr, oo, dd, gg, created); err != nil {
			return nil, nil, fmt.Errorf("append feed entries: %w", err)
		}
		return entries, lost, nil
	}
	for _, e := range entries {
		if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO live_feed (user_id, n, kind, ring_id, outbox_id, data, org_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`),
			e.UserID, e.N, e.Kind, e.RingID, e.OutboxID, string(e.Data), e.OrgID, created); err != nil {
			return nil, nil, fmt.Errorf("append feed entry: %w", err)
		}
	}
	return entries, lost, nil
}

// finishDeliveredPG marks rows ids delivered by node and records one
// attempt each, in two statements; it returns the rows node still held.
func (tx *Tx) finishDeliveredPG(ctx context.Context, node string, at time.Time, latency time.Duration, ids []int64) (map[int64]bool, error) {
	rows, err := tx.q.QueryContext(ctx, `UPDATE outbox SET attempts = attempts + 1, status = 'delivered', done_at = $1, next_attempt_at = NULL,
		last_error = NULL, claimed_by = NULL, claimed_until = NULL
		WHERE id = ANY($2) AND claimed_by = $3 AND done_at IS NULL RETURNING id, attempts`, stamp(at), ids, node)
	if err != nil {
		return nil, fmt.Errorf("finish live rows: %w", err)
	}
	done := map[int64]bool{}
	var dids, atts []int64
	for rows.Next() {
		var id, a int64
		if err := rows.Scan(&id, &a); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan finished row: %w", err)
		}
		done[id] = true
		dids, atts = append(dids, id), append(atts, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finish live rows: %w", err)
	}
	if len(dids) > 0 {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO delivery_attempts (outbox_id, attempt, at, node, outcome, status_code, error, latency_ms)
			SELECT i, a, $3, $4, 'delivered', 0, '', $5 FROM unnest($1::bigint[], $2::bigint[]) AS x(i, a)`,
			dids, atts, stamp(at), node, latency.Milliseconds()); err != nil {
			return nil, fmt.Errorf("record live attempts: %w", err)
		}
	}
	return done, nil
}

// advanceHeads moves each user's feed head on by its count (users in id
// order) and returns the new heads.
func (tx *Tx) advanceHeads(ctx context.Context, users []string, counts []int64) (map[string]int64, error) {
	heads := map[string]int64{}
	if len(users) == 0 {
		return heads, nil
	}
	if tx.s.dialect == Postgres {
		rows, err := tx.q.QueryContext(ctx, `INSERT INTO live_feed_heads (user_id, n)
			SELECT u, k FROM unnest($1::text[], $2::bigint[]) AS x(u, k) ORDER BY u
			ON CONFLICT (user_id) DO UPDATE SET n = live_feed_heads.n + EXCLUDED.n RETURNING user_id, n`, users, counts)
		if err != nil {
			return nil, fmt.Errorf("advance feed heads: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var n int64
			if err := rows.Scan(&u, &n); err != nil {
				return nil, fmt.Errorf("scan feed head: %w", err)
			}
			heads[u] = n
		}
		return heads, rows.Err()
	}
	for i, u := range users {
		var n int64
		if err := tx.q.QueryRowContext(ctx, tx.s.sql(`INSERT INTO live_feed_heads (user_id, n) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET n = n + excluded.n RETURNING n`), u, counts[i]).Scan(&n); err != nil {
			return nil, fmt.Errorf("advance feed head of %s: %w", u, err)
		}
		heads[u] = n
	}
	return heads, nil
}

// FeedFor returns userID's feed entries numbered after `after`, oldest
// first, at most limit, restricted to the rings of tenant org ("" = all): a
// user linked to several tenants has one feed, and each tenant's key sees
// its own part. Numbers keep their gaps.
func (s *Store) FeedFor(ctx context.Context, userID, org string, after int64, limit int) ([]FeedEntry, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT n, kind, ring_id, outbox_id, data, created_at, org_id FROM live_feed
		WHERE user_id = $1 AND n > $2 AND ($4 = '' OR org_id = $4) ORDER BY n LIMIT $3`), userID, after, limit, org)
	if err != nil {
		return nil, fmt.Errorf("read feed: %w", err)
	}
	defer rows.Close()
	var out []FeedEntry
	for rows.Next() {
		e := FeedEntry{UserID: userID}
		var data string
		if err := rows.Scan(&e.N, &e.Kind, &e.RingID, &e.OutboxID, &data, &e.CreatedAt, &e.OrgID); err != nil {
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
	if err := s.r.QueryRowContext(ctx, s.sql(`SELECT COALESCE(MAX(n), 0) FROM live_feed_heads WHERE user_id = $1`), userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	return n, nil
}
