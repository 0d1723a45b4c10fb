package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestNotifyBeforeReadyForQuery checks the server behaviour the PostgreSQL
// read cache rests on (fence.go): once a transaction that ran pg_notify has
// answered its COMMIT, any query a listening session sends afterwards
// brings that notification before its ReadyForQuery.
func TestNotifyBeforeReadyForQuery(t *testing.T) {
	base := os.Getenv("SPKEY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SPKEY_TEST_POSTGRES_URL not set")
	}
	ctx := context.Background()
	var mu sync.Mutex
	var got []string
	lcfg, err := pgconn.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	lcfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		mu.Lock()
		got = append(got, n.Payload)
		mu.Unlock()
	}
	listener, err := pgconn.ConnectConfig(ctx, lcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	ch := "spkey_fence_test_" + strconv.Itoa(os.Getpid())
	if _, err := listener.Exec(ctx, "LISTEN "+ch).ReadAll(); err != nil {
		t.Fatal(err)
	}
	writer, err := pgconn.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	// The commit answers on another goroutine (as on another node); the
	// listener's round trip starts once that answer is in.
	for i := range 2000 {
		want := strconv.Itoa(i)
		done := make(chan error)
		go func() {
			_, err := writer.Exec(ctx, "BEGIN; SELECT pg_notify('"+ch+"', '"+want+"'); COMMIT").ReadAll()
			done <- err
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := listener.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ok := slices.Contains(got, want)
		got = got[:0]
		mu.Unlock()
		if !ok {
			t.Fatalf("round %d: the notification of a committed transaction had not arrived by the ReadyForQuery of a query sent after the commit answered", i)
		}
	}
}

// twoNodes opens two stores, each with its own app, on one fresh
// PostgreSQL schema: two nodes of one deployment.
func twoNodes(t *testing.T) (a, b *store.Store, sa, sb *app.Service) {
	t.Helper()
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	url := testenv.PostgresURL(t)
	open := func() (*store.Store, *app.Service) {
		st, err := server.OpenStore(context.Background(), server.StoreConfig{DB: url}, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		waitListening(t, st)
		return st, app.New(st, app.Options{}, testenv.Discard())
	}
	a, sa = open()
	b, sb = open()
	return a, b, sa, sb
}

// waitListening waits until st's cache listener is connected.
func waitListening(t *testing.T, st *store.Store) uint32 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid, up := store.CacheListener(st); up {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache listener did not connect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fresh is the context of one request.
func fresh() context.Context { return app.FreshReads(context.Background()) }

// TestCacheTwoNodes runs writes on two nodes sharing one PostgreSQL
// database while both serve reads from their caches: a read on one node
// that starts after a write answered on the other always sees that write
// (residents added and removed, a phone number changed, an API key rotated
// away), with other writers and readers busy on the same rows.
func TestCacheTwoNodes(t *testing.T) {
	a, b, sa, sb := twoNodes(t)
	ctx := context.Background()
	admin := app.Principal{Admin: true}
	if _, err := sa.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	if _, err := sa.CreateLock(ctx, app.Call{P: p}, 1, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	nodes := []*app.Service{sa, sb}
	stores := []*store.Store{a, b}
	var pids []uint32
	for _, st := range stores {
		pid, _ := store.CacheListener(st)
		pids = append(pids, pid)
	}
	const writers, rounds = 4, 40
	ids := make([]string, writers)
	for i := range writers {
		u, err := sa.FindOrCreate(ctx, p, false, app.FindInput{Email: fmt.Sprintf("w%d@example.com", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.UserID
	}
	// Concurrent writers of one lock may exhaust the app's retries.
	retry := func(f func() error) error {
		for range 100 {
			err := f()
			if err == nil || domain.ErrorCode(err) != domain.Conflict {
				return err
			}
		}
		return errors.New("conflicts 100 times in a row")
	}
	errs := make(chan error, 100)
	fail := func(format string, args ...any) {
		select {
		case errs <- fmt.Errorf(format, args...):
		default:
		}
	}
	stop := make(chan struct{})
	var busy sync.WaitGroup
	// Readers on both nodes keep the caches warm and race the writers.
	for n := range 2 {
		busy.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := nodes[n].Residents(fresh(), p, 1); err != nil {
					fail("reader on node %d: %v", n, err)
					return
				}
				if _, err := stores[n].Users(fresh(), ids); err != nil {
					fail("reader on node %d: %v", n, err)
					return
				}
			}
		})
	}
	var wg sync.WaitGroup
	has := func(n int, id string) (bool, error) {
		rs, err := nodes[n].Residents(fresh(), p, 1)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(rs, func(r app.ResidentView) bool { return r.UserID == id }), nil
	}
	for w := range writers {
		wg.Go(func() {
			email := fmt.Sprintf("w%d@example.com", w)
			on, other := w%2, 1-w%2
			for i := range rounds {
				if err := retry(func() error {
					_, err := nodes[on].AddResident(ctx, app.Call{P: p}, 1, app.ResidentInput{Name: "W", Email: &email})
					return err
				}); err != nil {
					fail("writer %d add: %v", w, err)
					return
				}
				if ok, err := has(other, ids[w]); err != nil || !ok {
					fail("round %d: node %d misses the resident node %d added (err %v)", i, other, on, err)
					return
				}
				if err := retry(func() error {
					_, err := nodes[on].RemoveResident(ctx, app.Call{P: p}, 1, app.ResidentInput{Email: &email})
					return err
				}); err != nil {
					fail("writer %d remove: %v", w, err)
					return
				}
				if ok, err := has(other, ids[w]); err != nil || ok {
					fail("round %d: node %d still lists the resident node %d removed (err %v)", i, other, on, err)
					return
				}
			}
		})
	}
	// A phone number changed on A, read on B by id, by the new number and
	// by the old one.
	wg.Go(func() {
		old := ""
		for i := range rounds {
			phone := fmt.Sprintf("+4812345%04d", i)
			if err := retry(func() error {
				_, err := sa.UpdatePhoneNumber(ctx, app.Call{P: p}, ids[0], &phone)
				return err
			}); err != nil {
				fail("phone: %v", err)
				return
			}
			u, ok, err := b.User(fresh(), store.ByID, ids[0])
			if err != nil || !ok || u.Phone != phone {
				fail("round %d: node B reads phone %q (found %v, err %v), want %q", i, u.Phone, ok, err, phone)
				return
			}
			us, err := b.Users(fresh(), ids[:1])
			if err != nil || us[ids[0]].Phone != phone {
				fail("round %d: node B's Users reads phone %q (err %v), want %q", i, us[ids[0]].Phone, err, phone)
				return
			}
			u, ok, err = b.User(fresh(), store.ByPhone, phone)
			if err != nil || !ok || u.UserID != ids[0] {
				fail("round %d: node B finds no user by the new phone (err %v)", i, err)
				return
			}
			if old != "" {
				if _, ok, err := b.User(fresh(), store.ByPhone, old); err != nil || ok {
					fail("round %d: node B still finds the user by the old phone (err %v)", i, err)
					return
				}
			}
			old = phone
		}
	})
	// An API key rotated away on A is refused on B at once; B had it
	// cached (it authenticated just before).
	wg.Go(func() {
		k, err := sa.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, false)
		if err != nil {
			fail("issue: %v", err)
			return
		}
		for i := range rounds {
			if _, err := sb.AuthenticateKey(fresh(), k.APIKey); err != nil {
				fail("round %d: node B refuses the current key: %v", i, err)
				return
			}
			next, err := sa.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, true)
			if err != nil {
				fail("rotate: %v", err)
				return
			}
			if _, err := sb.AuthenticateKey(fresh(), k.APIKey); err == nil {
				fail("round %d: node B still accepts the key node A rotated away", i)
				return
			}
			k = next
		}
	})
	wg.Wait()
	close(stop)
	busy.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Both nodes used their caches throughout: the listeners never fell
	// over (reads would have gone to the database then).
	for n, st := range stores {
		if !store.CachedReads(fresh(), st) {
			t.Errorf("node %d reads without its cache", n)
		}
		if pid, _ := store.CacheListener(st); pid != pids[n] {
			t.Errorf("node %d's cache listener reconnected during the test", n)
		}
	}
	v, err := sb.Lock(fresh(), p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.State.Residents) != 0 {
		t.Errorf("residents left: %+v", v.State.Residents)
	}
}

// TestCacheListenerLoss kills a node's cache listener (pg_terminate_backend)
// behind its warm cache: reads stay exact while it is gone (they go to the
// database) and the cache is used again once it is back.
func TestCacheListenerLoss(t *testing.T) {
	a, b, sa, sb := twoNodes(t)
	ctx := context.Background()
	if _, err := sa.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	if _, err := sa.CreateLock(ctx, app.Call{P: p}, 1, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		rs, err := sb.Residents(fresh(), p, 1)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	add := func(i int) {
		t.Helper()
		e := fmt.Sprintf("r%d@example.com", i)
		if _, err := sa.FindOrCreate(ctx, p, false, app.FindInput{Email: e}); err != nil {
			t.Fatal(err)
		}
		if _, err := sa.AddResident(ctx, app.Call{P: p}, 1, app.ResidentInput{Name: "R", Email: &e}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 0 { // warms B's cache
		t.Fatalf("%d residents, want 0", n)
	}
	for round := 1; round <= 3; round++ {
		pid := waitListening(t, b)
		if err := store.Exec(ctx, a, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
			t.Fatal(err)
		}
		add(round) // its invalidation cannot reach B's dead listener
		if n := count(); n != round {
			t.Fatalf("round %d: node B lists %d residents right after its listener died, want %d", round, n, round)
		}
		// Back: a new listener, and the cache in use again.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if np, up := store.CacheListener(b); up && np != pid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the cache listener did not come back within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !store.CachedReads(fresh(), b) {
			t.Fatalf("round %d: node B does not use its cache after the listener came back", round)
		}
		if n := count(); n != round {
			t.Fatalf("round %d: node B lists %d residents after the listener came back, want %d", round, n, round)
		}
	}
}
