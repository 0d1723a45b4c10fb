package server

import (
	"context"
	"log/slog"

	"github.com/spkey-dev/spkey/internal/store"
)

// StoreConfig says which database to open.
type StoreConfig struct {
	// DB is a PostgreSQL URL (postgres://...); empty: SQLite at SQLite.
	DB string
	// SQLite is the path of the SQLite file.
	SQLite string
	// SQLiteOptions tune it (zero: WAL and synchronous=FULL).
	SQLiteOptions store.SQLiteOptions
}

// OpenStore opens the database cfg names, applies its migrations and
// installs Routing. It
// returns the error of the open or of a migration (the store is closed
// then).
func OpenStore(ctx context.Context, cfg StoreConfig, log *slog.Logger) (*store.Store, error) {
	var st *store.Store
	var err error
	if cfg.DB != "" {
		st, err = store.OpenPostgres(ctx, cfg.DB, log)
	} else {
		st, err = store.OpenSQLite(ctx, cfg.SQLite, cfg.SQLiteOptions, log)
	}
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	st.SetRouter(Routing(st, log))
	return st, nil
}
