package store

import "context"

// QueuedWrites is how many jobs wait for the SQLite writer (tests only).
func QueuedWrites(s *Store) int {
	if w, ok := s.w.(*sqliteWriter); ok {
		return len(w.jobs)
	}
	return 0
}

// MigrateUntil applies the migrations up to and including version (tests of
// a migration over data made before it).
func MigrateUntil(ctx context.Context, s *Store, version string) error { return s.migrate(ctx, version) }

// Exec runs one statement on the store's writer (tests that build data as an
// older version wrote it).
func Exec(ctx context.Context, s *Store, query string, args ...any) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		_, err := tx.q.ExecContext(ctx, s.sql(query), args...)
		return err
	})
}
