package store_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestRebuildManySnapshots rebuilds a history of more aggregates than one
// of Rebuild's snapshot INSERTs holds (512, then smaller ones for the
// rest), with residents added and removed: the rebuilt read models equal
// the live ones, and on PostgreSQL the rebuild commits in its pipelined
// transaction, not in the writer's one-statement-at-a-time retry (which
// a statement failing in the pipeline, such as a duplicate snapshot,
// would cause).
func TestRebuildManySnapshots(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			admin := app.Principal{Admin: true}
			if _, err := svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register"}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			acme := app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}
			const locks, perLock = 20, 40 // 821 aggregates: 512 + 256 + 32 + 16 + 4 + 1
			var wg sync.WaitGroup
			errs := make([]error, locks)
			for i := range locks {
				wg.Go(func() {
					id := int64(1000 + i)
					if _, err := svc.CreateLock(ctx, acme, id, app.CreateLockInput{Index: 1, UUID: app.NewUUID()}); err != nil {
						errs[i] = err
						return
					}
					for j := range perLock {
						u := app.NewUUID()
						if _, err := svc.CreateUser(ctx, acme, u, app.CreateUserInput{UserID: u, Email: fmt.Sprintf("u%d-%d@example.com", i, j)}); err != nil {
							errs[i] = err
							return
						}
						if _, err := svc.AddResident(ctx, acme, id, app.ResidentInput{Name: "R " + strconv.Itoa(j), UserID: &u}); err != nil {
							errs[i] = err
							return
						}
						if j%3 == 0 {
							if _, err := svc.RemoveResident(ctx, acme, id, app.ResidentInput{UserID: &u}); err != nil {
								errs[i] = err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			live := dump(t, st)
			refused0 := store.Refusals(st)
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			if diff := cmp.Diff(live, dump(t, st)); diff != "" {
				t.Errorf("read models after rebuild differ from the live ones (-live +rebuilt):\n%s", diff)
			}
			if refused := store.Refusals(st); refused != refused0 {
				t.Errorf("the rebuild's pipelined transaction was refused and run again (%d refusals)", refused-refused0)
			}
		})
	}
}
