package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the schema of scenario (e)
	_ "modernc.org/sqlite"             // the "sqlite" driver, for scenario (d)

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// rawSQLite is scenario (d): single-row INSERT transactions on one
// connection to a fresh SQLite file, at the durability of the store (WAL,
// synchronous=FULL, busy_timeout) and nothing else: the storage ceiling
// when every write pays its own commit.
type rawSQLite struct {
	db      *sql.DB
	conn    *sql.Conn
	ins     *sql.Stmt
	n       int64
	payload string
}

func openRawSQLite(ctx context.Context, path string) (*rawSQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("bench: open raw sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bench: open raw sqlite: %w", err)
	}
	r := &rawSQLite{db: db, conn: conn}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE rows (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL, v TEXT NOT NULL)`); err != nil {
		r.close()
		return nil, fmt.Errorf("bench: raw sqlite: %w", err)
	}
	if r.ins, err = conn.PrepareContext(ctx, `INSERT INTO rows (k, v) VALUES (?, ?)`); err != nil {
		r.close()
		return nil, fmt.Errorf("bench: raw sqlite: %w", err)
	}
	r.payload = rawPayload
	return r, nil
}

// insert is one transaction of one row.
func (r *rawSQLite) insert(ctx context.Context) error {
	r.n++
	if _, err := r.conn.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	if _, err := r.ins.ExecContext(ctx, "k"+strconv.FormatInt(r.n, 10), r.payload); err != nil {
		_, _ = r.conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	_, err := r.conn.ExecContext(ctx, "COMMIT")
	return err
}

func (r *rawSQLite) close() {
	if r.ins != nil {
		r.ins.Close()
	}
	r.conn.Close()
	r.db.Close()
}

// rawPayload is the row of the raw scenarios (d, d-pg): about the size of
// a stored ResidentAdded event.
const rawPayload = `{"lockId":1,"uuid":"00000000-0000-4000-8000-000000000000","timestamp":"2026-01-01T00:00:00.000Z","userId":"00000000-0000-4000-8000-000000000001","name":"Resident 1","email":"b***@example.com"}`

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// esTarget is scenario (e) on one backend: the event store alone, one
// event per Write, each writer owning its own streams.
type esTarget struct {
	backend  string
	st       *store.Store
	ids      []string
	versions []int64       // versions[i]: the current version of stream i
	cursors  map[int][]int // per writer count, per writer: streams visited so far
	cleanup  func()
}

func newESTarget(backend string, st *store.Store, streams int, cleanup func()) *esTarget {
	t := &esTarget{backend: backend, st: st, ids: make([]string, streams), versions: make([]int64, streams), cursors: map[int][]int{}, cleanup: cleanup}
	for i := range t.ids {
		t.ids[i] = "bench-" + strconv.Itoa(i)
	}
	return t
}

func openESSQLite(ctx context.Context, path string, streams int) (*esTarget, error) {
	st, err := server.OpenStore(ctx, server.StoreConfig{SQLite: path}, discardLog())
	if err != nil {
		return nil, err
	}
	return newESTarget("sqlite", st, streams, nil), nil
}

// openESPostgres creates a fresh schema in the database at base (dropped
// by close) and opens the store in it, as internal/testenv does. info
// describes the server's durability settings.
func openESPostgres(ctx context.Context, base string, streams int) (t *esTarget, info string, err error) {
	u, drop, info, err := freshSchema(ctx, base)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			drop()
		}
	}()
	st, err := server.OpenStore(ctx, server.StoreConfig{DB: u}, discardLog())
	if err != nil {
		return nil, "", err
	}
	return newESTarget("postgres", st, streams, drop), info, nil
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return "PostgreSQL " + f[0]
	}
	return "PostgreSQL"
}

func discardLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (t *esTarget) close() {
	t.st.Close()
	if t.cleanup != nil {
		t.cleanup()
	}
}

var (
	benchState = json.RawMessage(`{}`)
	benchEvent = json.RawMessage(`{"n":1}`)
)

// run appends for d with writers goroutines. Writer w owns the streams i
// with i%writers == w and walks them round robin, resuming where it left
// off in the previous round; every append names the version it expects.
func (t *esTarget) run(ctx context.Context, writers int, d time.Duration) result {
	cur := t.cursors[writers]
	if cur == nil {
		cur = make([]int, writers)
		t.cursors[writers] = cur
	}
	n := len(t.ids)
	return closedLoop(ctx, writers, d, func(w int) error {
		owned := (n - w + writers - 1) / writers
		if owned <= 0 {
			return errors.New("bench: more writers than streams")
		}
		i := w + (cur[w]%owned)*writers
		cur[w]++
		return t.append(ctx, i)
	})
}

// append stores one event on stream i at its next version, with the
// snapshot state {}.
func (t *esTarget) append(ctx context.Context, i int) error {
	expected, id := t.versions[i], t.ids[i]
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	err := t.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		snap := es.Snapshot{AggregateType: "bench", AggregateID: id, State: benchState}
		rec := es.Record{AggregateType: "bench", AggregateID: id, Version: expected + 1, Type: "BenchAppended", Timestamp: now, Data: benchEvent}
		return tx.Append(ctx, expected, snap, []es.Record{rec})
	})
	if err != nil {
		return err
	}
	t.versions[i] = expected + 1
	return nil
}
