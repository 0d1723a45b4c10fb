package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestReadCacheMatchesDatabase checks that what the SQLite store serves
// from memory after a run of commands equals what a second store, opened
// cold on the same file, reads from disk; and that a rotated key is refused
// as soon as the rotation has answered.
func TestReadCacheMatchesDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spkey.db")
	hot, err := store.OpenSQLite(ctx, path, store.SQLiteOptions{}, testenv.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer hot.Close()
	if err := hot.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc := app.New(hot, app.Options{}, testenv.Discard())
	admin := app.Principal{Admin: true}
	if _, err := svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	k1, err := svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, false)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.AuthenticateKey(ctx, k1.APIKey) // warms the key cache
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateLock(ctx, app.Call{P: p}, 1, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 5; i++ {
		email := fmt.Sprintf("c%d@example.com", i)
		u, err := svc.FindOrCreate(ctx, p, false, app.FindInput{Email: email})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.UserID)
		if _, err := svc.Residents(ctx, p, 1); err != nil { // warm snapshot and user caches between writes
			t.Fatal(err)
		}
		if _, err := svc.AddResident(ctx, app.Call{P: p}, 1, app.ResidentInput{Name: "C", Email: &email}); err != nil {
			t.Fatal(err)
		}
	}
	phone := "+48123456789"
	if _, err := svc.UpdatePhoneNumber(ctx, app.Call{P: p}, ids[0], &phone); err != nil {
		t.Fatal(err)
	}
	first := "c1@example.com"
	if _, err := svc.RemoveResident(ctx, app.Call{P: p}, 1, app.ResidentInput{Email: &first}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: "acme"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateKey(ctx, k1.APIKey); err == nil {
		t.Fatal("the rotated key still authenticates")
	}

	cold, err := store.OpenSQLite(ctx, path, store.SQLiteOptions{}, testenv.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	for _, k := range [][2]string{{lock.AggregateType, "1"}, {tenant.AggregateType, "acme"}, {user.AggregateType, ids[0]}} {
		h, hok, err := hot.Snapshot(ctx, k[0], k[1])
		if err != nil {
			t.Fatal(err)
		}
		c, cok, err := cold.Snapshot(ctx, k[0], k[1])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(struct {
			S  any
			OK bool
		}{c, cok}, struct {
			S  any
			OK bool
		}{h, hok}); diff != "" {
			t.Errorf("snapshot %v: cached differs from disk (-disk +cached):\n%s", k, diff)
		}
	}
	for _, by := range []struct {
		by store.UserBy
		v  string
	}{{store.ByPhone, phone}, {store.ByEmail, "c3@example.com"}, {store.ByID, ids[2]}} {
		h, hok, err := hot.User(ctx, by.by, by.v)
		if err != nil {
			t.Fatal(err)
		}
		c, cok, err := cold.User(ctx, by.by, by.v)
		if err != nil {
			t.Fatal(err)
		}
		if hok != cok || h != c {
			t.Errorf("user by %s %s: cached %v %+v, disk %v %+v", by.by, by.v, hok, h, cok, c)
		}
	}
	hu, err := hot.Users(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	cu, err := cold.Users(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cu, hu); diff != "" {
		t.Errorf("users: cached differs from disk (-disk +cached):\n%s", diff)
	}
}

// TestStaleCacheRecovers writes one lock from a second store on the same
// SQLite file (another process, such as the CLI) behind the first store's
// cache: the first store's next command meets a version conflict, forgets
// what it cached, retries on fresh data and keeps both writes.
func TestStaleCacheRecovers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spkey.db")
	open := func() (*store.Store, *app.Service) {
		st, err := store.OpenSQLite(ctx, path, store.SQLiteOptions{}, testenv.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return st, app.New(st, app.Options{}, testenv.Discard())
	}
	_, a := open()
	if _, err := a.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
	if _, err := a.CreateLock(ctx, app.Call{P: p}, 3, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"x@example.com", "y@example.com"} {
		if _, err := a.FindOrCreate(ctx, p, false, app.FindInput{Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	_, b := open()
	x, y := "x@example.com", "y@example.com"
	if _, err := b.AddResident(ctx, app.Call{P: p}, 3, app.ResidentInput{Name: "X", Email: &x}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddResident(ctx, app.Call{P: p}, 3, app.ResidentInput{Name: "Y", Email: &y}); err != nil {
		t.Fatalf("write behind a stale cache: %v", err)
	}
	// Read through a cold store: b's own cache is as stale now as a's was,
	// which is why one SQLite file must be served by one process.
	_, cold := open()
	v, err := cold.Lock(ctx, p, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.State.Residents) != 2 || v.Version != 4 {
		t.Fatalf("want both residents at version 4, got %+v at %d", v.State.Residents, v.Version)
	}
}
