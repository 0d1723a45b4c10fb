package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache prepares each distinct query once and reuses it. SQLite spends a
// large share of a short statement's time parsing it (measured with
// `spkey bench -cpuprofile`: about 30% of the writer's CPU), and modernc does
// not cache statements itself; pgx does, so PostgreSQL goes without.
type stmtCache struct {
	prep interface {
		PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	}
	raw querier

	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

// maxCachedStmts bounds the cache; queries beyond it run unprepared.
const maxCachedStmts = 512

func newStmtCache(prep interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}, raw querier) *stmtCache {
	return &stmtCache{prep: prep, raw: raw, m: map[string]*sql.Stmt{}}
}

func (c *stmtCache) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.RLock()
	st, ok := c.m[q]
	n := len(c.m)
	c.mu.RUnlock()
	if ok {
		return st, nil
	}
	if n >= maxCachedStmts {
		return nil, nil
	}
	st, err := c.prep.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old, ok := c.m[q]; ok {
		c.mu.Unlock()
		_ = st.Close()
		return old, nil
	}
	c.m[q] = st
	c.mu.Unlock()
	return st, nil
}

// ExecContext implements querier.
func (c *stmtCache) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, q)
	if err != nil || st == nil {
		return c.raw.ExecContext(ctx, q, args...)
	}
	return st.ExecContext(ctx, args...)
}

// QueryContext implements querier.
func (c *stmtCache) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, q)
	if err != nil || st == nil {
		return c.raw.QueryContext(ctx, q, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext implements querier. A query that fails to prepare runs
// unprepared so that its *sql.Row carries the error.
func (c *stmtCache) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, q)
	if err != nil || st == nil {
		return c.raw.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}
