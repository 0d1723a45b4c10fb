package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// OpenPostgres connects to the PostgreSQL database at url (postgres://...).
func OpenPostgres(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	w := newPGWriter(db, 256, log)
	st := &Store{dialect: Postgres, rdb: db, r: db, w: w, aside: pgDirect{db: db, w: w}, cache: newReadCache(), log: log, qcache: map[string]string{}}
	w.hooks = &st.hooks
	w.prepare = st.beforeCommit
	st.startFencer()
	return st, nil
}

// beforeCommit is what every PostgreSQL write transaction sends last,
// before its COMMIT (in the writer's pipeline, when it has one): the
// NOTIFYs of the consumers it woke and of the cached rows it changed
// (fence.go). A COMMIT that then fails calls b.commitFailed.
func (s *Store) beforeCommit(ctx context.Context, q querier, b *batch) error {
	if err := s.announce(ctx, q, b); err != nil {
		return err
	}
	return b.sendInvalidations(ctx, q, s.fence.node)
}

// pgDirect runs each write in a transaction of its own on the pool, for
// the store's background work (writeAside): outbox claims run beside the
// writer's batches instead of between them. Its transactions end with the
// writer's prepare step too.
type pgDirect struct {
	db *sql.DB
	w  *pgWriter
}

func (d pgDirect) update(ctx context.Context, fn txFunc) error {
	// A pooled connection whose transaction broke is the pool's to check.
	_, err := inOneTx(ctx, d.db.BeginTx, d.w.prepare, fn)
	return err
}

func (pgDirect) close() error { return nil }
