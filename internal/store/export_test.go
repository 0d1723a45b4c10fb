package store

// QueuedWrites is how many jobs wait for the SQLite writer (tests only).
func QueuedWrites(s *Store) int {
	if w, ok := s.w.(*sqliteWriter); ok {
		return len(w.jobs)
	}
	return 0
}
