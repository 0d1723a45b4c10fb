package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// Tx is one write transaction, handed to the function given to Write.
type Tx struct {
	s *Store
	q querier
	b *batch
	// cached: the transaction's reads may use the read cache (always on
	// SQLite; after the request's fence on PostgreSQL).
	cached bool
}

// Snapshot returns the stored state of one aggregate, reading inside the
// transaction. found is false when the aggregate has no events yet.
func (tx *Tx) Snapshot(ctx context.Context, aggType, aggID string) (es.Snapshot, bool, error) {
	if tx.s.cache != nil {
		// What this transaction wrote, else what was last committed: the
		// writer keeps both current, so the database need not be asked.
		// (On PostgreSQL the cache is as of the request's fence: a stale
		// snapshot fails the expected-version append, see fence.go.)
		if sn, ok := tx.b.snaps[[2]string{aggType, aggID}]; ok {
			return sn, true, nil
		}
		if !tx.cached {
			return tx.s.snapshot(ctx, tx.q, aggType, aggID)
		}
		if sn, ok := tx.s.cache.snapshot(aggType, aggID); ok {
			return sn, true, nil
		}
	}
	return tx.s.snapshot(ctx, tx.q, aggType, aggID)
}

// Append implements es.Appender: it inserts recs, moves the snapshot from
// version expected to the last record's version, updates the projections
// of special tables and queues the outbox rows the Router asks for, all in
// this transaction. It returns *es.ConflictError when the stream has moved
// past expected.
func (tx *Tx) Append(ctx context.Context, expected int64, snap es.Snapshot, recs []es.Record) error {
	if len(recs) == 0 {
		return nil
	}
	s := tx.s
	conflict := &es.ConflictError{AggregateType: snap.AggregateType, AggregateID: snap.AggregateID, Expected: expected}
	refuse := func() error {
		// Whatever we believed about this stream was wrong (another
		// process wrote it): let the retry read it from the database.
		s.cache.dropSnapshot(snap.AggregateType, snap.AggregateID)
		tx.b.dropSnap([2]string{snap.AggregateType, snap.AggregateID})
		s.conflict()
		return conflict
	}
	// Check the whole batch, then move the snapshot (which proves the stream
	// is at expected), and only then insert: a refused append writes
	// nothing even if the caller ignores the error.
	for i, r := range recs {
		if r.AggregateType != snap.AggregateType || r.AggregateID != snap.AggregateID || r.Version != expected+int64(i)+1 {
			return fmt.Errorf("append %s/%s: record %d does not continue the stream", snap.AggregateType, snap.AggregateID, i)
		}
	}
	last := recs[len(recs)-1]
	snap.Version, snap.UpdatedAt = last.Version, last.Timestamp
	if expected == 0 {
		snap.CreatedAt = recs[0].Timestamp
	}
	if err := s.putSnapshot(ctx, tx.q, expected, snap, recs[0].Timestamp, last.Timestamp); err != nil {
		if errors.Is(err, errStale) {
			return refuse()
		}
		return err
	}
	for i, r := range recs {
		seq, err := tx.insertEvent(ctx, r)
		if err != nil {
			if isUniqueViolation(err) {
				return refuse()
			}
			return fmt.Errorf("insert event %s/%s v%d: %w", r.AggregateType, r.AggregateID, r.Version, err)
		}
		recs[i].Seq = seq
		if err := s.project(ctx, tx.q, recs[i]); err != nil {
			return err
		}
	}
	if s.cache != nil {
		tx.b.setSnap([2]string{snap.AggregateType, snap.AggregateID}, snap)
		tx.b.after = append(tx.b.after, func() { s.cache.putSnapshot(snap) })
		tx.b.invalidateSnapshot(snap.AggregateType, snap.AggregateID, snap.Version)
		for _, r := range recs {
			if r.Type == tenant.TypeAPIKeyIssued || r.Type == tenant.TypeAPIKeyRevoked {
				tx.b.after = append(tx.b.after, s.cache.dropKeys)
				tx.b.invalidate("k")
				break
			}
		}
	}
	// The outbox rows, last: the router reads the aggregate as appended.
	if err := tx.route(ctx, recs); err != nil {
		return err
	}
	if s.hooks.Appended != nil {
		s.hooks.Appended(len(recs))
	}
	return nil
}

func (s *Store) conflict() {
	if s.hooks.Conflict != nil {
		s.hooks.Conflict()
	}
}

var errStale = errors.New("stale snapshot")

// insertEvent stores one record and returns its global position.
func (tx *Tx) insertEvent(ctx context.Context, r es.Record) (int64, error) {
	const cols = `INSERT INTO events (aggregate_type, aggregate_id, version, type, ts, org_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	args := []any{r.AggregateType, r.AggregateID, r.Version, r.Type, r.Timestamp, r.OrgID, string(r.Data)}
	if tx.s.dialect == SQLite {
		// Exec is cheaper than a query for RETURNING; seq is the rowid.
		res, err := tx.q.ExecContext(ctx, tx.s.sql(cols), args...)
		if err != nil {
			return 0, err
		}
		return res.LastInsertId()
	}
	// PostgreSQL: no RETURNING, so the insert joins the writer's pipeline
	// instead of waiting for its answer. The outbox rows find the event's
	// seq themselves (enqueue), and readers get it from the events table.
	_, err := tx.q.ExecContext(ctx, cols, args...)
	return 0, err
}

func (s *Store) putSnapshot(ctx context.Context, q querier, expected int64, snap es.Snapshot, firstTS, lastTS string) error {
	if expected == 0 {
		_, err := q.ExecContext(ctx, s.sql(`INSERT INTO aggregates (aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`), snap.AggregateType, snap.AggregateID, snap.Version, snap.OrgID, string(snap.State), firstTS, lastTS)
		if isUniqueViolation(err) {
			return errStale
		}
		if err != nil {
			return fmt.Errorf("insert snapshot: %w", err)
		}
		return nil
	}
	ok, err := s.moveRow(ctx, q, snapshotMove, snap.Version, snap.OrgID, string(snap.State), lastTS, snap.AggregateType, snap.AggregateID, expected)
	if err != nil {
		return fmt.Errorf("update snapshot: %w", err)
	}
	if !ok {
		return errStale
	}
	return nil
}

// snapshotMove moves a stream's snapshot on from the version it expects.
var snapshotMove = newRowMove(`UPDATE aggregates SET version = $1, org_id = $2, state = $3, updated_at = $4
	WHERE aggregate_type = $5 AND aggregate_id = $6 AND version = $7`)

// rowMove is an UPDATE of one row at an expected version (in its WHERE),
// in its two forms (moveRow).
type rowMove struct {
	plain string
	// pg divides by the updated row count: it fails by itself when the
	// row is not at the expected version, so nobody needs its answer.
	pg string
}

func newRowMove(update string) rowMove {
	return rowMove{plain: update, pg: `WITH moved AS (` + update + ` RETURNING 1) SELECT 1 / COUNT(*) FROM moved`}
}

// moveRow runs m with args and reports whether it moved the row. On
// PostgreSQL it joins the writer's pipeline (a row not at the expected
// version fails the pipeline, and the job, run again alone, gets false
// here); on SQLite it reads the row count. It returns the database's
// other errors.
func (s *Store) moveRow(ctx context.Context, q querier, m rowMove, args ...any) (bool, error) {
	if s.dialect == Postgres {
		_, err := q.ExecContext(ctx, m.pg, args...)
		if isDivisionByZero(err) {
			return false, nil
		}
		return err == nil, err
	}
	res, err := q.ExecContext(ctx, s.sql(m.plain), args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Store) snapshot(ctx context.Context, q querier, aggType, aggID string) (es.Snapshot, bool, error) {
	snap := es.Snapshot{AggregateType: aggType, AggregateID: aggID}
	var state string
	err := q.QueryRowContext(ctx, s.sql(`SELECT version, org_id, state, created_at, updated_at FROM aggregates
		WHERE aggregate_type = $1 AND aggregate_id = $2`), aggType, aggID).Scan(&snap.Version, &snap.OrgID, &state, &snap.CreatedAt, &snap.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return snap, false, nil
	}
	if err != nil {
		return snap, false, fmt.Errorf("load snapshot %s/%s: %w", aggType, aggID, err)
	}
	snap.State = json.RawMessage(state)
	return snap, true, nil
}

// seqInsert is an INSERT of one row of some columns plus event_seq, the
// position of the event the row is about, written once in its two forms
// (see insertWithSeq).
type seqInsert struct {
	values     string // the seq as the last value
	fromEvents string // the seq read from the events table
}

// newSeqInsert writes the INSERT into table of cols (n of them) and
// event_seq.
func newSeqInsert(table, cols string, n int) seqInsert { return newSeqInsertIf(table, cols, n, "") }

// newSeqInsertIf is newSeqInsert inserting only where cond holds (a SQL
// condition on the placeholders $1..$n of the columns; "" for always).
func newSeqInsertIf(table, cols string, n int, cond string) seqInsert {
	ph := make([]string, n+3)
	for i := range ph {
		ph[i] = "$" + strconv.Itoa(i+1)
	}
	head := `INSERT INTO ` + table + ` (` + cols + `, event_seq) `
	values := head + `VALUES (` + strings.Join(ph[:n+1], ", ") + `)`
	if cond != "" {
		values = head + `SELECT ` + strings.Join(ph[:n+1], ", ") + ` WHERE ` + cond
		cond = ` AND ` + cond
	}
	return seqInsert{
		values: values,
		fromEvents: head + `SELECT ` + strings.Join(ph[:n], ", ") + `, seq FROM events
			WHERE aggregate_type = ` + ph[n] + ` AND aggregate_id = ` + ph[n+1] + ` AND version = ` + ph[n+2] + cond,
	}
}

// insertWithSeq runs ins with vals and the seq of the stored event r.
// Appends on PostgreSQL do not wait for the event's seq (insertEvent):
// while it is unknown (0) the row takes it from the events table in the
// same statement, which keeps the statement in the writer's pipeline.
func (s *Store) insertWithSeq(ctx context.Context, q querier, ins seqInsert, r es.Record, vals ...any) error {
	_, err := s.insertWithSeqResult(ctx, q, ins, r, vals...)
	return err
}

// insertWithSeqResult is insertWithSeq with the statement's result.
func (s *Store) insertWithSeqResult(ctx context.Context, q querier, ins seqInsert, r es.Record, vals ...any) (sql.Result, error) {
	if s.dialect == Postgres && r.Seq == 0 {
		return q.ExecContext(ctx, ins.fromEvents, append(vals, r.AggregateType, r.AggregateID, r.Version)...)
	}
	return q.ExecContext(ctx, s.sql(ins.values), append(vals, r.Seq)...)
}
