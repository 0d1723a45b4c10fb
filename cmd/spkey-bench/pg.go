package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
)

// The PostgreSQL twins of a–d (issue 12): the same node and workload as b
// and c on a fresh schema, and the raw ceiling of single-row commits.
const (
	scBPG = "b-pg-residents-get"
	scCPG = "c-pg-residents-write"
	scDPG = "d-pg-raw-insert"
)

func scCPGRate(rate int) string { return fmt.Sprintf("c-pg-residents-write@%d/s", rate) }

func scDPGRate(rate int) string { return fmt.Sprintf("d-pg-raw-insert@%d/s", rate) }

// dPGConns is how many connections scenario d-pg inserts from.
const dPGConns = 16

// rawPG is scenario d-pg: dPGConns goroutines, each on its own
// connection, looping BEGIN; INSERT one row; COMMIT into one table of a
// fresh schema (synchronous_commit as the server has it).
type rawPG struct {
	db      *sql.DB
	n       atomic.Int64
	payload string
	drop    func()
}

func openRawPG(ctx context.Context, base string) (*rawPG, error) {
	u, drop, _, err := freshSchema(ctx, base)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", u)
	if err != nil {
		drop()
		return nil, fmt.Errorf("bench: raw postgres: %w", err)
	}
	db.SetMaxOpenConns(dPGConns)
	db.SetMaxIdleConns(dPGConns)
	r := &rawPG{db: db, drop: drop, payload: rawPayload}
	if _, err := db.ExecContext(ctx, `CREATE TABLE rows (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)`); err != nil {
		r.close()
		return nil, fmt.Errorf("bench: raw postgres: %w", err)
	}
	return r, nil
}

func (r *rawPG) insert(ctx context.Context) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO rows (k, v) VALUES ($1, $2)`, "k"+strconv.FormatInt(r.n.Add(1), 10), r.payload); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (r *rawPG) close() {
	r.db.Close()
	r.drop()
}

// pgScenarios sets up b-pg, c-pg (closed loop and constant rate) and d-pg
// when c has a PostgreSQL URL. The node is built as startSpkey builds the
// SQLite one, on a fresh schema.
func pgScenarios(ctx context.Context, c benchConfig, dir string) (out []scenario, warm func(ctx context.Context), closeAll func(), err error) {
	closeAll = func() {}
	if c.pg == "" || !c.wants(scBPG, scCPG, scCPGRate(c.rate), scDPG, scDPGRate(c.rate)) {
		return nil, func(context.Context) {}, closeAll, nil
	}
	u, drop, _, err := freshSchema(ctx, c.pg)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := server.OpenStore(ctx, server.StoreConfig{DB: u}, requestLog())
	if err != nil {
		drop()
		return nil, nil, nil, err
	}
	sp, err := startSpkeyOn(ctx, st, filepath.Join(dir, "server-pg"), server.Config{Notify: outbox.Config{Node: "bench-pg"}})
	if err != nil {
		st.Close()
		drop()
		return nil, nil, nil, err
	}
	sp.closeStore = func() { _ = st.Close(); drop() }
	closers := []func(){sp.close}
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if err := sp.seed(ctx, benchLocks, c.conns); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	raw, err := openRawPG(ctx, c.pg)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	closers = append(closers, raw.close)
	client := newLoadClient(c.conns)
	closers = append(closers, client.CloseIdleConnections)
	toggle := newResidentToggler(sp, benchLocks, c.conns)
	out = []scenario{
		{scBPG, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(int) error { return httpDo(client, sp.residentsReq()) }), nil
		}},
		{scDPG, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, dPGConns, c.d, func(int) error { return raw.insert(ctx) }), nil
		}},
		{scCPG, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(w int) error { return httpDo(client, toggle.next(w)) }), nil
		}},
		{scCPGRate(c.rate), func(ctx context.Context) (result, error) {
			return constantRate(ctx, c.rate, c.d, c.conns, toggle.targeter()), nil
		}},
		{scDPGRate(c.rate), func(ctx context.Context) (result, error) {
			return openLoop(ctx, c.rate, c.d, func() error { return raw.insert(ctx) }), nil
		}},
	}
	warm = func(ctx context.Context) {
		w := min(c.d/5, time.Second)
		closedLoop(ctx, c.conns, w, func(int) error { return httpDo(client, sp.residentsReq()) })
		closedLoop(ctx, c.conns, w, func(w int) error { return httpDo(client, toggle.next(w)) })
	}
	return out, warm, closeAll, nil
}

// freshSchema creates a schema of its own in the database at base and
// returns base's URL with that schema as its search_path, a func that
// drops it, and a description of the server's durability settings.
func freshSchema(ctx context.Context, base string) (u string, drop func(), info string, err error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, "", fmt.Errorf("bench: postgres: %w", err)
	}
	schema := "bench_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", nil, "", fmt.Errorf("bench: postgres: create schema: %w", err)
	}
	drop = func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(dctx, "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	}
	pu, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, "", fmt.Errorf("bench: postgres URL: %w", err)
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	var ver, sync, fsync string
	_ = admin.QueryRowContext(ctx, "SHOW server_version").Scan(&ver)
	_ = admin.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&sync)
	_ = admin.QueryRowContext(ctx, "SHOW fsync").Scan(&fsync)
	info = fmt.Sprintf("%s at %s, synchronous_commit=%s, fsync=%s, schema %s (dropped afterwards)", firstWord(ver), pu.Host, sync, fsync, schema)
	return pu.String(), drop, info, nil
}

// The targets of issue 12 on PostgreSQL.
const (
	targetCPGDPG = 0.8
	targetBPGA   = 0.3
	targetP99    = 10 * time.Millisecond
)

// pgReport prints the PostgreSQL ratios against their targets.
func pgReport(w io.Writer, c benchConfig, meds map[string]med, ratio func(x, y string) float64, ran func(...string) bool) {
	if ran(scCPG, scDPG) {
		r := ratio(scCPG, scDPG)
		fmt.Fprintf(w, "  c-pg/d-pg = %.3f   target >= %.1f   %s   (resident writes on PostgreSQL vs raw single-row commits from %d connections)\n", r, targetCPGDPG, passFail(r >= targetCPGDPG), dPGConns)
	}
	if ran(scBPG, scA) {
		r := ratio(scBPG, scA)
		fmt.Fprintf(w, "  b-pg/a = %.3f   target >= %.1f   %s   (residents GET on PostgreSQL vs bare HTTP)\n", r, targetBPGA, passFail(r >= targetBPGA))
	}
	if ran(scCPG, scA) {
		fmt.Fprintf(w, "  c-pg/a = %.3f   (no target)\n", ratio(scCPG, scA))
	}
	if m := meds[scCPGRate(c.rate)]; m.rate > 0 {
		ok := m.p99 <= targetP99.Seconds() && m.errs == 0
		fmt.Fprintf(w, "  p99(c-pg @%d/s) = %s (p50 %s, achieved %.0f req/s, errors %d)   target <= %s   %s\n",
			c.rate, msf(m.p99), msf(m.p50), m.rate, m.errs, ms(targetP99), passFail(ok))
	}
	if m := meds[scDPGRate(c.rate)]; m.rate > 0 {
		fmt.Fprintf(w, "  p99(d-pg @%d/s) = %s (p50 %s, achieved %.0f commits/s, errors %d)   (the storage floor of the line above: raw single-row commits at the same rate)\n",
			c.rate, msf(m.p99), msf(m.p50), m.rate, m.errs)
	}
}
