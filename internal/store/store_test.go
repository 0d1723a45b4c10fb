package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/es/estest"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

func TestConformance(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			estest.Run(t, func(t *testing.T) es.Store { return testenv.OpenStore(t, b) }, testenv.SubscribeWebhook)
		})
	}
}

// history drives a realistic mix of commands through the service: two
// tenants with issued and rotated keys, locks created by tenants and by a
// user, users found or created by e-mail and phone, residents added and
// removed, owners, organizations, phone and e-mail changes.
func history(t *testing.T, svc *app.Service) {
	t.Helper()
	ctx := context.Background()
	admin := app.Principal{Admin: true}
	acme := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	globex := app.Principal{Kind: app.TenantCaller, OrgID: "globex", Super: true}
	step := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	ptr := func(s string) *string { return &s }

	_, err := svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register"}, "acme", "Acme Ltd", "Owner@Acme.example")
	step("register acme", err)
	_, err = svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register"}, "globex", "", "")
	step("register globex", err)
	_, err = svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, false)
	step("issue acme key", err)
	_, err = svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, true)
	step("rotate acme key", err)
	_, err = svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "globex", Super: true, ExpiresAt: time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}, false)
	step("issue globex key", err)
	_, err = svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "globex"}, true)
	step("rotate globex key", err)

	alice, err := svc.FindOrCreate(ctx, acme, false, app.FindInput{Email: "alice@example.com"})
	step("find-or-create alice", err)
	bob, err := svc.FindOrCreate(ctx, acme, true, app.FindInput{Phone: "+48 123 456 789", Email: "bob@example.com"})
	step("find-or-create bob", err)
	carol, err := svc.FindOrCreate(ctx, globex, true, app.FindInput{Phone: "0044 20 7946 0958"})
	step("find-or-create carol", err)
	_, err = svc.FindOrCreate(ctx, globex, false, app.FindInput{Email: "ALICE@example.com"})
	step("find alice again", err)

	_, err = svc.CreateLock(ctx, app.Call{P: acme}, 1001, app.CreateLockInput{UUID: "6F1C2E9A-0B3D-4C5E-8F7A-9B0C1D2E3F40", SerialNumber: "SN-1001",
		Keys: []lock.Key{{UUID: "k-1"}, {UUID: "k-2", UserID: alice.UserID}}})
	step("create lock 1001", err)
	_, err = svc.CreateLock(ctx, app.Call{P: globex}, 1002, app.CreateLockInput{UUID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"})
	step("create lock 1002", err)
	_, err = svc.CreateLock(ctx, app.Call{P: acme}, 1001, app.CreateLockInput{UUID: "6F1C2E9A-0B3D-4C5E-8F7A-9B0C1D2E3F40"})
	step("create lock 1001 again", err)
	userP := app.Principal{Kind: app.UserCaller, UserID: bob.UserID}
	_, err = svc.CreateLock(ctx, app.Call{P: userP}, 1003, app.CreateLockInput{UUID: "11111111-2222-4333-8444-555555555555", OwnerID: bob.UserID})
	step("create lock 1003 by a user", err)

	_, err = svc.AddResident(ctx, app.Call{P: acme}, 1001, app.ResidentInput{Name: "Alice", Email: ptr("alice@example.com")})
	step("add alice", err)
	_, err = svc.AddResident(ctx, app.Call{P: acme}, 1001, app.ResidentInput{Name: "Bob", PhoneNumber: ptr("+48123456789")})
	step("add bob", err)
	_, err = svc.RemoveResident(ctx, app.Call{P: acme}, 1001, app.ResidentInput{Email: ptr("alice@example.com")})
	step("remove alice", err)
	_, err = svc.AddResident(ctx, app.Call{P: acme}, 1001, app.ResidentInput{Name: "Alice again", UserID: ptr(alice.UserID)})
	step("add alice back", err)
	_, err = svc.AddResident(ctx, app.Call{P: globex}, 1002, app.ResidentInput{Name: "Carol", PhoneNumber: ptr("+442079460958")})
	step("add carol", err)
	_, err = svc.SetOwner(ctx, app.Call{P: acme}, 1001, alice.UserID)
	step("set owner 1001", err)
	_, err = svc.SetOwner(ctx, app.Call{P: acme}, 1001, bob.UserID)
	step("change owner 1001", err)
	_, err = svc.SetOrganization(ctx, app.Call{P: globex}, 1003, "globex")
	step("assign 1003 to globex", err)

	_, err = svc.UpdatePhoneNumber(ctx, app.Call{P: acme}, alice.UserID, ptr("+1 (415) 555-0100"))
	step("set alice's phone", err)
	// bob owns lock 1003 at globex now: acme's custody of the record it
	// created is over, but bob may remove his own number.
	_, err = svc.UpdatePhoneNumber(ctx, app.Call{P: userP}, bob.UserID, nil)
	step("remove bob's phone", err)
	_, err = svc.UpdateEmail(ctx, app.Call{P: globex}, carol.UserID, "carol@example.com")
	step("set carol's e-mail", err)
}

func dump(t *testing.T, st *store.Store) string {
	t.Helper()
	d, err := st.DumpReadModels(context.Background())
	if err != nil {
		t.Fatalf("dump read models: %v", err)
	}
	return d
}

func TestRebuildEqualsLive(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{AllowUserLockCreate: true}, testenv.Discard())
			history(t, svc)

			// The history really produced read models worth comparing.
			for typ, want := range map[string]int{lock.AggregateType: 3, user.AggregateType: 3, tenant.AggregateType: 2} {
				snaps, err := st.Snapshots(ctx, typ)
				if err != nil {
					t.Fatal(err)
				}
				if len(snaps) != want {
					t.Errorf("%d %s snapshots after the history, want %d", len(snaps), typ, want)
				}
			}
			live := dump(t, st)
			if n := strings.Count(live, "\n"); n < 2+3+3+2+4 {
				t.Fatalf("live dump has only %d lines:\n%s", n, live)
			}

			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			if diff := cmp.Diff(live, dump(t, st)); diff != "" {
				t.Errorf("read models after rebuild differ from the live ones (-live +rebuilt):\n%s", diff)
			}
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("second rebuild: %v", err)
			}
			if diff := cmp.Diff(live, dump(t, st)); diff != "" {
				t.Errorf("second rebuild differs (-live +rebuilt):\n%s", diff)
			}

			// Commands keep working on the rebuilt snapshots: versions
			// continue where the log ends.
			before, err := st.StreamLen(ctx, lock.AggregateType, "1001")
			if err != nil {
				t.Fatal(err)
			}
			res, err := svc.RemoveResident(ctx, app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}, 1001,
				app.ResidentInput{Email: func() *string { s := "bob@example.com"; return &s }()})
			if err != nil {
				t.Fatalf("command after rebuild: %v", err)
			}
			if res.Version != before+1 {
				t.Errorf("version after rebuild = %d, want %d", res.Version, before+1)
			}
		})
	}
}

// writeJob is one concurrent Write: it inserts a user and appends to a
// stream of its own, then fails or not.
func writeJob(i int, fail bool) func(ctx context.Context, tx *store.Tx) error {
	return func(ctx context.Context, tx *store.Tx) error {
		id := fmt.Sprintf("w-%04d", i)
		if err := tx.InsertUser(ctx, store.User{UserID: id, Email: id + "@example.com", CreatedAt: "2026-01-01T00:00:00.000Z"}); err != nil {
			return err
		}
		r := es.Record{AggregateType: "writetest", AggregateID: id, Version: 1, Type: "T", Timestamp: "2026-01-01T00:00:00.000Z", OrgID: "org", Data: []byte(`{}`)}
		if err := tx.Append(ctx, 0, es.Snapshot{AggregateType: "writetest", AggregateID: id, OrgID: "org", State: []byte(`{}`)}, []es.Record{r}); err != nil {
			return err
		}
		if fail {
			return fmt.Errorf("job %d: %w", i, errJob)
		}
		return nil
	}
}

var errJob = errors.New("job failed on purpose")

// checkWritten requires exactly the jobs in want to have left their user,
// stream and outbox row.
func checkWritten(t *testing.T, st *store.Store, n int, committed func(i int) bool) {
	t.Helper()
	ctx := context.Background()
	var wrong []string
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
		if want := committed(i); found != want || (v == 1) != want {
			wrong = append(wrong, fmt.Sprintf("%s: user stored %v, stream version %d, want committed %v", id, found, v, want))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("writes not as expected:\n%s", strings.Join(wrong, "\n"))
	}
	rows, err := st.Outbox(ctx, es.ConsumerWebhooks, 10*n)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := range n {
		if committed(i) {
			want++
		}
	}
	if len(rows) != want {
		t.Errorf("%d outbox rows, want %d", len(rows), want)
	}
}

// TestConcurrentWritesFailAlone: many concurrent Write calls all return
// their own outcome; each failing one rolls back only its own writes.
func TestConcurrentWritesFailAlone(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			const n = 200
			fails := func(i int) bool { return i%5 == 2 }
			st := testenv.OpenStore(t, b)
			testenv.SubscribeWebhook(t, st, "org") // writeJob's tenant: its appends get partner rows
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = st.Write(context.Background(), writeJob(i, fails(i)))
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if fails(i) && !errors.Is(err, errJob) {
					t.Errorf("failing job %d returned %v, want its own error", i, err)
				}
				if !fails(i) && err != nil {
					t.Errorf("job %d returned %v, want success", i, err)
				}
			}
			checkWritten(t, st, n, func(i int) bool { return !fails(i) })
		})
	}
}

// TestGroupCommit holds the writer with one job while many more queue
// behind it, then lets them run. Each job writes its row and looks for the
// rows of the others twice: through its transaction and through a reader.
//
// On both backends the queued jobs share one transaction (group commit),
// so a job sees, inside its transaction, a row of an earlier job of its
// batch that no reader can see yet, and a failing job of the batch rolls
// back alone while every other job commits.
func TestGroupCommit(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			testGroupCommit(t, b)
		})
	}
}

func testGroupCommit(t *testing.T, b testenv.Backend) {
	st := testenv.OpenStore(t, b)
	testenv.SubscribeWebhook(t, st, "org") // writeJob's tenant: its appends get partner rows
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(15 * time.Second)
	n := 32
	fails := func(i int) bool { return i%4 == 1 }
	base := 0
	for round := 1; ; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("no two concurrent writes shared a commit in %d rounds", round-1)
		}
		// Hold the writer so that the next jobs queue up behind it.
		held, release := make(chan struct{}), make(chan struct{})
		gateDone := make(chan error, 1)
		go func() {
			gateDone <- st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				close(held)
				select {
				case <-release:
					return nil
				case <-time.After(10 * time.Second):
					return errors.New("gate never released")
				}
			})
		}()
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("the writer never ran the gate job")
		}

		// sawUncommitted[i]: job i saw, inside its transaction, a row of a
		// successful peer that no reader could see.
		sawUncommitted := make([]bool, n)
		errs := make([]error, n)
		var started, wg sync.WaitGroup
		started.Add(n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started.Done()
				job := writeJob(base+i, fails(i))
				errs[i] = st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					for j := range n {
						if j == i || fails(j) {
							continue
						}
						id := fmt.Sprintf("w-%04d", base+j)
						_, inTx, err := tx.User(ctx, store.ByID, id)
						if err != nil {
							return err
						}
						_, committed, err := st.User(ctx, store.ByID, id)
						if err != nil {
							return err
						}
						if inTx && !committed {
							sawUncommitted[i] = true
						}
					}
					return job(ctx, tx)
				})
			}()
		}
		started.Wait()
		close(release)
		wg.Wait()
		if err := <-gateDone; err != nil {
			t.Fatalf("gate job: %v", err)
		}
		for i, err := range errs {
			if fails(i) && !errors.Is(err, errJob) {
				t.Fatalf("round %d: failing job %d returned %v, want its own error", round, i, err)
			}
			if !fails(i) && err != nil {
				t.Fatalf("round %d: job %d returned %v, want success", round, i, err)
			}
		}
		base += n
		checkWritten(t, st, base, func(i int) bool { return !fails(i % n) })

		batched, batchedFailing := 0, 0
		for i, saw := range sawUncommitted {
			if saw {
				batched++
				if fails(i) {
					batchedFailing++
				}
			}
		}
		// Evidence that a failing job shared its commit with successful
		// ones, which committed without it (both backends group-commit).
		if batchedFailing > 0 {
			t.Logf("round %d: %d of %d jobs saw an uncommitted row of an earlier job of their batch (%d of them failing ones)", round, batched, n, batchedFailing)
			return
		}
	}
}

// TestFailingJobsRunAtMostTwice: on SQLite a batch in which many jobs fail
// runs each job at most twice (once optimistically, once inside its own
// savepoint), not once per failure before it; every failing job leaves no
// trace, neither in the database nor in what later jobs of the batch see.
func TestFailingJobsRunAtMostTwice(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			testFailingJobsRunAtMostTwice(t, b)
		})
	}
}

func testFailingJobsRunAtMostTwice(t *testing.T, b testenv.Backend) {
	st := testenv.OpenStore(t, b)
	testenv.SubscribeWebhook(t, st, "org") // writeJob's tenant: its appends get partner rows
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 64
	fails := func(i int) bool { return i%2 == 0 }
	release := holdWriter(ctx, st)
	runs := make([]int, n)
	errs := make([]error, n)
	var mu sync.Mutex
	var wg, started sync.WaitGroup
	started.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job := writeJob(i, fails(i))
			started.Done()
			errs[i] = st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				mu.Lock()
				runs[i]++
				mu.Unlock()
				// What an earlier failing job of the batch wrote must not be
				// visible: the previous even job's stream stays empty.
				if i > 0 && fails(i-1) {
					if sn, found, err := tx.Snapshot(ctx, "writetest", fmt.Sprintf("w-%04d", i-1)); err != nil || found {
						return fmt.Errorf("job %d sees failed job %d's snapshot %+v (%v)", i, i-1, sn, err)
					}
				}
				return job(ctx, tx)
			})
		}()
	}
	started.Wait()
	waitQueued(t, st, n)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range n {
		if runs[i] > 2 {
			t.Errorf("job %d ran %d times", i, runs[i])
		}
		if fails(i) != (errs[i] != nil) || (errs[i] != nil && !errors.Is(errs[i], errJob)) {
			t.Errorf("job %d: %v", i, errs[i])
		}
	}
	checkWritten(t, st, n, func(i int) bool { return !fails(i) })
}

// TestWritesRacingCloseReturn: writes racing Close on SQLite all return
// (committed, or refused as closed); none is left waiting.
func TestWritesRacingCloseReturn(t *testing.T) {
	for round := range 20 {
		st, err := store.OpenSQLite(context.Background(), fmt.Sprintf("%s/r%d.db", t.TempDir(), round), store.SQLiteOptions{}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = st.Write(context.Background(), writeJob(round*100+i, false))
			}()
		}
		go func() { wg.Wait(); close(done) }()
		_ = st.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a write racing Close never returned", round)
		}
	}
}

// TestBatchMixesFailures: a batch mixing jobs that fail before anything
// of theirs reached the database (on PostgreSQL: statements still queued
// in the pipeline), jobs that fail after reading (their statements were
// sent) and jobs that succeed answers every job exactly once, with its
// own outcome, and commits exactly the successful ones.
func TestBatchMixesFailures(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			st := testenv.OpenStore(t, b)
			testenv.SubscribeWebhook(t, st, "org") // writeJob's tenant: its appends get partner rows
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const n = 48
			kind := func(i int) int { return i % 3 } // 0: fails unread, 1: reads then fails, 2: succeeds
			release := holdWriter(ctx, st)
			errs := make([]error, n)
			runs := make([]atomic.Int32, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
						run := runs[i].Add(1)
						if kind(i) == 1 {
							if _, _, err := tx.Snapshot(ctx, "writetest", "nobody"); err != nil {
								return err
							}
						}
						// A job of kind 0 would succeed if it ran again after
						// its failure was answered: it must not.
						return writeJob(i, kind(i) == 1 || (kind(i) == 0 && run == 1))(ctx, tx)
					})
				})
			}
			waitQueued(t, st, n)
			if err := release(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("not every job was answered")
			}
			for i, err := range errs {
				if fails := kind(i) != 2; fails != errors.Is(err, errJob) || (!fails && err != nil) {
					t.Errorf("job %d (kind %d): %v", i, kind(i), err)
				}
			}
			for i := range n {
				if r := runs[i].Load(); r > 2 {
					t.Errorf("job %d ran %d times", i, r)
				}
			}
			checkWritten(t, st, n, func(i int) bool { return kind(i) == 2 })
		})
	}
}

// holdWriter occupies the writer with a job that waits, so that the next
// writes queue up behind it, and returns once that job runs. release lets
// it commit and returns its outcome.
func holdWriter(ctx context.Context, st *store.Store) (release func() error) {
	held, free := make(chan struct{}), make(chan struct{})
	gate := make(chan error, 1)
	go func() {
		gate <- st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
			close(held)
			<-free
			return nil
		})
	}()
	<-held
	return func() error { close(free); return <-gate }
}

// waitQueued waits until n writes are queued behind the held writer.
func waitQueued(t *testing.T, st *store.Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); store.QueuedWrites(st) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d jobs queued behind the held writer", store.QueuedWrites(st), n)
		}
		time.Sleep(time.Millisecond)
	}
}
