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
	s := &Store{dialect: Postgres, rdb: db, r: db, cache: newReadCache(), log: log, qcache: map[string]string{}}
	s.startFencer()
	s.w = pgWriter{db: db, node: s.fence.node}
	return s, nil
}

// pgWriter runs each write in its own transaction; concurrent writers to one
// stream are kept apart by the events table's unique key (optimistic
// versions), so several nodes can share a database.
type pgWriter struct {
	db *sql.DB
	// node sends the cache invalidations of each commit (fence.go).
	node *cacheNode
}

func (w pgWriter) update(ctx context.Context, fn txFunc) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	b := newBatch()
	if err := fn(ctx, tx, b); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := b.sendInvalidations(ctx, tx, w.node); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		b.commitFailed(w.node)
		return fmt.Errorf("commit: %w", err)
	}
	b.committed()
	return nil
}

func (w pgWriter) close() error { return nil }
