package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestSQLiteWALStartsOver: the writer does not checkpoint in its commits
// (the checkpointer does, beside it), yet under a stream of commits the WAL
// is started over again and again instead of growing for ever, and every
// commit is there after the store is closed and opened again.
func TestSQLiteWALStartsOver(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spkey.db")
	st, err := store.OpenSQLite(ctx, path, store.SQLiteOptions{CheckpointPages: 20}, testenv.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// The WAL header's checkpoint sequence number (bytes 12-15) grows by
	// one each time the WAL is started over.
	restarts := func() uint32 {
		f, err := os.Open(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var hdr [32]byte
		if _, err := io.ReadFull(f, hdr[:]); err != nil {
			return 0
		}
		return binary.BigEndian.Uint32(hdr[12:16])
	}
	// Eight writers keep the writer busy (a checkpoint beside it seldom
	// catches up with the whole WAL by itself).
	first := restarts()
	deadline := time.Now().Add(2 * time.Minute)
	const writers = 8
	n := 0
	for ; restarts() < first+3; n += writers {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL was started over %d times in %d commits (2 min)", restarts()-first, n)
		}
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() { errs[w] = st.Write(ctx, writeJob(n+w, false)) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = store.OpenSQLite(ctx, path, store.SQLiteOptions{}, testenv.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range n {
		id := fmt.Sprintf("w-%04d", i)
		_, found, err := st.User(ctx, store.ByID, id)
		if err != nil {
			t.Fatal(err)
		}
		v, err := st.StreamLen(ctx, "writetest", id)
		if err != nil {
			t.Fatal(err)
		}
		if !found || v != 1 {
			t.Fatalf("commit %d of %d lost after reopening: user stored %v, stream version %d", i, n, found, v)
		}
	}
}
