// Package store is the SQL home of spkey: the event store, the read models
// updated in the same transaction, the outbox, the PII vault and the
// idempotency records, on SQLite (embedded default) or PostgreSQL. All SQL
// lives here. Queries are written once with $N placeholders; the SQLite
// dialect rewrites them to ?N.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spkey-dev/spkey/internal/es"
)

//go:embed migrations
var migrationsFS embed.FS

// Dialect names a SQL backend.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// querier is what a transaction and a single connection have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// txFunc is the body of one write job.
type txFunc func(ctx context.Context, q querier, b *batch) error

// batch is what the jobs of one transaction share: the snapshots written so
// far (not committed yet, so not in the read cache) and the cache upkeep to
// run once the transaction commits.
type batch struct {
	snaps map[[2]string]es.Snapshot
	after []func()
	// usersTouched: a job of this batch changed the users table, so user
	// lookups go to the database until the batch commits. (Left set when
	// a job rolls back: that only costs some cache hits.)
	usersTouched bool
	// undo journals snaps changes, so one job's can be taken back when it
	// rolls back to its savepoint.
	undo []snapUndo
	// woken: the consumers to wake once the batch commits, each once
	// however many jobs queued rows for it (one wake-up, one NOTIFY).
	woken []string
	// maybe: consumers to wake once the batch commits if their row was
	// queued after all (Row.OnlyIfWebhook).
	maybe  []maybeWake
	router Router
	// inv names the cached rows the batch changes, for the other nodes
	// (PostgreSQL; fence.go). Never rolled back: more is always safe.
	inv []string
	// tag names the batch's commit in its invalidations, sent by node.
	tag  string
	node *cacheNode
}

type snapUndo struct {
	key  [2]string
	prev es.Snapshot
	had  bool
}

func (b *batch) setSnap(k [2]string, sn es.Snapshot) {
	prev, had := b.snaps[k]
	b.undo = append(b.undo, snapUndo{k, prev, had})
	b.snaps[k] = sn
}

func (b *batch) dropSnap(k [2]string) {
	prev, had := b.snaps[k]
	b.undo = append(b.undo, snapUndo{k, prev, had})
	delete(b.snaps, k)
}

// maybeWake is a consumer to wake if the statement of res queued a row.
type maybeWake struct {
	consumer string
	res      sql.Result
}

// batchMark is a point to roll a batch's bookkeeping back to.
type batchMark struct{ after, undo, woken, maybe int }

func (b *batch) mark() batchMark {
	return batchMark{len(b.after), len(b.undo), len(b.woken), len(b.maybe)}
}

// wakeIf asks for consumer to be woken through r after commit if the
// statement of res queued a row (nil: none was tried).
func (b *batch) wakeIf(r Router, consumer string, res sql.Result) {
	if res == nil {
		return
	}
	b.router = r
	b.maybe = append(b.maybe, maybeWake{consumer, res})
}

// wake asks for consumers to be woken through r after commit.
func (b *batch) wake(r Router, consumers ...string) {
	b.router = r
	for _, c := range consumers {
		if !slices.Contains(b.woken, c) {
			b.woken = append(b.woken, c)
		}
	}
}

// rollbackTo forgets what jobs did after m (their transaction work is
// rolled back to a savepoint at the same time).
func (b *batch) rollbackTo(m batchMark) {
	for i := len(b.undo) - 1; i >= m.undo; i-- {
		u := b.undo[i]
		if u.had {
			b.snaps[u.key] = u.prev
		} else {
			delete(b.snaps, u.key)
		}
	}
	b.undo, b.after = b.undo[:m.undo], b.after[:m.after]
	// woken holds each consumer once, in the order first asked for:
	// those after m were first asked for by what is rolled back.
	b.woken, b.maybe = b.woken[:m.woken], b.maybe[:m.maybe]
}

func newBatch() *batch { return &batch{snaps: map[[2]string]es.Snapshot{}} }

// committed runs the upkeep of a committed transaction.
func (b *batch) committed() {
	for _, f := range b.after {
		f()
	}
	if b.router == nil {
		return
	}
	woken := b.woken
	for _, m := range b.maybe {
		// After the commit the counts are known: no round trip here.
		if n, err := m.res.RowsAffected(); err == nil && n > 0 && !slices.Contains(woken, m.consumer) {
			woken = append(slices.Clip(woken), m.consumer)
		}
	}
	if len(woken) > 0 {
		b.router.WakeLocal(woken)
	}
}

// writer runs write transactions: a group-committing single writer on
// SQLite, one transaction per call on PostgreSQL.
type writer interface {
	update(ctx context.Context, fn txFunc) error
	close() error
}

// Store is an opened database. It is safe for concurrent use.
type Store struct {
	dialect Dialect
	rdb     *sql.DB // reads
	r       querier // rdb, through a statement cache on SQLite
	rcache  *stmtCache
	cache   *readCache
	// fence keeps cache exact across nodes on PostgreSQL (nil on SQLite).
	fence *fencer
	w     writer
	// aside runs the store's background writes (writeAside): w on
	// SQLite, a transaction per call on PostgreSQL.
	aside writer
	log   *slog.Logger
	hooks Hooks
	// router decides the outbox rows of appended events (SetRouter).
	router Router

	qmu    sync.RWMutex
	qcache map[string]string

	// projs: the projections registered per aggregate type (Register),
	// replaced whole under projMu.
	projs  atomic.Pointer[projectionMap]
	projMu sync.Mutex
}

// Hooks lets the caller observe the store (metrics) without the store
// knowing about a metrics library. Nil fields are skipped.
type Hooks struct {
	Appended func(n int)
	Conflict func()
	// Batch receives the number of commands committed together by a writer.
	Batch func(n int)
}

// Dialect reports which backend the store runs on.
func (s *Store) Dialect() Dialect { return s.dialect }

// SetHooks installs observation hooks; call it before serving.
func (s *Store) SetHooks(h Hooks) { s.hooks = h }

var placeholderRE = regexp.MustCompile(`\$(\d+)`)

// sql adapts a $N query to the store's dialect.
func (s *Store) sql(q string) string {
	if s.dialect != SQLite {
		return q
	}
	s.qmu.RLock()
	r, ok := s.qcache[q]
	s.qmu.RUnlock()
	if ok {
		return r
	}
	r = placeholderRE.ReplaceAllString(q, "?$1")
	s.qmu.Lock()
	s.qcache[q] = r
	s.qmu.Unlock()
	return r
}

// Close stops the writer and closes every connection.
func (s *Store) Close() error {
	s.fence.close()
	var err error
	if s.rcache != nil {
		err = s.rcache.close()
	}
	return errors.Join(err, s.w.close(), s.rdb.Close())
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Migrate applies the embedded migrations that have not run yet, in order.
func (s *Store) Migrate(ctx context.Context) error { return s.migrate(ctx, "") }

// migrate applies the migrations up to and including version until (all of
// them when until is "").
func (s *Store) migrate(ctx context.Context, until string) error {
	return s.aside.update(ctx, func(ctx context.Context, q querier, _ *batch) error {
		if s.dialect == Postgres {
			// Nodes starting together migrate one at a time.
			if _, err := q.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7302541)`); err != nil {
				return fmt.Errorf("lock migrations: %w", err)
			}
		}
		if _, err := q.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		dir := "migrations/" + string(s.dialect)
		entries, err := fs.ReadDir(migrationsFS, dir)
		if err != nil {
			return fmt.Errorf("read migrations: %w", err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, name := range names {
			version := strings.TrimSuffix(name, ".sql")
			if until != "" && version > until {
				break
			}
			var n int
			if err := q.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM schema_migrations WHERE version = $1`), version).Scan(&n); err != nil {
				return fmt.Errorf("check migration %s: %w", name, err)
			}
			if n > 0 {
				continue
			}
			body, err := migrationsFS.ReadFile(dir + "/" + name)
			if err != nil {
				return fmt.Errorf("read migration %s: %w", name, err)
			}
			for _, stmt := range strings.Split(string(body), ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("apply migration %s: %w", name, err)
				}
			}
			if _, err := q.ExecContext(ctx, s.sql(`INSERT INTO schema_migrations (version) VALUES ($1)`), version); err != nil {
				return fmt.Errorf("record migration %s: %w", name, err)
			}
			s.log.Info("migration applied", "version", version, "dialect", s.dialect)
		}
		return nil
	})
}

// Write runs fn in one write transaction. Everything fn does through tx
// commits together, or nothing does when fn returns an error (returned as
// is). On SQLite concurrent calls are batched into one commit.
func (s *Store) Write(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	// Fenced here, before the job is queued: a writer never waits on it.
	cached := s.cached(ctx)
	return s.w.update(ctx, func(ctx context.Context, q querier, b *batch) error {
		return fn(ctx, &Tx{s: s, q: q, b: b, cached: cached})
	})
}

// writeAside is Write for the store's own background work (outbox claims
// and outcomes, the webhook fan-out, replays, retention). On PostgreSQL it
// runs in a transaction of its own on the pool, beside the writer, so that
// a consumer's queries never hold up the batches of commands; on SQLite
// there is one writer.
func (s *Store) writeAside(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	cached := s.cached(ctx)
	return s.aside.update(ctx, func(ctx context.Context, q querier, b *batch) error {
		return fn(ctx, &Tx{s: s, q: q, b: b, cached: cached})
	})
}

// Update implements es.Store.
func (s *Store) Update(ctx context.Context, fn func(ctx context.Context, tx es.Appender) error) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error { return fn(ctx, tx) })
}

// isUniqueViolation recognises a unique-constraint failure by its driver
// code, never by its text.
func isUniqueViolation(err error) bool {
	var sqliteErr interface{ Code() int }
	if errors.As(err, &sqliteErr) {
		// SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY
		return sqliteErr.Code() == 2067 || sqliteErr.Code() == 1555
	}
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		return pgErr.SQLState() == "23505"
	}
	return false
}

// isDivisionByZero recognises PostgreSQL's division_by_zero, which the
// snapshot move raises on purpose when the stream has moved.
func isDivisionByZero(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "22012"
}
