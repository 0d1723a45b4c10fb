package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spkey-dev/spkey/internal/es"
)

// Folder folds one record into an aggregate's state (nil before the first
// record) and returns the new state and the aggregate's org.
type Folder func(aggType string, state json.RawMessage, r es.Record) (json.RawMessage, string, error)

// Rebuild throws away every read model derived from events (the snapshots
// and the tables of the registered projections) and recomputes them from
// the event log in one transaction.
func (s *Store) Rebuild(ctx context.Context, fold Folder) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		if s.cache != nil {
			tx.b.after = append(tx.b.after, s.cache.clear)
			tx.b.invalidate(invAll)
		}
		for _, t := range append([]string{"aggregates"}, s.ownedTables()...) {
			if _, err := tx.q.ExecContext(ctx, "DELETE FROM "+t); err != nil {
				return fmt.Errorf("clear %s: %w", t, err)
			}
		}
		type acc struct {
			snap        es.Snapshot
			first, last string
		}
		states := map[[2]string]*acc{}
		var after int64
		for {
			recs, err := s.page(ctx, tx.q, after, 1000)
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				k := [2]string{r.AggregateType, r.AggregateID}
				a := states[k]
				if a == nil {
					a = &acc{snap: es.Snapshot{AggregateType: r.AggregateType, AggregateID: r.AggregateID}, first: r.Timestamp}
					states[k] = a
				}
				st, org, err := fold(r.AggregateType, a.snap.State, r)
				if err != nil {
					return fmt.Errorf("fold %s/%s v%d: %w", r.AggregateType, r.AggregateID, r.Version, err)
				}
				a.snap.State, a.snap.OrgID, a.snap.Version, a.last = st, org, r.Version, r.Timestamp
				if err := s.project(ctx, tx.q, r); err != nil {
					return err
				}
				after = r.Seq
			}
		}
		for _, a := range states {
			if err := s.putSnapshot(ctx, tx.q, 0, a.snap, a.first, a.last); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) page(ctx context.Context, q querier, after int64, n int) ([]es.Record, error) {
	rows, err := q.QueryContext(ctx, s.sql(`SELECT seq, aggregate_type, aggregate_id, version, type, ts, org_id, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`), after, n)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []es.Record
	for rows.Next() {
		var r es.Record
		var data string
		if err := rows.Scan(&r.Seq, &r.AggregateType, &r.AggregateID, &r.Version, &r.Type, &r.Timestamp, &r.OrgID, &data); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		r.Data = []byte(data)
		out = append(out, r)
	}
	return out, rows.Err()
}

// DumpReadModels renders every event-derived read model (the snapshots and
// the tables of every projection the store implements) as sorted text, so
// a test can compare the live tables with a rebuild.
func (s *Store) DumpReadModels(ctx context.Context) (string, error) {
	var b strings.Builder
	queries := []string{`SELECT aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at FROM aggregates`}
	for _, p := range implemented() {
		queries = append(queries, p.dumps...)
	}
	for _, q := range queries {
		lines, err := s.dumpQuery(ctx, q, func(_ []string, vals []string) string { return strings.Join(vals, " | ") })
		if err != nil {
			return "", err
		}
		b.WriteString(q + "\n" + strings.Join(lines, "\n") + "\n")
	}
	return b.String(), nil
}

// dumpQuery renders every row of query q with line(columns, values), sorted.
func (s *Store) dumpQuery(ctx context.Context, q string, line func(cols, vals []string) string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("dump scan: %w", err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			parts[i] = fmt.Sprint(v)
		}
		lines = append(lines, line(cols, parts))
	}
	sort.Strings(lines)
	return lines, rows.Err()
}
