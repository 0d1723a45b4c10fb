package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Device shadows are state kept beside the events, not a projection of
// them: the shadows table holds each shadow's current document, written by
// the device gateway in the same transaction as the events of the command
// that changed it, and no event records a document. DumpReadModels does not
// render the table and Rebuild (which empties only the snapshots and the
// tables of registered projections) leaves it alone; the shadow message log
// (shadowlog.go) is kept the same way.
//
// A deleted shadow keeps its row: the document stored by PutShadow is the
// deleted one (shadow.Delete's, with its version and deletion time), so
// that a shadow created again continues its version numbers. The store
// never deletes a shadow row.

// ErrShadowMoved is wrapped by the error of PutShadow when the stored
// shadow is no longer at the version the writer expected (another writer
// got there first, or the shadow was created meanwhile): read it again and
// redo the update.
var ErrShadowMoved = errors.New("shadow moved")

// Shadow returns the stored document of the shadow thing/name ("" for the
// classic shadow), reading inside the transaction, so it sees what the
// transaction wrote. found is false when the shadow has no row; a deleted
// shadow has one (its document says it is deleted).
//
// On PostgreSQL the read sends the writer's queued statements first (a
// round trip in the batch's pipeline), and it locks the row until the
// transaction ends (SELECT … FOR UPDATE): a read-modify-write of one shadow
// inside Write is then serialised with every other node's, which the
// version check alone cannot do, because a delete keeps the version
// (another node's delete at version v followed by this transaction's update
// expecting v would otherwise be accepted). On SQLite the one writer
// serialises it anyway. It returns the database's error, wrapped.
func (tx *Tx) Shadow(ctx context.Context, thing, name string) (doc []byte, found bool, err error) {
	q := `SELECT doc FROM shadows WHERE thing = $1 AND name = $2`
	if tx.s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	return tx.s.shadow(ctx, tx.q, q, thing, name)
}

// Shadow returns the committed document of the shadow thing/name ("" for
// the classic shadow), outside any transaction; found is false when it has
// no row (a deleted shadow has one). A read-modify-write should read with
// (*Tx).Shadow instead. It returns the database's error, wrapped.
func (s *Store) Shadow(ctx context.Context, thing, name string) (doc []byte, found bool, err error) {
	return s.shadow(ctx, s.r, `SELECT doc FROM shadows WHERE thing = $1 AND name = $2`, thing, name)
}

func (s *Store) shadow(ctx context.Context, q querier, query, thing, name string) ([]byte, bool, error) {
	var doc string
	err := q.QueryRowContext(ctx, s.sql(query), thing, name).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load shadow %s/%q: %w", thing, name, err)
	}
	return []byte(doc), true, nil
}

// PutShadow stores doc (the document as shadow.Marshal gives it, deleted
// ones included) as the shadow thing/name at version, if the stored
// shadow's version is still expected (0: the shadow must have no row yet);
// now is the row's updated_at. version is the document's own version: a
// delete keeps it and an update after a long-past delete starts again from
// 1, so the store does not require it to grow.
//
// When the shadow has moved, the write fails with an error wrapping
// ErrShadowMoved and changes nothing; the caller reads the shadow again and
// retries. On PostgreSQL the write needs no answer: it joins the writer's
// pipeline and, when the shadow has moved, fails by itself (a division by
// zero, or the primary key for a shadow created meanwhile), which fails the
// batch's pipeline; the writer then runs the job again alone, where that
// error reaches this call. It also returns an error for a version below 1
// or an expected version below 0, an empty thing or doc, and the database's
// other errors, wrapped.
func (tx *Tx) PutShadow(ctx context.Context, thing, name string, doc []byte, version, expected int64, now string) error {
	switch {
	case thing == "":
		return errors.New("put shadow: empty thing name")
	case len(doc) == 0:
		return fmt.Errorf("put shadow %s/%q: empty document", thing, name)
	case version < 1 || expected < 0:
		return fmt.Errorf("put shadow %s/%q: version %d after %d: versions start at 1", thing, name, version, expected)
	}
	moved := func() error {
		return fmt.Errorf("put shadow %s/%q at version %d: expected version %d: %w", thing, name, version, expected, ErrShadowMoved)
	}
	if expected == 0 {
		_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO shadows (thing, name, doc, version, updated_at) VALUES ($1, $2, $3, $4, $5)`),
			thing, name, string(doc), version, now)
		if isUniqueViolation(err) {
			return moved()
		}
		if err != nil {
			return fmt.Errorf("insert shadow %s/%q: %w", thing, name, err)
		}
		return nil
	}
	ok, err := tx.s.moveRow(ctx, tx.q, shadowMove, string(doc), version, now, thing, name, expected)
	if err != nil {
		return fmt.Errorf("update shadow %s/%q: %w", thing, name, err)
	}
	if !ok {
		return moved()
	}
	return nil
}

// shadowMove moves a shadow on from the version it expects (moveRow).
var shadowMove = newRowMove(`UPDATE shadows SET doc = $1, version = $2, updated_at = $3
	WHERE thing = $4 AND name = $5 AND version = $6`)
