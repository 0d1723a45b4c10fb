package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
)

// Delivery statuses of an outbox row.
const (
	StatusPending   = "pending"   // not delivered yet; may be retrying
	StatusDelivered = "delivered" // done
	StatusFailed    = "failed"    // gave up: attempts exhausted or a final refusal
	StatusSkipped   = "skipped"   // nothing to send any more (resident removed, channel off, quiet hours)
)

// OutcomeRetry asks Finish to keep a row pending and try again later.
const OutcomeRetry = "retry"

// OutcomeDefer asks a dispatcher to hand a row back without an attempt
// (Store.Defer): it was not tried at all.
const OutcomeDefer = "defer"

func stamp(t time.Time) string { return t.UTC().Format(domain.TimeLayout) }

// pgStamp is PostgreSQL SQL rendering the timestamptz expression expr as
// stamp does (domain.TimeLayout, UTC).
func pgStamp(expr string) string {
	return `to_char((` + expr + `) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
}

// Enqueue adds, in this transaction, one outbox row for consumer about the
// stored record r (appended, or read back with its Seq), aimed at target ("" for none),
// and wakes the consumer after commit (Wake). The consumer claims it after
// commit. (Rows about appended events come from the Router instead.)
func (tx *Tx) Enqueue(ctx context.Context, consumer string, r es.Record, target string) error {
	if err := tx.enqueue(ctx, consumer, r, target); err != nil {
		return err
	}
	tx.Wake(consumer)
	return nil
}

func (tx *Tx) enqueue(ctx context.Context, consumer string, r es.Record, target string) error {
	_, err := tx.insertOutbox(ctx, outboxInsert, consumer, r, target)
	return err
}

// outboxCols are the columns of an outbox row besides event_seq.
const outboxCols = "consumer, aggregate_type, aggregate_id, version, org_id, target, created_at"

// outboxInsert queues one outbox row.
var outboxInsert = newSeqInsert("outbox", outboxCols, 7)

// insertOutbox runs ins (outboxInsert or a conditional form of it) for the
// row of consumer about the stored event r, aimed at target.
func (tx *Tx) insertOutbox(ctx context.Context, ins seqInsert, consumer string, r es.Record, target string) (sql.Result, error) {
	res, err := tx.s.insertWithSeqResult(ctx, tx.q, ins, r, consumer, r.AggregateType, r.AggregateID, r.Version, r.OrgID, target, r.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s row: %w", consumer, err)
	}
	return res, nil
}

// AfterCommit runs f once this transaction has committed (never when it
// rolls back). f must not block.
func (tx *Tx) AfterCommit(f func()) { tx.b.after = append(tx.b.after, f) }

// Claim is one outbox row leased to a node for delivery.
type Claim struct {
	es.OutboxRow
	Attempts  int    // attempts already recorded
	CreatedAt string // when the row was queued
}

// Claim leases up to limit due rows of consumer to node until now+lease and
// returns them oldest first. Rows whose lease ran out (a node died while
// delivering) are due again. On PostgreSQL concurrent claimers skip each
// other's rows (FOR UPDATE SKIP LOCKED), so every row goes to one node.
func (s *Store) Claim(ctx context.Context, consumer, node string, now time.Time, lease time.Duration, limit int) ([]Claim, error) {
	return s.ClaimWith(ctx, consumer, node, now, lease, limit, ClaimOptions{})
}

// ClaimOptions narrows a claim.
type ClaimOptions struct {
	// Ordered claims a row only when no older undone row of the same
	// consumer, target and aggregate exists: each target gets one
	// aggregate's rows one at a time, in queue order.
	Ordered bool
	// Exclude lists targets whose rows are not claimed now.
	Exclude []string
	// PerTarget, when > 0, claims at most this many rows of one target.
	PerTarget int
}

// claimScan is how many of the oldest due rows, per row wanted, a claim
// with PerTarget looks at.
const claimScan = 8

// ClaimWith is Claim narrowed by opt.
func (s *Store) ClaimWith(ctx context.Context, consumer, node string, now time.Time, lease time.Duration, limit int, opt ClaimOptions) ([]Claim, error) {
	var out []Claim
	lockClause := ""
	if s.dialect == Postgres {
		lockClause = " FOR UPDATE SKIP LOCKED"
	}
	n := stamp(now)
	// Leases are set and compared on the database's clock on PostgreSQL
	// (nodes' clocks may disagree; a node whose clock runs ahead must
	// not take a row another node still holds). SQLite has one node: its
	// clock is the database's.
	var until any = stamp(now.Add(lease))
	leaseEnd, leaseNow := "$2", "$4"
	if s.dialect == Postgres {
		until, leaseEnd, leaseNow = lease.Milliseconds(), pgStamp("now() + $2 * interval '1 millisecond'"), pgStamp("now()")
	}
	args := []any{node, until, consumer, n, limit}
	extra := ""
	if opt.Ordered {
		// The head of its (target, aggregate) queue: one index probe on
		// outbox_target_order (a NOT EXISTS form was planned by PostgreSQL,
		// with stale statistics, as a scan of every pending row per row).
		extra += ` AND o.id = (SELECT min(p.id) FROM outbox p WHERE p.consumer = o.consumer AND p.target = o.target
			AND p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id AND p.done_at IS NULL)`
	}
	if len(opt.Exclude) > 0 {
		// One JSON parameter, not one placeholder each: the statement's
		// text stays the same, so it is prepared once (stmtCache).
		list, _ := json.Marshal(opt.Exclude)
		args = append(args, string(list))
		ph := fmt.Sprintf("$%d", len(args))
		if s.dialect == Postgres {
			extra += ` AND o.target NOT IN (SELECT json_array_elements_text(` + ph + `::json))`
		} else {
			extra += ` AND o.target NOT IN (SELECT value FROM json_each(` + ph + `))`
		}
	}
	pick := `SELECT o.id FROM outbox o WHERE o.consumer = $3 AND o.done_at IS NULL
			AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= $4)
			AND (o.claimed_until IS NULL OR o.claimed_until <= ` + leaseNow + `)` + extra + `
			ORDER BY o.id LIMIT $5` + lockClause
	if opt.PerTarget > 0 && limit > opt.PerTarget {
		// At most PerTarget rows of one target among the oldest due
		// rows (claimScan per row wanted): a block of one target's rows
		// (a replay, a catch-up) is not claimed only to be handed back.
		// (A claim of no more rows than that needs no cap: the common
		// claim of a row or two as attempts end costs no more.)
		args = append(args, opt.PerTarget, limit*claimScan)
		capPH, scanPH := fmt.Sprintf("$%d", len(args)-1), fmt.Sprintf("$%d", len(args))
		pick = `SELECT c.id FROM (SELECT w.id, row_number() OVER (PARTITION BY w.target ORDER BY w.id) AS rn FROM (
			SELECT o.id, o.target FROM outbox o WHERE o.consumer = $3 AND o.done_at IS NULL
			AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= $4)
			AND (o.claimed_until IS NULL OR o.claimed_until <= ` + leaseNow + `)` + extra + `
			ORDER BY o.id LIMIT ` + scanPH + lockClause + `) w) c WHERE c.rn <= ` + capPH + ` ORDER BY c.id LIMIT $5`
	}
	q := s.sql(`UPDATE outbox SET claimed_by = $1, claimed_until = ` + leaseEnd + `
		WHERE id IN (` + pick + `)
		RETURNING id, consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, attempts, created_at`)
	err := s.aside.update(ctx, func(ctx context.Context, tx querier, _ *batch) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("claim %s rows: %w", consumer, err)
		}
		defer rows.Close()
		for rows.Next() {
			var c Claim
			if err := rows.Scan(&c.ID, &c.Consumer, &c.EventSeq, &c.AggregateType, &c.AggregateID, &c.Version, &c.OrgID, &c.Target, &c.Attempts, &c.CreatedAt); err != nil {
				return fmt.Errorf("scan claim: %w", err)
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// Outcome is the result of one delivery attempt.
type Outcome struct {
	// Status is StatusDelivered, StatusFailed or StatusSkipped (final), or
	// OutcomeRetry (stay pending until NextAttempt).
	Status      string
	At          time.Time
	NextAttempt time.Time
	StatusCode  int // HTTP or SMTP reply code, when there was one
	Error       string
	Latency     time.Duration
}

// ErrLeaseLost reports that a row's lease passed to another node before the
// attempt was recorded; the attempt is not recorded.
var ErrLeaseLost = errors.New("store: outbox lease lost")

// Finish records one attempt on a claimed row and moves the row on: done
// (delivered, failed, skipped) or back to pending until o.NextAttempt. It
// returns ErrLeaseLost when node no longer holds the row.
func (tx *Tx) Finish(ctx context.Context, c Claim, node string, o Outcome) error {
	var doneAt, next any
	status := o.Status
	if status == OutcomeRetry {
		status, next = StatusPending, stamp(o.NextAttempt)
	} else {
		doneAt = stamp(o.At)
	}
	var lastErr any
	if o.Error != "" {
		lastErr = truncate(o.Error, 500)
	}
	var attempts int
	err := tx.q.QueryRowContext(ctx, tx.s.sql(`UPDATE outbox SET attempts = attempts + 1, status = $1, done_at = $2, next_attempt_at = $3,
		last_error = $4, claimed_by = NULL, claimed_until = NULL
		WHERE id = $5 AND claimed_by = $6 AND done_at IS NULL RETURNING attempts`), status, doneAt, next, lastErr, c.ID, node).Scan(&attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("finish outbox row %d: %w", c.ID, err)
	}
	outcome := o.Status
	_, err = tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO delivery_attempts (outbox_id, attempt, at, node, outcome, status_code, error, latency_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`), c.ID, attempts, stamp(o.At), node, outcome, o.StatusCode, truncate(o.Error, 500), o.Latency.Milliseconds())
	if err != nil {
		return fmt.Errorf("record attempt on outbox row %d: %w", c.ID, err)
	}
	return nil
}

// Finish is Tx.Finish in a transaction of its own.
func (s *Store) Finish(ctx context.Context, c Claim, node string, o Outcome) error {
	return s.writeAside(ctx, func(ctx context.Context, tx *Tx) error { return tx.Finish(ctx, c, node, o) })
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// ReleaseClaims returns every leased outbox row to the queue and every
// workflow run to the runners. Only for a store no other process uses
// (SQLite, at start-up): the leases of the process that stopped are void.
func (s *Store) ReleaseClaims(ctx context.Context) error {
	return s.w.update(ctx, func(ctx context.Context, q querier, _ *batch) error {
		_, err := q.ExecContext(ctx, `UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE done_at IS NULL AND claimed_by IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("release outbox claims: %w", err)
		}
		// The workflow runs' leases too: the stopped process works none.
		if _, err := q.ExecContext(ctx, `UPDATE workflows SET lease_owner = '', lease_until = '' WHERE status IN ('queued', 'running') AND lease_owner <> ''`); err != nil {
			return fmt.Errorf("release workflow leases: %w", err)
		}
		return nil
	})
}

// Event returns the stored event at global position seq. found is false
// when there is none.
func (s *Store) Event(ctx context.Context, seq int64) (es.Record, bool, error) {
	r := es.Record{Seq: seq}
	var data string
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT aggregate_type, aggregate_id, version, type, ts, org_id, data FROM events WHERE seq = $1`), seq).
		Scan(&r.AggregateType, &r.AggregateID, &r.Version, &r.Type, &r.Timestamp, &r.OrgID, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read event %d: %w", seq, err)
	}
	r.Data = []byte(data)
	return r, true, nil
}

// Attempt is one recorded delivery attempt.
type Attempt struct {
	OutboxID   int64
	Attempt    int
	At         string
	Node       string
	Outcome    string
	StatusCode int
	Error      string
	LatencyMS  int64
}

// Attempts returns the recorded attempts of one outbox row, oldest first.
func (s *Store) Attempts(ctx context.Context, outboxID int64) ([]Attempt, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT outbox_id, attempt, at, node, outcome, status_code, error, latency_ms
		FROM delivery_attempts WHERE outbox_id = $1 ORDER BY attempt`), outboxID)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		if err := rows.Scan(&a.OutboxID, &a.Attempt, &a.At, &a.Node, &a.Outcome, &a.StatusCode, &a.Error, &a.LatencyMS); err != nil {
			return nil, fmt.Errorf("scan attempt: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
