package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spkey-dev/spkey/internal/es"
)

// Folder folds the event log into snapshots for Rebuild. The app
// implements it with its aggregate registry.
type Folder interface {
	// Fold applies r to state (nil before the stream's first record) and
	// returns the new state. Rebuild keeps the state in memory from one
	// record of a stream to the next, and encodes it once, at the end.
	Fold(aggType string, state any, r es.Record) (any, error)
	// Encode returns the stored form of a folded state and the org that
	// owns it.
	Encode(aggType string, state any) (json.RawMessage, string, error)
}

// rebuildPage is how many events Rebuild reads at a time.
const rebuildPage = 2000

// rebuildRows is how many snapshots one INSERT of Rebuild writes at most;
// the rest go in statements of fewer rows, powers of two, so that a few
// statements serve every size.
const rebuildRows = 512

// Rebuild throws away every read model derived from events (the snapshots
// and the tables of the registered projections) and recomputes them from
// the event log in one transaction.
//
// The projections run over each page of events in the writer while
// another goroutine folds the same page into the aggregates' states (kept
// decoded in memory: each event is decoded once and each state encoded
// once); the snapshots are written at the end, rebuildRows to a statement.
func (s *Store) Rebuild(ctx context.Context, f Folder) error {
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
		pages := make(chan []es.Record, 2)
		folded := make(chan foldResult, 1)
		go func() { folded <- foldPages(f, pages) }()
		err := func() error {
			defer close(pages)
			var after int64
			for {
				recs, err := s.page(ctx, tx.q, after, rebuildPage)
				if err != nil {
					return err
				}
				if len(recs) == 0 {
					return nil
				}
				pages <- recs
				for _, r := range recs {
					if err := s.project(ctx, tx.q, r); err != nil {
						return err
					}
				}
				after = recs[len(recs)-1].Seq
			}
		}()
		res := <-folded
		if err != nil {
			return err
		}
		if res.err != nil {
			return res.err
		}
		return s.putSnapshots(ctx, tx.q, f, res.accs)
	})
}

// foldAcc is one aggregate's state while Rebuild folds its stream.
type foldAcc struct {
	typ, id     string
	state       any
	version     int64
	first, last string
}

type foldResult struct {
	accs []*foldAcc // in the order of their first event
	err  error
}

// foldPages folds every page it receives; after an error it drains the
// rest unread.
func foldPages(f Folder, pages <-chan []es.Record) foldResult {
	var res foldResult
	idx := map[[2]string]*foldAcc{}
	for recs := range pages {
		if res.err != nil {
			continue
		}
		for _, r := range recs {
			k := [2]string{r.AggregateType, r.AggregateID}
			a := idx[k]
			if a == nil {
				a = &foldAcc{typ: r.AggregateType, id: r.AggregateID, first: r.Timestamp}
				idx[k] = a
				res.accs = append(res.accs, a)
			}
			st, err := f.Fold(r.AggregateType, a.state, r)
			if err != nil {
				res.err = fmt.Errorf("fold %s/%s v%d: %w", r.AggregateType, r.AggregateID, r.Version, err)
				break
			}
			a.state, a.version, a.last = st, r.Version, r.Timestamp
		}
	}
	return res
}

// putSnapshots inserts the snapshots of accs, rebuildRows to a statement.
func (s *Store) putSnapshots(ctx context.Context, q querier, f Folder, accs []*foldAcc) error {
	const cols = 7
	var b strings.Builder
	for len(accs) > 0 {
		n := rebuildRows
		for n > len(accs) {
			n /= 2
		}
		// A fresh slice each time: the PostgreSQL writer's pipeline keeps
		// the arguments of a statement until it sends it.
		args := make([]any, 0, n*cols)
		for _, a := range accs[:n] {
			state, org, err := f.Encode(a.typ, a.state)
			if err != nil {
				return fmt.Errorf("encode %s/%s: %w", a.typ, a.id, err)
			}
			args = append(args, a.typ, a.id, a.version, org, string(state), a.first, a.last)
		}
		b.Reset()
		b.WriteString(`INSERT INTO aggregates (aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at) VALUES `)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j := range cols {
				if j > 0 {
					b.WriteString(", ")
				}
				// Plain ? on SQLite: it looks numbered parameters (?N) up
				// in a list, which costs O(n) each, O(n²) a statement.
				if s.dialect == SQLite {
					b.WriteByte('?')
				} else {
					b.WriteByte('$')
					b.WriteString(strconv.Itoa(i*cols + j + 1))
				}
			}
			b.WriteByte(')')
		}
		if _, err := q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert snapshots: %w", err)
		}
		accs = accs[n:]
	}
	return nil
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
