package devices_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// twoGateways opens two stores on one database, as two nodes would, and a
// gateway over each (sharing one broker, not started: the test calls
// them directly).
func twoGateways(t *testing.T, b testenv.Backend) ([]*devices.Gateway, []*store.Store) {
	t.Helper()
	var cfg server.StoreConfig
	if b == testenv.Postgres {
		cfg.DB = testenv.PostgresURL(t)
	} else {
		cfg.SQLite = filepath.Join(t.TempDir(), "spkey.db")
	}
	var gws []*devices.Gateway
	var sts []*store.Store
	for range 2 {
		st, err := server.OpenStore(context.Background(), cfg, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sts = append(sts, st)
		gws = append(gws, devices.New(st, devices.Config{Now: func() time.Time { return testNow }, MaxAttempts: 10}, testenv.Logger(t)))
	}
	return gws, sts
}

// TestConcurrentRequests: requests for one shadow run at once on two
// nodes. Updates without a version all win, each with its own version;
// updates that expect the same version: exactly one wins, the others are
// answered 409. The store ends at the last accepted version.
func TestConcurrentRequests(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			gws, sts := twoGateways(t, b)
			const n = 8
			const topic = "$aws/things/thing-9/shadow/update"
			race := func(payload string) (accepted []int64, rejected []string) {
				answers := make([][]devices.Answer, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						answers[i] = devices.Handle(context.Background(), gws[i%2], "thing-9", topic, []byte(payload))
					})
				}
				wg.Wait()
				for _, a := range answers {
					switch {
					case len(a) > 0 && a[0].Topic == topic+"/accepted":
						var v struct{ Version int64 }
						if err := json.Unmarshal([]byte(a[0].Payload), &v); err != nil {
							t.Fatal(err)
						}
						accepted = append(accepted, v.Version)
					case len(a) == 1 && a[0].Topic == topic+"/rejected":
						rejected = append(rejected, a[0].Payload)
					default:
						t.Fatalf("answers %v", a)
					}
				}
				slices.Sort(accepted)
				return accepted, rejected
			}

			accepted, rejected := race(`{"state":{"reported":{"lock":"open"}}}`)
			if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 7, 8}, accepted); diff != "" || len(rejected) != 0 {
				t.Errorf("unversioned updates: accepted versions (-want +got):\n%s\nrejected: %v", diff, rejected)
			}
			accepted, rejected = race(`{"state":{"reported":{"lock":"closed"}},"version":8}`)
			conflict := `{"code":409,"message":"Version conflict","timestamp":` + T + `}`
			if diff := cmp.Diff([]int64{9}, accepted); diff != "" || len(rejected) != n-1 || slices.ContainsFunc(rejected, func(p string) bool { return p != conflict }) {
				t.Errorf("updates expecting version 8: accepted (-want +got):\n%s\nrejected: %v", diff, rejected)
			}
			doc, _ := storedShadow(t, sts[0], "thing-9", "")
			if doc.Version != 9 || doc.Reported["lock"] != "closed" {
				t.Errorf("stored: version %d, reported %v; want version 9, lock closed", doc.Version, doc.Reported)
			}
			if _, status := logged(t, sts[1], "thing-9"); len(status) != 9 {
				t.Errorf("%d statuses logged, want 9", len(status))
			}
			t.Logf("retries: %d and %d", gws[0].Stats().Retries, gws[1].Stats().Retries)
		})
	}
}
