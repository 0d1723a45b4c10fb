package store

import "context"

// QueuedWrites is how many jobs wait for the SQLite writer (tests only).
func QueuedWrites(s *Store) int {
	if w, ok := s.w.(*sqliteWriter); ok {
		return len(w.jobs)
	}
	return 0
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
