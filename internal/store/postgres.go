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
	st := &Store{dialect: Postgres, rdb: db, r: db, w: w, log: log, qcache: map[string]string{}}
	w.hooks = &st.hooks
	return st, nil
}
