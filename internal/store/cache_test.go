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
