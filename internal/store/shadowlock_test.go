package store_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// readModifyWrite runs one shadow operation on node as the gateway would:
// read the shadow inside the transaction, apply op, write the result
// expecting the version read. held, if set, runs between the read and the
// write (the job may run twice: it must be idempotent).
func readModifyWrite(ctx context.Context, node *store.Store, op func(shadow.Document) shadow.Document, held func()) (seen int64, err error) {
	err = node.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		raw, _, err := tx.Shadow(ctx, "lock-1", "")
		if err != nil {
			return err
		}
		cur, err := shadow.Unmarshal(raw)
		if err != nil {
			return err
		}
		seen = cur.Version
		if held != nil {
			held()
		}
		next := op(cur)
		doc, err := shadow.Marshal(next)
		if err != nil {
			return err
		}
		return tx.PutShadow(ctx, "lock-1", "", doc, next.Version, cur.Version, shadowNow)
	})
	return seen, err
}

// TestShadowReadLocks: two nodes each read and write one shadow in a
// transaction, a delete on one while the other's update has read the
// shadow and not written it yet. The version check alone would let both
// through (a delete keeps the version, so the update still finds the
// version it expects, and brings back the deleted state): the read inside
// the transaction makes the delete wait for the update's commit (on
// PostgreSQL by the row lock it takes, which the test sees the delete wait
// on; on SQLite by the writers' BEGIN IMMEDIATE), so the delete reads the
// updated shadow and deletes it.
func TestShadowReadLocks(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			nodes, pgURL := openNodes(t, b, 2)
			_, v1 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`)
			if err := putShadow(ctx, nodes[0], "lock-1", "", v1, 1, 0); err != nil {
				t.Fatal(err)
			}
			update := func(cur shadow.Document) shadow.Document {
				res, rerr := shadow.Update(cur, []byte(`{"state":{"reported":{"lock":"open"}}}`), 1_700_000_010, shadow.Limits{})
				if rerr != nil {
					t.Error(rerr)
				}
				return res.Document
			}
			del := func(cur shadow.Document) shadow.Document {
				d, _, rerr := shadow.Delete(cur, "lock-1", "", nil, 1_700_000_020, shadow.Limits{})
				if rerr != nil {
					t.Error(rerr)
				}
				return d
			}
			locked, release := make(chan struct{}), make(chan struct{})
			var once, freed sync.Once
			free := func() { freed.Do(func() { close(release) }) }
			defer free() // also when the test fails before the update may go on
			updated := make(chan error, 1)
			go func() {
				_, err := readModifyWrite(ctx, nodes[0], update, func() {
					once.Do(func() { close(locked) })
					<-release
				})
				updated <- err
			}()
			select {
			case <-locked:
			case err := <-updated:
				t.Fatalf("update ended before it wrote: %v", err)
			}
			deleted := make(chan error, 1)
			var seen int64
			go func() {
				var err error
				seen, err = readModifyWrite(ctx, nodes[1], del, nil)
				deleted <- err
			}()
			if b == testenv.Postgres {
				waitLockWait(t, pgURL)
			}
			free()
			if err := <-updated; err != nil {
				t.Fatalf("update: %v", err)
			}
			if err := <-deleted; err != nil {
				t.Fatalf("delete: %v", err)
			}
			if seen != 2 {
				t.Errorf("the delete read version %d, want the update's 2", seen)
			}
			got, err := shadow.Unmarshal([]byte(storedShadow(t, nodes[0], "lock-1", "")))
			if err != nil {
				t.Fatal(err)
			}
			if got.Exists || got.Version != 2 {
				t.Errorf("stored shadow exists=%v at version %d, want deleted at version 2", got.Exists, got.Version)
			}
		})
	}
}

// waitLockWait waits until a session of the database at url waits on a
// lock in a read of the shadows table.
func waitLockWait(t *testing.T, url string) {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT doc FROM shadows%FOR UPDATE'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session waits on the shadow's row lock after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
