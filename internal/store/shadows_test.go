package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const shadowNow = "2026-12-03T17:00:00.000Z"

// shadowDoc applies update requests to a new shadow, as the gateway would,
// and returns the document and its stored form.
func shadowDoc(t *testing.T, requests ...string) (shadow.Document, []byte) {
	t.Helper()
	var d shadow.Document
	for i, r := range requests {
		res, rerr := shadow.Update(d, []byte(r), 1_700_000_000+int64(i), shadow.Limits{})
		if rerr != nil {
			t.Fatalf("update %s: %v", r, rerr)
		}
		d = res.Document
	}
	b, err := shadow.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

func putShadow(ctx context.Context, st *store.Store, thing, name string, doc []byte, version, expected int64) error {
	return st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		return tx.PutShadow(ctx, thing, name, doc, version, expected, shadowNow)
	})
}

// storedShadow is the committed document of thing/name ("" when it has no
// row).
func storedShadow(t *testing.T, st *store.Store, thing, name string) string {
	t.Helper()
	doc, found, err := st.Shadow(context.Background(), thing, name)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return ""
	}
	return string(doc)
}

// TestShadowRoundTrip stores a classic and a named shadow, updates and
// deletes one, and reads each back inside and outside a transaction: the
// document comes back byte for byte, a deleted shadow keeps its row with
// its version, shadows of other names and things stay apart, and on
// PostgreSQL no write failed its batch's pipeline.
func TestShadowRoundTrip(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			_, v1 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`)
			_, v2 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`, `{"state":{"reported":{"lock":"open","battery":97}}}`)
			namedDoc, named := shadowDoc(t, `{"state":{"desired":{"keys":[1,2,3]}}}`)
			err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				if err := tx.PutShadow(ctx, "lock-1", "", v1, 1, 0, shadowNow); err != nil {
					return err
				}
				// The transaction reads its own write.
				got, found, err := tx.Shadow(ctx, "lock-1", "")
				if err != nil {
					return err
				}
				if !found || string(got) != string(v1) {
					t.Errorf("inside the transaction: got %q (found %v), want %q", got, found, v1)
				}
				return tx.PutShadow(ctx, "lock-1", "keys", named, 1, 0, shadowNow)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := putShadow(ctx, st, "lock-1", "", v2, 2, 1); err != nil {
				t.Fatal(err)
			}
			deleted, _, rerr := shadow.Delete(namedDoc, "lock-1", "keys", nil, 1_700_000_100, shadow.Limits{})
			if rerr != nil {
				t.Fatal(rerr)
			}
			del, err := shadow.Marshal(deleted)
			if err != nil {
				t.Fatal(err)
			}
			if err := putShadow(ctx, st, "lock-1", "keys", del, 1, 1); err != nil {
				t.Fatal(err)
			}
			want := map[[2]string]string{
				{"lock-1", ""}: string(v2), {"lock-1", "keys"}: string(del), {"lock-2", ""}: "", {"lock-1", "other"}: "",
			}
			got := map[[2]string]string{}
			for k := range want {
				got[k] = storedShadow(t, st, k[0], k[1])
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stored shadows (-want +got):\n%s", diff)
			}
			d, err := shadow.Unmarshal([]byte(got[[2]string{"lock-1", "keys"}]))
			if err != nil {
				t.Fatal(err)
			}
			if d.Exists || d.Version != 1 || d.DeletedAt == 0 {
				t.Errorf("deleted shadow read back as exists=%v version=%d deletedAt=%d, want a deleted shadow at version 1", d.Exists, d.Version, d.DeletedAt)
			}
			if n := store.Refusals(st); n != 0 {
				t.Errorf("%d pipelined batches refused: a shadow write on the happy path failed its pipeline", n)
			}
		})
	}
}

// TestShadowExpectedVersion: a write expecting a version the shadow is not
// at fails with ErrShadowMoved and changes nothing; invalid arguments fail
// with another error.
func TestShadowExpectedVersion(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			_, v1 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`)
			_, v2 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`, `{"state":{"desired":{"lock":"closed"}}}`)
			if err := putShadow(ctx, st, "lock-1", "", v1, 1, 0); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name              string
				thing             string
				doc               []byte
				version, expected int64
				moved             bool
			}{
				{name: "create over an existing shadow", thing: "lock-1", doc: v1, version: 1, expected: 0, moved: true},
				{name: "expected version ahead", thing: "lock-1", doc: v2, version: 3, expected: 2, moved: true},
				{name: "expected version behind", thing: "lock-1", doc: v2, version: 1, expected: 0, moved: true},
				{name: "update of a missing shadow", thing: "lock-9", doc: v2, version: 2, expected: 1, moved: true},
				{name: "version 0", thing: "lock-1", doc: v2, version: 0, expected: 1},
				{name: "negative expected", thing: "lock-1", doc: v2, version: 2, expected: -1},
				{name: "empty document", thing: "lock-1", doc: nil, version: 2, expected: 1},
				{name: "empty thing", thing: "", doc: v2, version: 2, expected: 1},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					err := putShadow(ctx, st, c.thing, "", c.doc, c.version, c.expected)
					if err == nil {
						t.Fatal("write accepted")
					}
					if got := errors.Is(err, store.ErrShadowMoved); got != c.moved {
						t.Errorf("errors.Is(%v, ErrShadowMoved) = %v, want %v", err, got, c.moved)
					}
					if got := storedShadow(t, st, "lock-1", ""); got != string(v1) {
						t.Errorf("stored shadow changed to %s", got)
					}
					if got := storedShadow(t, st, "lock-9", ""); got != "" {
						t.Errorf("lock-9 got a shadow: %s", got)
					}
				})
			}
		})
	}
}

// openNodes opens n stores on one database (one SQLite file or one
// PostgreSQL schema, whose URL is pgURL), as n nodes of a deployment.
func openNodes(t *testing.T, b testenv.Backend, n int) (nodes []*store.Store, pgURL string) {
	t.Helper()
	var cfg server.StoreConfig
	if b == testenv.Postgres {
		cfg.DB = testenv.PostgresURL(t)
	} else {
		cfg.SQLite = filepath.Join(t.TempDir(), "spkey.db")
	}
	nodes = make([]*store.Store, n)
	for i := range nodes {
		st, err := server.OpenStore(context.Background(), cfg, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		nodes[i] = st
	}
	return nodes, cfg.DB
}

// TestShadowConcurrentWriters: writers that read the same version of a
// shadow and write it at once, through one node (one batch) or two nodes
// on one database: exactly one wins, the others get ErrShadowMoved, and
// the winner's document is the one stored.
func TestShadowConcurrentWriters(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			nodes, _ := openNodes(t, b, 2)
			docs := make([][]byte, 4)
			for i := range docs {
				_, docs[i] = shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`, `{"state":{"reported":{"writer":`+string(rune('0'+i))+`}}}`)
			}
			cases := []struct {
				name              string
				nodes             []*store.Store
				version, expected int64
			}{
				{name: "create, two nodes", nodes: nodes, version: 1, expected: 0},
				{name: "update, two nodes", nodes: nodes, version: 2, expected: 1},
				{name: "update, one node", nodes: nodes[:1], version: 3, expected: 2},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					errs := make([]error, len(docs))
					start := make(chan struct{})
					var wg sync.WaitGroup
					for i := range docs {
						wg.Go(func() {
							<-start
							errs[i] = putShadow(ctx, c.nodes[i%len(c.nodes)], "lock-1", "", docs[i], c.version, c.expected)
						})
					}
					close(start)
					wg.Wait()
					winner := -1
					for i, err := range errs {
						switch {
						case err == nil && winner >= 0:
							t.Fatalf("writers %d and %d both won", winner, i)
						case err == nil:
							winner = i
						case !errors.Is(err, store.ErrShadowMoved):
							t.Fatalf("writer %d: %v, want ErrShadowMoved", i, err)
						}
					}
					if winner < 0 {
						t.Fatal("no writer won")
					}
					for _, st := range nodes {
						if got := storedShadow(t, st, "lock-1", ""); got != string(docs[winner]) {
							t.Errorf("stored %s, want the winner's %s", got, docs[winner])
						}
					}
				})
			}
		})
	}
}

// TestShadowWithEvents: a shadow write, a logged message and an event
// append in one Write commit together or not at all, whether the job fails
// after writing only, after reading its own writes back (on PostgreSQL the
// read sends the pipeline), or because the shadow had moved.
func TestShadowWithEvents(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		expected int64 // the shadow write's (the shadow is at version 1)
		readBack bool
		fail     error
		wantErr  error
	}{
		{name: "job fails after its writes", expected: 1, fail: boom, wantErr: boom},
		{name: "job fails after reading its writes", expected: 1, readBack: true, fail: boom, wantErr: boom},
		{name: "shadow moved", expected: 0, wantErr: store.ErrShadowMoved},
		{name: "shadow moved, read back", expected: 0, readBack: true, wantErr: store.ErrShadowMoved},
		{name: "commits", expected: 1},
	}
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			_, v1 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`)
			_, v2 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`, `{"state":{"desired":{"lock":"closed"}}}`)
			if err := putShadow(ctx, st, "lock-1", "", v1, 1, 0); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					id := "agg-" + c.name
					snap := es.Snapshot{AggregateType: "shadowtest", AggregateID: id, State: json.RawMessage(`{}`)}
					rec := es.Record{AggregateType: "shadowtest", AggregateID: id, Version: 1, Type: "Commanded", Timestamp: shadowNow, Data: json.RawMessage(`{"lock":"closed"}`)}
					err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
						if err := tx.Append(ctx, 0, snap, []es.Record{rec}); err != nil {
							return err
						}
						if err := tx.PutShadow(ctx, "lock-1", "", v2, 2, c.expected, shadowNow); err != nil {
							return err
						}
						if err := tx.LogShadowMessage(ctx, "lock-1", store.ShadowCommand, []byte(c.name), shadowNow); err != nil {
							return err
						}
						if c.readBack {
							if _, _, err := tx.Shadow(ctx, "lock-1", ""); err != nil {
								return err
							}
						}
						return c.fail
					})
					if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
						t.Fatalf("write: %v, want %v", err, c.wantErr)
					}
					_, found, err := st.Snapshot(ctx, "shadowtest", id)
					if err != nil {
						t.Fatal(err)
					}
					n, err := st.StreamLen(ctx, "shadowtest", id)
					if err != nil {
						t.Fatal(err)
					}
					cmds, _, _, err := st.ShadowMessages(ctx, "lock-1", store.ShadowMessagesKept)
					if err != nil {
						t.Fatal(err)
					}
					logged := false
					for _, m := range cmds {
						logged = logged || m.Payload == c.name
					}
					committed := c.wantErr == nil
					if found != committed || (n == 1) != committed || logged != committed {
						t.Errorf("snapshot stored %v, events %d, message logged %v: want all or nothing (committed %v)", found, n, logged, committed)
					}
					want := v1
					if committed {
						want = v2
					}
					if got := storedShadow(t, st, "lock-1", ""); got != string(want) {
						t.Errorf("stored shadow %s, want %s", got, want)
					}
				})
			}
		})
	}
}

// TestShadowRebuildKeepsShadows: a rebuild of the read models leaves the
// shadows and the message log as they were.
func TestShadowRebuildKeepsShadows(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, svc := acmeStore(t, b)
			_, v1 := shadowDoc(t, `{"state":{"desired":{"lock":"open"}}}`)
			err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				if err := tx.PutShadow(ctx, "lock-1", "", v1, 1, 0, shadowNow); err != nil {
					return err
				}
				return tx.LogShadowMessage(ctx, "lock-1", store.ShadowStatus, []byte(`{"state":{"reported":{"lock":"open"}}}`), shadowNow)
			})
			if err != nil {
				t.Fatal(err)
			}
			before := shadowTables(t, st)
			if len(before) != 2 {
				t.Fatalf("tables before the rebuild: %q", before)
			}
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, shadowTables(t, st)); diff != "" {
				t.Errorf("shadow tables changed by the rebuild (-before +after):\n%s", diff)
			}
		})
	}
}

func shadowTables(t *testing.T, st *store.Store) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"shadows", "shadow_messages"} {
		rows, err := store.DumpTable(st, table)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rows...)
	}
	return out
}
