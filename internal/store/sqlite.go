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
	w := &sqliteWriter{db: wdb, conn: conn, q: newStmtCache(conn, conn), jobs: make(chan *job, 1024), maxBatch: opt.MaxBatch, stop: make(chan struct{}), log: log}
	w.wg.Add(1)
	go w.loop()
	rc := newStmtCache(rdb, rdb)
	s := &Store{dialect: SQLite, rdb: rdb, r: rc, rcache: rc, w: w, log: log, qcache: map[string]string{}}
	return s, nil
}

type job struct {
	ctx  context.Context
	fn   func(ctx context.Context, q querier) error
	done chan error
}

// sqliteWriter owns the one write connection. A goroutine drains queued
// jobs in batches: one BEGIN IMMEDIATE, a SAVEPOINT per job (a failing job
// rolls back alone), one COMMIT, then every caller of the batch is
// answered. One fsync covers the batch; a batch closes as soon as the queue
// is empty, so a lone request waits for nobody.
type sqliteWriter struct {
	db       *sql.DB
	conn     *sql.Conn
	q        *stmtCache // conn, with prepared statements
	jobs     chan *job
	maxBatch int
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	log      *slog.Logger
	batches  atomic.Int64
	jobsRun  atomic.Int64
}

var errClosed = errors.New("store: closed")

func (w *sqliteWriter) update(ctx context.Context, fn func(ctx context.Context, q querier) error) error {
	j := &job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-w.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the job runs to its end even if ctx is cancelled: the
	// caller must learn whether it committed.
	return <-j.done
}

func (w *sqliteWriter) loop() {
	defer w.wg.Done()
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

func (w *sqliteWriter) run(batch []*job) {
	w.batches.Add(1)
	w.jobsRun.Add(int64(len(batch)))
	ctx := context.Background()
	results := make([]error, len(batch))
	if _, err := w.q.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		for _, j := range batch {
			j.done <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	for i, j := range batch {
		if err := j.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := w.q.ExecContext(ctx, "SAVEPOINT cmd"); err != nil {
			results[i] = fmt.Errorf("savepoint: %w", err)
			continue
		}
		err := j.fn(context.WithoutCancel(j.ctx), w.q)
		if err != nil {
			if _, rerr := w.q.ExecContext(ctx, "ROLLBACK TO cmd"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr))
			}
		}
		if _, rerr := w.q.ExecContext(ctx, "RELEASE cmd"); rerr != nil && err == nil {
			err = fmt.Errorf("release savepoint: %w", rerr)
		}
		results[i] = err
	}
	if _, err := w.q.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = w.q.ExecContext(ctx, "ROLLBACK")
		for i := range results {
			if results[i] == nil {
				results[i] = fmt.Errorf("commit: %w", err)
			}
		}
	}
	for i, j := range batch {
		j.done <- results[i]
	}
}

func (w *sqliteWriter) close() error {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
	if os.Getenv("SPKEY_DEBUG_BATCH") != "" {
		fmt.Fprintf(os.Stderr, "batches %d jobs %d avg %.1f\n", w.batches.Load(), w.jobsRun.Load(), float64(w.jobsRun.Load())/float64(max(1, w.batches.Load())))
	}
	return errors.Join(w.q.close(), w.conn.Close(), w.db.Close())
}
