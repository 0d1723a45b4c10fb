package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// scOpenFloor is the storage floor of scenario (a) on SQLite: what the
// open round trip's two durable commits cost on this disk when nothing
// else runs. An open commits twice in series (the command before it may
// reach the device; the device's result before the action may say
// succeeded), and each of its commits writes about floorPages B-tree pages
// (its events, the lock's row, the action and its indexes, the outbox
// rows, the shadow and its message log: counted with strace as 12 to 17
// WAL frames per commit). So the floor is a closed loop of two serial
// transactions, each inserting one row into floorPages tables of their
// own (one page each), WAL and synchronous=FULL as the store.
const scOpenFloor = "open-rtt-floor-sqlite-c1"

// floorPages is the pages each commit of the floor writes.
const floorPages = 15

type commitFloor struct {
	db   *sql.DB
	conn *sql.Conn
	ins  []*sql.Stmt
	n    int64
}

func openCommitFloor(ctx context.Context, path string) (*commitFloor, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("bench: open floor sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	f := &commitFloor{db: db}
	if f.conn, err = db.Conn(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("bench: open floor sqlite: %w", err)
	}
	for i := range floorPages {
		t := "t" + strconv.Itoa(i)
		if _, err := f.conn.ExecContext(ctx, `CREATE TABLE `+t+` (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
			f.close()
			return nil, fmt.Errorf("bench: floor sqlite: %w", err)
		}
		st, err := f.conn.PrepareContext(ctx, `INSERT INTO `+t+` (id, v) VALUES (?, ?)`)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("bench: floor sqlite: %w", err)
		}
		f.ins = append(f.ins, st)
	}
	return f, nil
}

// open is one floor round trip: two transactions of floorPages rows each.
func (f *commitFloor) open(ctx context.Context) error {
	for range 2 {
		f.n++
		if _, err := f.conn.ExecContext(ctx, "BEGIN"); err != nil {
			return err
		}
		for _, st := range f.ins {
			if _, err := st.ExecContext(ctx, f.n, rawPayload); err != nil {
				_, _ = f.conn.ExecContext(ctx, "ROLLBACK")
				return err
			}
		}
		if _, err := f.conn.ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
	}
	return nil
}

func (f *commitFloor) close() {
	for _, st := range f.ins {
		st.Close()
	}
	f.conn.Close()
	f.db.Close()
}

// openFloorScenario is scOpenFloor when -only wants it (open-rtt selects
// it too), with its close.
func openFloorScenario(ctx context.Context, c benchConfig, dir string) ([]scenario, func(), error) {
	if !c.wants(scOpenFloor) || !slices.Contains(c.backends(), "sqlite") {
		return nil, func() {}, nil
	}
	f, err := openCommitFloor(ctx, filepath.Join(dir, "open-floor", "floor.db"))
	if err != nil {
		return nil, nil, err
	}
	return []scenario{{scOpenFloor, func(ctx context.Context) (result, error) {
		return closedLoop(ctx, 1, c.d, func(int) error { return f.open(ctx) }), nil
	}}}, f.close, nil
}

// openFloorReport prints the floor against the goal's fixed part.
func openFloorReport(w io.Writer, meds map[string]med) {
	f := meds[scOpenFloor]
	if f.rate == 0 {
		return
	}
	fmt.Fprintf(w, "  p99(%s) = %s (p50 %s, errors %d): two serial commits of %d pages each, WAL and synchronous=FULL, nothing else running; the goal of open-rtt allows %s besides twice the bare MQTT trip\n",
		scOpenFloor, msf(f.p99), msf(f.p50), f.errs, floorPages, ms(goalOpenFixed))
}
