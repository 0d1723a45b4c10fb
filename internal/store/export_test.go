package store

import (
	"context"
)

// QueuedWrites is how many jobs wait for the writer (tests only).
func QueuedWrites(s *Store) int {
	switch w := s.w.(type) {
	case *sqliteWriter:
		return len(w.jobs)
	case *pgWriter:
		return len(w.jobs)
	}
	return 0
}

// Refusals is how many batches the PostgreSQL writer ran again one job at
// a time because their pipeline failed (tests only).
func Refusals(s *Store) int64 {
	if w, ok := s.w.(*pgWriter); ok {
		return w.refused.Load()
	}
	return 0
}

// MigrateUntil applies the migrations up to and including version (tests of
// a migration over data made before it).
func MigrateUntil(ctx context.Context, s *Store, version string) error {
	return s.migrate(ctx, version)
}

// Exec runs one statement on the store's writer (tests that build data as an
// older version wrote it).
func Exec(ctx context.Context, s *Store, query string, args ...any) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		_, err := tx.q.ExecContext(ctx, s.sql(query), args...)
		return err
	})
}

// EndLeases makes the leases on outbox rows ids run out now, as time
// passing would (tests only: on PostgreSQL leases run on the database's
// clock, which a test cannot move).
func EndLeases(s *Store, ids ...int64) error {
	return s.Write(context.Background(), func(ctx context.Context, tx *Tx) error {
		for _, id := range ids {
			if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE outbox SET claimed_until = '1970-01-01T00:00:00.000Z' WHERE id = $1`), id); err != nil {
				return err
			}
		}
		return nil
	})
}

// DumpTable renders every row of table as text, sorted (tests only).
func DumpTable(s *Store, table string) ([]string, error) {
	return s.dumpQuery(context.Background(), `SELECT * FROM `+table, func(cols, vals []string) string {
		line := ""
		for i, v := range vals {
			line += cols[i] + "=" + v + " "
		}
		return line
	})
}

// CacheListener is s.CacheListener.
func CacheListener(s *Store) (pid uint32, up bool) { return s.CacheListener() }

// CachedReads reports whether reads under ctx use the read cache, fencing
// as a read would (tests only).
func CachedReads(ctx context.Context, s *Store) bool { return s.cached(ctx) }

// RowsOf counts the outbox rows of consumer about aggregates of aggType,
// done or not (tests of what an append queued).
func RowsOf(ctx context.Context, s *Store, consumer, aggType string) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, s.sql(`SELECT count(*) FROM outbox WHERE consumer = $1 AND aggregate_type = $2`), consumer, aggType).Scan(&n)
	return n, err
}
