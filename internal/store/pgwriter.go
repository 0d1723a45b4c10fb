package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// pgWriter is the PostgreSQL writer of one node: a goroutine owns one
// connection and drains queued jobs in batches, like the SQLite writer,
// so that one commit (one fsync) covers every command of a batch. Beyond
// that, the statements of a batch whose answers no job reads (the
// snapshot move, the event, the projections, the outbox rows) are not
// sent one by one: they are queued and go to the server in one pipeline
// with the BEGIN before them and the COMMIT after them. A batch whose
// jobs read nothing from the database inside the transaction (their
// snapshots and users come from the node's cache) costs one round trip.
//
// A query inside a job first sends what is queued (so it reads the
// batch's own writes), then runs. A queued statement that fails (a
// unique key: another node appended first; a stale snapshot) fails the
// pipeline, and with it the transaction: the batch is rolled back and
// every job runs again, one transaction each, with every statement sent
// at once (runAlone), so a job sees each statement's error where it
// issued it, exactly as without the pipeline. Every job runs at most
// twice; nothing is answered before its COMMIT has returned.
//
// Several nodes may share the database: each has its own writer, and the
// events table's unique (aggregate, version) key keeps their appends to
// one stream apart.
type pgWriter struct {
	*jobQueue
	db    *sql.DB
	conn  *sql.Conn // nil until the first batch, and after a broken connection
	log   *slog.Logger
	hooks *Hooks
	// prepare, if set, runs before each transaction's COMMIT is queued
	// (the cache's invalidations): its statements join the pipeline.
	prepare func(ctx context.Context, q querier, b *batch) error
	// refused counts batches that ran again one job at a time (tests
	// read it).
	refused atomic.Int64
}

func newPGWriter(db *sql.DB, maxBatch int, log *slog.Logger) *pgWriter {
	w := &pgWriter{jobQueue: newJobQueue(maxBatch), db: db, log: log, hooks: &Hooks{}}
	w.start(w.run, nil)
	return w
}

func (w *pgWriter) update(ctx context.Context, fn txFunc) error { return w.submit(ctx, fn) }

// connect returns the writer's connection, opening one if needed.
func (w *pgWriter) connect(ctx context.Context) (*sql.Conn, error) {
	if w.conn != nil {
		return w.conn, nil
	}
	c, err := w.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	w.conn = c
	return c, nil
}

// drop throws the connection away after an error that may have left it in
// an unknown state; the next batch opens another.
func (w *pgWriter) drop() {
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.conn.Close()
	w.conn = nil
}

// run commits one batch in one pipelined transaction, or, when that
// fails, each job on its own.
func (w *pgWriter) run(batch []*job) {
	if w.hooks.Batch != nil {
		w.hooks.Batch(len(batch))
	}
	live := alive(batch)
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	conn, err := w.connect(ctx)
	if err != nil {
		for _, j := range live {
			j.done <- err
		}
		return
	}
	p := &pipeline{conn: conn}
	p.queue("BEGIN", nil)
	b := newBatch()
	kept := live[:0:0]
	for i, j := range live {
		m, n, sent := b.mark(), len(p.pend), p.flushes
		if err := runJob(j, p, b); err != nil {
			if p.flushes == sent && p.err == nil {
				// Nothing of this job reached the server: forgetting its
				// statements is its rollback.
				p.pend = p.pend[:n]
				b.rollbackTo(m)
				j.done <- err
				continue
			}
			// Part of it ran (or the transaction broke): start over with
			// every job not answered yet.
			w.retry(ctx, p, append(kept, live[i:]...))
			return
		}
		kept = append(kept, j)
	}
	if len(kept) == 0 {
		p.pend = p.pend[:0]
		if p.flushes > 0 {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				w.drop()
			}
		}
		return
	}
	if w.prepare != nil {
		if err := w.prepare(ctx, p, b); err != nil {
			w.retry(ctx, p, kept)
			return
		}
	}
	p.queue("COMMIT", nil)
	if err := p.flush(ctx); err != nil {
		if p.commitUnknown {
			// The COMMIT was sent but its answer was lost: whether the
			// batch committed is unknown, and saying so is the only
			// honest answer.
			w.drop()
			b.commitFailed()
			for _, j := range kept {
				j.done <- fmt.Errorf("commit: %w", err)
			}
			return
		}
		w.retry(ctx, p, kept)
		return
	}
	b.committed()
	for _, j := range kept {
		j.done <- nil
	}
}

// retry rolls the pipelined transaction back and runs jobs again, each in
// a transaction of its own with every statement sent as it is issued.
func (w *pgWriter) retry(ctx context.Context, p *pipeline, jobs []*job) {
	w.refused.Add(1)
	if p.flushes > 0 || p.err != nil {
		if _, err := w.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			w.drop()
		}
	}
	for _, j := range alive(jobs) {
		j.done <- w.runAlone(ctx, j)
	}
}

// runAlone runs one job in its own transaction, unpipelined.
func (w *pgWriter) runAlone(ctx context.Context, j *job) error {
	conn, err := w.connect(ctx)
	if err != nil {
		return err
	}
	broken, err := inOneTx(ctx, conn.BeginTx, w.prepare, func(_ context.Context, q querier, b *batch) error { return runJob(j, q, b) })
	if broken {
		w.drop()
	}
	return err
}

// inOneTx runs fn in a transaction of its own from begin, unpipelined,
// then prepare (the statements every PostgreSQL transaction sends before
// COMMIT), and commits. broken reports that BEGIN, ROLLBACK or COMMIT
// failed: the connection's state is unknown.
func inOneTx(ctx context.Context, begin func(context.Context, *sql.TxOptions) (*sql.Tx, error), prepare func(context.Context, querier, *batch) error, fn txFunc) (broken bool, err error) {
	tx, err := begin(ctx, nil)
	if err != nil {
		return true, fmt.Errorf("begin: %w", err)
	}
	b := newBatch()
	if err := fn(ctx, tx, b); err != nil {
		return tx.Rollback() != nil, err
	}
	if prepare != nil {
		if err := prepare(ctx, tx, b); err != nil {
			return tx.Rollback() != nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		b.commitFailed()
		return true, fmt.Errorf("commit: %w", err)
	}
	b.committed()
	return false, nil
}

func (w *pgWriter) close() error {
	w.shutdown()
	if w.conn != nil {
		return w.conn.Close()
	}
	return nil
}

// pipeline is the querier a pipelined batch's jobs write through: Exec
// queues, a query sends what is queued first.
type pipeline struct {
	conn    *sql.Conn
	pend    []pendStmt
	flushes int   // pipelines sent so far
	err     error // the first failure: the transaction is broken
	// commitUnknown: a pipeline holding the COMMIT failed in transport.
	commitUnknown bool
}

type pendStmt struct {
	sql  string
	args []any
	res  *pendResult
}

// pendResult is a queued statement's sql.Result: asking it for its row
// count sends the pipeline.
type pendResult struct {
	p    *pipeline
	rows int64
	done bool
	err  error
}

func (r *pendResult) LastInsertId() (int64, error) {
	return 0, errors.New("store: LastInsertId is not supported on PostgreSQL")
}

func (r *pendResult) RowsAffected() (int64, error) {
	if !r.done {
		if err := r.p.flush(context.Background()); err != nil && r.err == nil {
			return 0, err
		}
	}
	return r.rows, r.err
}

func (p *pipeline) queue(q string, args []any) *pendResult {
	r := &pendResult{p: p}
	// The arguments wait for the flush: a caller may reuse its slice.
	p.pend = append(p.pend, pendStmt{sql: q, args: slices.Clone(args), res: r})
	return r
}

// ExecContext implements querier: the statement waits for the next flush.
func (p *pipeline) ExecContext(_ context.Context, q string, args ...any) (sql.Result, error) {
	if p.err != nil {
		return nil, p.err
	}
	return p.queue(q, args), nil
}

// QueryContext implements querier: it sends what is queued, then runs.
func (p *pipeline) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.conn.QueryContext(ctx, q, args...)
}

// QueryRowContext implements querier. After a failed flush the query
// still goes to the (aborted) transaction, whose refusal its Row carries.
func (p *pipeline) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	_ = p.flush(ctx)
	return p.conn.QueryRowContext(ctx, q, args...)
}

// flush sends every queued statement in one pipeline and reads their
// answers. The first failure breaks the transaction (PostgreSQL skips the
// rest of the pipeline).
func (p *pipeline) flush(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if len(p.pend) == 0 {
		return nil
	}
	pend := p.pend
	p.pend = nil
	p.flushes++
	hasCommit := pend[len(pend)-1].sql == "COMMIT"
	err := withPgx(p.conn, func(pc *pgx.Conn) error {
		var b pgx.Batch
		for _, s := range pend {
			b.Queue(s.sql, s.args...)
		}
		br := pc.SendBatch(ctx, &b)
		var first error
		for _, s := range pend {
			tag, err := br.Exec()
			s.res.done = true
			if err != nil {
				s.res.err = err
				if first == nil {
					first = err
				}
				continue
			}
			s.res.rows = tag.RowsAffected()
		}
		if err := br.Close(); err != nil && first == nil {
			first = err
		}
		return first
	})
	if err != nil {
		p.err = err
		if hasCommit && !isServerError(err) {
			p.commitUnknown = true
		}
	}
	return err
}

// isServerError reports whether err is PostgreSQL's answer to a statement
// (the connection is fine and the transaction did not commit), rather
// than a transport failure.
func isServerError(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr)
}
