package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestConcurrentCommands drives one lock and one e-mail from many
// goroutines, as several nodes would: every AddResident that succeeded is
// on the list, versions stay contiguous, and concurrent find-or-create of
// one address yields one user.
func TestConcurrentCommands(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			admin := app.Principal{Admin: true}
			if _, err := svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
			if _, err := svc.CreateLock(ctx, app.Call{P: p}, 9, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
				t.Fatal(err)
			}

			const n = 24
			ids := make([]string, n)
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					u, err := svc.FindOrCreate(ctx, p, false, app.FindInput{Email: "same@example.com"})
					if err != nil {
						errs <- fmt.Errorf("find-or-create %d: %w", i, err)
						return
					}
					ids[i] = u.UserID
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for i := range ids {
				if ids[i] != ids[0] {
					t.Fatalf("find-or-create of one address gave two users: %s and %s", ids[0], ids[i])
				}
			}

			users := make([]string, n)
			for i := range users {
				u, err := svc.FindOrCreate(ctx, p, false, app.FindInput{Email: fmt.Sprintf("r%d@example.com", i)})
				if err != nil {
					t.Fatal(err)
				}
				users[i] = u.UserID
			}
			errs = make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					email := fmt.Sprintf("r%d@example.com", i)
					if _, err := svc.AddResident(ctx, app.Call{P: p}, 9, app.ResidentInput{Name: "R", Email: &email}); err != nil {
						errs <- err
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("AddResident: %v", err)
			}
			v, err := svc.Lock(ctx, p, 9)
			if err != nil {
				t.Fatal(err)
			}
			if len(v.State.Residents) != n {
				t.Fatalf("want %d residents, got %d", n, len(v.State.Residents))
			}
			recs, err := st.Stream(ctx, lock.AggregateType, "9", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range recs {
				if r.Version != int64(i+1) {
					t.Fatalf("version gap: record %d has version %d", i, r.Version)
				}
			}
			if int64(len(recs)) != v.Version || len(recs) != n+2 {
				t.Fatalf("stream has %d records, snapshot version %d, want %d", len(recs), v.Version, n+2)
			}
		})
	}
}

// TestTwoNodesOnePostgres runs two services over two connection pools to
// one PostgreSQL schema, as two `spkey serve` processes would, and writes to
// one lock from both: optimistic versions and bounded retries keep every
// acknowledged resident and the versions contiguous.
func TestTwoNodesOnePostgres(t *testing.T) {
	url := testenv.PostgresURL(t)
	ctx := context.Background()
	var nodes []*app.Service
	for i := 0; i < 2; i++ {
		st, err := store.OpenPostgres(ctx, url, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, app.New(st, app.Options{}, testenv.Discard()))
	}
	p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	if _, err := nodes[0].RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].CreateLock(ctx, app.Call{P: p}, 5, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	for i := 0; i < n; i++ {
		if _, err := nodes[i%2].FindOrCreate(ctx, p, false, app.FindInput{Email: fmt.Sprintf("n%d@example.com", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			email := fmt.Sprintf("n%d@example.com", i)
			if _, err := nodes[i%2].AddResident(ctx, app.Call{P: p}, 5, app.ResidentInput{Name: "N", Email: &email}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("AddResident across nodes: %v", err)
	}
	v, err := nodes[0].Lock(ctx, p, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.State.Residents) != n || v.Version != n+2 {
		t.Fatalf("want %d residents at version %d, got %d at %d", n, n+2, len(v.State.Residents), v.Version)
	}
}
