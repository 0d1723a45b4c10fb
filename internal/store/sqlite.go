package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLiteOptions tunes the embedded backend.
type SQLiteOptions struct {
	// Synchronous is SQLite's synchronous pragma: "FULL" (default; an
	// acknowledged write survives power loss) or "NORMAL".
	Synchronous string
	// MaxBatch caps how many commands share one commit (default 256).
	MaxBatch int
}

// OpenSQLite opens (creating if needed) the SQLite database at path, in WAL
// mode with one write connection and a read pool.
func OpenSQLite(ctx context.Context, path string, opt SQLiteOptions, log *slog.Logger) (*Store, error) {
	if opt.Synchronous == "" {
		opt.Synchronous = "FULL"
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 256
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}
	pragmas := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + opt.Synchronous + ")", "foreign_keys(ON)"} {
		pragmas.Add("_pragma", p)
	}
	wdb, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	conn, err := wdb.Conn(ctx)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open sqlite write connection: %w", err)
	}
	pragmas.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode())
	if err != nil {
		conn.Close()
		wdb.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	w := &sqliteWriter{db: wdb, conn: conn, q: newStmtCache(conn, conn), jobs: make(chan *job, 1024), maxBatch: opt.MaxBatch, stop: make(chan struct{}), exited: make(chan struct{}), log: log}
	rc := newStmtCache(rdb, rdb)
	s := &Store{dialect: SQLite, rdb: rdb, r: rc, rcache: rc, cache: newReadCache(), w: w, aside: w, log: log, qcache: map[string]string{}}
	w.hooks = &s.hooks
	w.wg.Add(1)
	go w.loop()
	return s, nil
}

type job struct {
	ctx  context.Context
	fn   txFunc
	done chan error
}

// sqliteWriter owns the one write connection. A goroutine drains queued
// jobs in batches and commits each batch once (see run): one fsync covers
// the batch, and a batch closes as soon as the queue is empty, so a lone
// request waits for nobody.
type sqliteWriter struct {
	db       *sql.DB
	conn     *sql.Conn
	q        *stmtCache // conn, with prepared statements
	jobs     chan *job
	maxBatch int
	stop     chan struct{}
	exited   chan struct{} // closed when loop has returned
	stopOnce sync.Once
	wg       sync.WaitGroup
	log      *slog.Logger
	hooks    *Hooks // the store's; read only after a job arrives
}

var errClosed = errors.New("store: closed")

func (w *sqliteWriter) update(ctx context.Context, fn txFunc) error {
	j := &job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-w.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the job runs to its end even if ctx is cancelled: the
	// caller must learn whether it committed. A job queued just as the
	// writer stopped never runs: it is refused, not left waiting.
	select {
	case err := <-j.done:
		return err
	case <-w.exited:
		select {
		case err := <-j.done:
			return err
		default:
			return errClosed
		}
	}
}

func (w *sqliteWriter) loop() {
	defer w.wg.Done()
	defer close(w.exited)
	batch := make([]*job, 0, w.maxBatch)
	for {
		select {
		case j := <-w.jobs:
			batch = append(batch[:0], j)
		drain:
			for len(batch) < w.maxBatch {
				select {
				case j := <-w.jobs:
					batch = append(batch, j)
				default:
					break drain
				}
			}
			w.run(batch)
		case <-w.stop:
			// Finish what was queued before the stop.
			for {
				select {
				case j := <-w.jobs:
					w.run([]*job{j})
				default:
					return
				}
			}
		}
	}
}

// run commits one batch. Every job runs in one transaction, first without
// savepoints (they cost two statements a command). When a job fails, the
// transaction is rolled back, that job gets its error, and the rest of the
// batch runs again, this time each job inside its own savepoint (runSafe):
// a job that fails there is rolled back alone. So every job runs at most
// twice, however many fail. One COMMIT answers all the others; a batch that
// fails at BEGIN or COMMIT answers each of its jobs with that error.
func (w *sqliteWriter) run(batch []*job) {
	if w.hooks.Batch != nil {
		w.hooks.Batch(len(batch))
	}
	ctx := context.Background()
	live := w.alive(batch)
	if len(live) == 0 {
		return
	}
	if _, err := w.q.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		for _, j := range live {
			j.done <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	failed, ferr := -1, error(nil)
	b := newBatch()
	for i, j := range live {
		if err := runJob(j, w.q, b); err != nil {
			failed, ferr = i, err
			break
		}
	}
	if failed >= 0 {
		if _, err := w.q.ExecContext(ctx, "ROLLBACK"); err != nil {
			ferr = errors.Join(ferr, fmt.Errorf("rollback: %w", err))
		}
		live[failed].done <- ferr
		w.runSafe(append(live[:failed:failed], live[failed+1:]...))
		return
	}
	w.commit(ctx, b, live, nil)
}

// alive answers the jobs whose callers gave up and returns the others.
func (w *sqliteWriter) alive(batch []*job) []*job {
	live := make([]*job, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		live = append(live, j)
	}
	return live
}

// runSafe runs jobs in one transaction, each inside a savepoint.
func (w *sqliteWriter) runSafe(jobs []*job) {
	ctx := context.Background()
	live := w.alive(jobs)
	if len(live) == 0 {
		return
	}
	if _, err := w.q.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		for _, j := range live {
			j.done <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	b := newBatch()
	errs := make([]error, len(live))
	for i, j := range live {
		if _, err := w.q.ExecContext(ctx, "SAVEPOINT job"); err != nil {
			w.abort(ctx, live, fmt.Errorf("savepoint: %w", err))
			return
		}
		m := b.mark()
		if errs[i] = runJob(j, w.q, b); errs[i] != nil {
			b.rollbackTo(m)
			if _, err := w.q.ExecContext(ctx, "ROLLBACK TO job"); err != nil {
				w.abort(ctx, live, fmt.Errorf("rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := w.q.ExecContext(ctx, "RELEASE job"); err != nil {
			w.abort(ctx, live, fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	w.commit(ctx, b, live, errs)
}

// abort rolls the transaction back and answers every job with err.
func (w *sqliteWriter) abort(ctx context.Context, jobs []*job, err error) {
	_, _ = w.q.ExecContext(ctx, "ROLLBACK")
	for _, j := range jobs {
		j.done <- err
	}
}

// commit commits and answers jobs: each its own error from errs if it
// failed (rolled back to its savepoint), else the commit's outcome.
func (w *sqliteWriter) commit(ctx context.Context, b *batch, jobs []*job, errs []error) {
	_, err := w.q.ExecContext(ctx, "COMMIT")
	if err != nil {
		_, _ = w.q.ExecContext(ctx, "ROLLBACK")
		err = fmt.Errorf("commit: %w", err)
	} else {
		// Before any answer and before the next batch reads it.
		b.committed()
	}
	for i, j := range jobs {
		if errs != nil && errs[i] != nil {
			j.done <- errs[i]
			continue
		}
		j.done <- err
	}
}

// runJob runs one job's body; a panic in it becomes that job's error
// instead of taking the writer (and every other caller) down.
func runJob(j *job, q querier, b *batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: write job panicked: %v", r)
		}
	}()
	return j.fn(context.WithoutCancel(j.ctx), q, b)
}

func (w *sqliteWriter) close() error {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
	return errors.Join(w.q.close(), w.conn.Close(), w.db.Close())
}
