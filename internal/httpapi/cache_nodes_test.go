package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestCacheAcrossNodes runs two server nodes on one PostgreSQL database,
// each serving reads from its own cache: a resident added or removed
// through one node is listed (or not) by the other as soon as the write
// has answered, and a key rotated away through one node is refused by the
// other at once (it had just authenticated with it), while readers keep
// both caches busy.
func TestCacheAcrossNodes(t *testing.T) {
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	url := testenv.PostgresURL(t)
	node := func() *testenv.Server {
		st, err := server.OpenStore(context.Background(), server.StoreConfig{DB: url}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		// Its cache listener connects in the background.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, up := st.CacheListener(); up {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the cache listener did not connect within 10s")
			}
		}
		return testenv.NewServer(t, testenv.Postgres, testenv.Options{Store: st})
	}
	nodes := []*testenv.Server{node(), node()}
	listeners := func() (pids []uint32) {
		for _, n := range nodes {
			pid, up := n.Store.CacheListener()
			if !up {
				pid = 0
			}
			pids = append(pids, pid)
		}
		return pids
	}
	key := nodes[0].Tenant(t, "acme", false)
	before := listeners()
	wireOK(t, nodes[0], wireReq{Method: "POST", Path: "/locks/7/CreateLock", Key: key, Body: map[string]any{"index": 1, "uuid": "7a7a7a7a-2b1f-4e6d-9c8b-7a6f5e4d3c2b"}}, http.StatusCreated)
	const writers, rounds = 2, 30
	ids := make([]string, writers)
	for w := range writers {
		ids[w], _ = wireOK(t, nodes[0], wireReq{Method: "GET", Path: fmt.Sprintf("/users/by-email?email=w%d@example.com", w), Key: key}, http.StatusOK)["uuid"].(string)
	}

	call := func(n int, method, path, key string, body any) (int, []byte, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, nodes[n].URL+path, rd)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	listed := func(n int, id string) (bool, error) {
		st, b, err := call(n, "GET", "/locks/7/residents", "", nil)
		if err != nil || st != http.StatusOK {
			return false, fmt.Errorf("GET residents: %d %s %v", st, b, err)
		}
		var out struct{ Residents []struct{ UserID string } }
		if err := json.Unmarshal(b, &out); err != nil {
			return false, err
		}
		return slices.ContainsFunc(out.Residents, func(r struct{ UserID string }) bool { return r.UserID == id }), nil
	}

	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var busy, wg sync.WaitGroup
	for n := range nodes {
		busy.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := listed(n, ""); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	// Writer w writes through node w and reads through the other one.
	for w := range writers {
		wg.Go(func() {
			email := fmt.Sprintf("w%d@example.com", w)
			for i := range rounds {
				for _, step := range []struct {
					path string
					body map[string]any
					want bool
				}{{"/locks/7/AddResident", map[string]any{"name": "W", "email": email}, true}, {"/locks/7/RemoveResident", map[string]any{"email": email}, false}} {
					for {
						st, b, err := call(w, "POST", step.path, key, step.body)
						if err != nil {
							fail(err)
							return
						}
						if st == http.StatusConflict { // concurrent writers of one lock
							continue
						}
						if st != http.StatusOK {
							fail(fmt.Errorf("%s: %d %s", step.path, st, b))
							return
						}
						break
					}
					if got, err := listed(1-w, ids[w]); err != nil || got != step.want {
						fail(fmt.Errorf("round %d: after %s through node %d, node %d lists the resident: %v (want %v, err %v)", i, step.path, w, 1-w, got, step.want, err))
						return
					}
				}
			}
		})
	}
	// Another tenant's key rotated through node 0; node 1 authenticated
	// with the old key just before, so it had it cached (the lock is not
	// beta's: an accepted key gets 403, a refused one 401).
	admin := map[string]string{"X-Admin-API-Key": testenv.AdminKey}
	cur := nodes[0].Tenant(t, "beta", false)
	for i := range rounds {
		if st, b, err := call(1, "GET", "/locks/7/details", cur, nil); err != nil || st != http.StatusForbidden {
			t.Fatalf("round %d: node 1 answers %d %s (err %v) to the current key, want 403", i, st, b, err)
		}
		next, _ := wireOK(t, nodes[0], wireReq{Method: "POST", Path: "/api-keys/beta/rotate", Header: admin}, http.StatusCreated)["apiKey"].(string)
		if st, b, err := call(1, "GET", "/locks/7/details", cur, nil); err != nil || st != http.StatusUnauthorized {
			t.Fatalf("round %d: node 1 answers %d %s (err %v) to the key node 0 rotated away, want 401", i, st, b, err)
		}
		cur = next
	}
	wg.Wait()
	close(stop)
	busy.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	// The caches were in use throughout: neither listener fell over (reads
	// would have gone to the database then).
	if after := listeners(); !slices.Equal(before, after) || slices.Contains(after, 0) {
		t.Errorf("cache listeners %v before, %v after", before, after)
	}
}
