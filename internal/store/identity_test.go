package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// openMigratedUntil opens a store on backend b (a fresh SQLite file or
// PostgreSQL schema) migrated up to and including version: the database
// an older spkey left, for tests of a later migration. It is closed at
// the end of the test.
func openMigratedUntil(t *testing.T, b testenv.Backend, version string) *store.Store {
	t.Helper()
	ctx := context.Background()
	var st *store.Store
	var err error
	switch b {
	case testenv.SQLite:
		st, err = store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "old.db"), store.SQLiteOptions{}, testenv.Discard())
	case testenv.Postgres:
		st, err = store.OpenPostgres(ctx, testenv.PostgresURL(t), testenv.Discard())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := store.MigrateUntil(ctx, st, version); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMigrationIdentity: data written before migration 0005 (links made by
// lookups in user_tenants, locks with people on them) gets the narrower
// standing: custody only for a user one tenant alone was linked to, lock
// membership from the lock snapshots, and one lock per device uuid (the
// first created keeps it).
func TestMigrationIdentity(t *testing.T) {
	const (
		solo   = "11111111-1111-4111-8111-111111111111" // linked to acme only
		shared = "22222222-2222-4222-8222-222222222222" // linked to acme and globex
		none   = "33333333-3333-4333-8333-333333333333" // linked to no tenant
		device = "44444444-4444-4444-8444-444444444444"
	)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := openMigratedUntil(t, b, "0004_webhook_backlog")
			exec := func(q string, args ...any) {
				t.Helper()
				if err := store.Exec(ctx, st, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			for _, u := range []string{solo, shared, none} {
				exec(`INSERT INTO users (user_id, email, first_name, last_name, created_at) VALUES ($1, $2, '', '', '2026-01-01T00:00:00.000Z')`, u, u[:8]+"@example.com")
			}
			exec(`INSERT INTO user_tenants (user_id, org_id) VALUES ($1, 'acme'), ($2, 'acme'), ($3, 'globex')`, solo, shared, shared)
			lock := func(id, org, created, state string) {
				exec(`INSERT INTO aggregates (aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at) VALUES ('lock', $1, 1, $2, $3, $4, $4)`, id, org, state, created)
			}
			lock("1", "acme", "2026-01-01T00:00:00.000Z", `{"lockId":1,"uuid":"`+device+`","ownerId":"`+solo+`","orgId":"acme","keys":[{"uuid":"k1","userId":"`+shared+`"},{"uuid":"k2"}],"residents":[{"userId":"`+none+`","name":"N"}]}`)
			lock("2", "globex", "2026-02-01T00:00:00.000Z", `{"lockId":2,"uuid":"`+device+`","orgId":"globex","keys":null,"residents":null}`)
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("migrate to the latest: %v", err)
			}

			want := map[string]store.Standing{
				solo:   {CreatedBy: "acme", OnOrgLock: true},
				shared: {OnOrgLock: true},
				none:   {OnOrgLock: true},
			}
			for u, w := range want {
				got, err := st.UserStanding(ctx, u, "acme")
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("standing of acme over %s (-want +got):\n%s", u, diff)
				}
				if got, _ := st.UserStanding(ctx, u, "globex"); got.OnOrgLock || !got.OnOtherLock || got.CreatedBy == "globex" {
					t.Errorf("standing of globex over %s: %+v", u, got)
				}
			}
			dump, err := st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range []string{"1 | " + solo + " | owner", "1 | " + shared + " | key", "1 | " + none + " | resident", device + " | 1"} {
				if !strings.Contains(dump, line) {
					t.Errorf("read models lack %q:\n%s", line, dump)
				}
			}
			if strings.Contains(dump, device+" | 2") {
				t.Errorf("the second lock took the device uuid:\n%s", dump)
			}
		})
	}
}
