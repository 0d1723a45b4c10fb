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
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLiteOptions tunes the embedded backend.
type SQLiteOptions struct {
	// Synchronous is SQLite's synchronous pragma: "FULL" (default; an
	// acknowledged write survives power loss) or "NORMAL".
	Synchronous string
	// MaxBatch caps how many commands share one commit (default 256).
	MaxBatch int
	// CheckpointPages is how many pages the WAL may hold before the
	// writer copies what the checkpointer left of it and starts it over
	// (default 4000: 16 MB of 4 KB pages; see checkpointer).
	CheckpointPages int
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
	if opt.CheckpointPages <= 0 {
		opt.CheckpointPages = 4000
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
	// The writer never checkpoints: a commit that crossed SQLite's
	// threshold would copy the WAL into the database file and fsync it
	// before it answers, holding up the batch and the next one. The
	// checkpointer does it on a connection of its own, beside the writer.
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		conn.Close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite writer: %w", err)
	}
	ckpt, err := newCheckpointer(ctx, "file:"+path+"?"+pragmas.Encode(), opt.CheckpointPages, log)
	if err != nil {
		conn.Close()
		wdb.Close()
		return nil, err
	}
	pragmas.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode())
	if err != nil {
		ckpt.close()
		conn.Close()
		wdb.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	w := &sqliteWriter{jobQueue: newJobQueue(opt.MaxBatch), db: wdb, conn: conn, q: newStmtCache(conn, conn), log: log, ckpt: ckpt}
	rc := newStmtCache(rdb, rdb)
	s := &Store{dialect: SQLite, rdb: rdb, r: rc, rcache: rc, cache: newReadCache(), w: w, aside: w, log: log, qcache: map[string]string{}}
	w.hooks = &s.hooks
	w.start(w.run, w.checkpointTail)
	return s, nil
}

// sqliteWriter owns the one write connection. A goroutine drains queued
// jobs in batches and commits each batch once (see run): one fsync covers
// the batch, and a batch closes as soon as the queue is empty, so a lone
// request waits for nobody.
type sqliteWriter struct {
	*jobQueue
	db    *sql.DB
	conn  *sql.Conn
	q     *stmtCache // conn, with prepared statements
	log   *slog.Logger
	hooks *Hooks // the store's; read only after a job arrives
	ckpt  *checkpointer
}

func (w *sqliteWriter) update(ctx context.Context, fn txFunc) error { return w.submit(ctx, fn) }

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
	live := alive(batch)
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

// runSafe runs jobs in one transaction, each inside a savepoint.
func (w *sqliteWriter) runSafe(jobs []*job) {
	ctx := context.Background()
	live := alive(jobs)
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
		w.ckpt.kick()
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
	w.shutdown()
	return errors.Join(w.ckpt.close(), w.q.close(), w.conn.Close(), w.db.Close())
}

// checkpointer copies the WAL into the database file on a connection of
// its own, so that the writer's commits do not wait for it. SQLite's own
// automatic checkpoint (off on the writer's connection) ran inside the
// COMMIT that crossed 1,000 WAL pages: it copied them and fsynced the
// database file before that batch was answered, and the next batch waited.
//
// After a commit the writer kicks it without waiting. It then asks SQLite
// for a PASSIVE checkpoint, at most once per interval: that takes no lock
// the writer or the readers need and copies what no reader still needs.
// The writer starts the WAL over (writes from its beginning again) only
// when a write transaction begins with all of the WAL copied, which a
// checkpoint running beside a busy writer seldom leaves. So once the WAL
// holds more than restart pages, the checkpointer asks the writer to run
// one PASSIVE checkpoint itself between two batches (tail): it copies only
// what was committed since the last checkpoint, and the next batch starts
// the WAL over. Durability does not depend on any of this: a commit is
// durable once its WAL frames are synced (synchronous=FULL), and a
// checkpoint syncs the WAL before it copies and the database file after.
type checkpointer struct {
	db       *sql.DB
	conn     *sql.Conn
	interval time.Duration
	restart  int // WAL pages past which the writer checkpoints the tail
	log      *slog.Logger
	wake     chan struct{}
	tail     atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// checkpointInterval is the checkpointer's pace: at most one checkpoint
// per interval, so a busy writer's WAL gains about a tenth of a second of
// commits between two.
const checkpointInterval = 100 * time.Millisecond

func newCheckpointer(ctx context.Context, dsn string, pages int, log *slog.Logger) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	c := &checkpointer{db: db, conn: conn, interval: checkpointInterval, restart: pages, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

// kick tells the checkpointer that a commit added to the WAL.
func (c *checkpointer) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer close(c.done)
	ctx := context.Background()
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		// Let the commits of one interval pile up: one checkpoint copies
		// a page written many times once.
		t.Reset(c.interval)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		var busy, frames, copied int
		if err := c.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
			c.log.Warn("sqlite checkpoint", "err", err)
			continue
		}
		if frames >= c.restart {
			c.tail.Store(true)
		}
	}
}

// checkpointTail is the writer's part (see checkpointer), between two
// batches, when the checkpointer asked for it.
func (w *sqliteWriter) checkpointTail() {
	if !w.ckpt.tail.Swap(false) {
		return
	}
	var busy, frames, copied int
	if err := w.conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		w.log.Warn("sqlite checkpoint", "err", err)
	}
}

func (c *checkpointer) close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return errors.Join(c.conn.Close(), c.db.Close())
}
