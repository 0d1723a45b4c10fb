package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// appendLock appends evs to lock id's stream as the app would (the
// snapshot is the folded state, its org the lock's): the app does not
// serve the device commands yet.
func appendLock(t *testing.T, st *store.Store, id string, evs ...domain.Event) {
	t.Helper()
	err := st.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		snap, found, err := tx.Snapshot(ctx, lock.AggregateType, id)
		if err != nil {
			return err
		}
		var s lock.State
		if found {
			if err := json.Unmarshal(snap.State, &s); err != nil {
				return err
			}
		}
		recs := make([]es.Record, len(evs))
		for i, e := range evs {
			s = lock.Apply(s, e)
			data, err := json.Marshal(e)
			if err != nil {
				return err
			}
			recs[i] = es.Record{AggregateType: lock.AggregateType, AggregateID: id, Version: snap.Version + int64(i) + 1,
				Type: lock.Events.Name(e), Timestamp: s.UpdatedAt, OrgID: s.OrgID, Data: data}
		}
		state, err := json.Marshal(s)
		if err != nil {
			return err
		}
		return tx.Append(ctx, snap.Version, es.Snapshot{AggregateType: lock.AggregateType, AggregateID: id, OrgID: s.OrgID, State: state}, recs)
	})
	if err != nil {
		t.Fatalf("append %d events to lock %s: %v", len(evs), id, err)
	}
}

// lockTables returns the rows of the lock tables, sorted, as DumpTable
// renders them.
func lockTables(t *testing.T, st *store.Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"lock_members", "lock_key_holders", "lock_devices"} {
		rows, err := store.DumpTable(st, table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		out[table] = rows
	}
	return out
}

func member(lockID, userID, role string) string {
	return fmt.Sprintf("lock_id=%s user_id=%s role=%s ", lockID, userID, role)
}

func holds(lockID, keyUUID, userID string) string {
	return fmt.Sprintf("lock_id=%s key_uuid=%s user_id=%s ", lockID, keyUUID, userID)
}

func device(uuid, lockID string) string { return fmt.Sprintf("uuid=%s lock_id=%s ", uuid, lockID) }

// TestLockKeyHoldersProjection: KeyAdded with a userId makes the user a
// key member, KeyRemoved takes the role away only with the user's last
// key on the lock (and never the owner role), LockUuidChanged moves the
// device uuid (not onto a uuid another lock has); a Rebuild gives the same
// read models.
func TestLockKeyHoldersProjection(t *testing.T) {
	const (
		alice = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
		bob   = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
		devX  = "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40"
		devY  = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
		devZ  = "11111111-2222-4333-8444-555555555555"
		ts    = "2026-03-04T05:06:07.000Z"
	)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			if _, err := svc.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}, Route: "register"}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			acme := app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}
			for _, u := range []string{alice, bob} {
				if _, err := svc.CreateUser(ctx, acme, u, app.CreateUserInput{UserID: u, Email: u[:8] + "@example.com"}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := svc.CreateLock(ctx, acme, 1001, app.CreateLockInput{Index: 1, UUID: devX,
				Keys: []lock.Key{{UUID: "k-1", UserID: alice}, {UUID: "k-2"}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.CreateLock(ctx, acme, 1002, app.CreateLockInput{Index: 2, UUID: devZ}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.SetOwner(ctx, acme, 1001, alice); err != nil {
				t.Fatal(err)
			}
			slot := func(n int64) *int64 { return &n }
			steps := []struct {
				name string
				lock string
				evs  []domain.Event
				want map[string][]string
			}{
				{"created with alice's key k-1, alice owner", "", nil, map[string][]string{
					"lock_members":     {member("1001", alice, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-1", alice)},
					"lock_devices":     {device(devZ, "1002"), device(devX, "1001")},
				}},
				{"bob gets k-3, alice k-4, a key without holder k-5", "1001", []domain.Event{
					lock.KeyAdded{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-3", KeyIndexNumber: slot(3), UserID: bob},
					lock.KeyAdded{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-4", UserID: alice},
					lock.KeyAdded{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-5"},
				}, map[string][]string{
					"lock_members":     {member("1001", bob, "key"), member("1001", alice, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-1", alice), holds("1001", "k-3", bob), holds("1001", "k-4", alice)},
					"lock_devices":     {device(devZ, "1002"), device(devX, "1001")},
				}},
				{"k-1 removed: alice still holds k-4", "1001", []domain.Event{
					lock.KeyRemoved{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-1"},
				}, map[string][]string{
					"lock_members":     {member("1001", bob, "key"), member("1001", alice, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-3", bob), holds("1001", "k-4", alice)},
					"lock_devices":     {device(devZ, "1002"), device(devX, "1001")},
				}},
				{"k-4 and k-5 removed: alice's last key goes, she stays owner", "1001", []domain.Event{
					lock.KeyRemoved{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-4"},
					lock.KeyRemoved{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-5"},
				}, map[string][]string{
					"lock_members":     {member("1001", bob, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-3", bob)},
					"lock_devices":     {device(devZ, "1002"), device(devX, "1001")},
				}},
				{"writes and opens change no read model; the device moves to devY", "1001", []domain.Event{
					lock.KeyWriteRequested{LockID: 1001, UUID: devX, Timestamp: ts, KeyUUID: "k-3"},
					lock.LockOpenRequested{LockID: 1001, UUID: devX, Timestamp: ts, RequestID: "r-1"},
					lock.LockUUIDChanged{LockID: 1001, UUID: devX, Timestamp: ts, NewUUID: devY, PreviousUUID: devX},
				}, map[string][]string{
					"lock_members":     {member("1001", bob, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-3", bob)},
					"lock_devices":     {device(devY, "1001"), device(devZ, "1002")},
				}},
				{"1002 moving onto devY leaves devY with 1001", "1002", []domain.Event{
					lock.LockUUIDChanged{LockID: 1002, UUID: devZ, Timestamp: ts, NewUUID: devY, PreviousUUID: devZ},
				}, map[string][]string{
					"lock_members":     {member("1001", bob, "key"), member("1001", alice, "owner")},
					"lock_key_holders": {holds("1001", "k-3", bob)},
					"lock_devices":     {device(devY, "1001")},
				}},
			}
			for _, s := range steps {
				if s.lock != "" {
					appendLock(t, st, s.lock, s.evs...)
				}
				if diff := cmp.Diff(s.want, lockTables(t, st), cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("%s: lock read models (-want +got):\n%s", s.name, diff)
				}
			}
			if id, found, err := lockByDevice(st, devX); err != nil || found {
				t.Errorf("LockByDevice(old uuid) = %q, %v, %v; want not found", id, found, err)
			}
			if id, found, err := lockByDevice(st, devY); err != nil || !found || id != "1001" {
				t.Errorf("LockByDevice(new uuid) = %q, %v, %v; want 1001", id, found, err)
			}

			live := dump(t, st)
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			if diff := cmp.Diff(live, dump(t, st)); diff != "" {
				t.Errorf("read models after rebuild differ from the live ones (-live +rebuilt):\n%s", diff)
			}
		})
	}
}

func lockByDevice(st *store.Store, uuid string) (id string, found bool, err error) {
	err = st.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		id, found, err = tx.LockByDevice(ctx, uuid)
		return err
	})
	return id, found, err
}

// TestMigrationLockKeyHolders: locks stored before migration 0009 get
// their key holders from the snapshots, so that a KeyRemoved after the
// upgrade takes the key role of a holder's last key away.
func TestMigrationLockKeyHolders(t *testing.T) {
	const (
		alice = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
		bob   = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
		dev   = "44444444-4444-4444-8444-444444444444"
	)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := openMigratedUntil(t, b, "0008_redeliveries")
			// Lock 1 as LockCreated left it (its key members projected then);
			// lock 2 with keys null and a malformed key.
			s1 := lock.Apply(lock.State{}, lock.LockCreated{LockID: 1, UUID: dev, Timestamp: "2026-01-01T00:00:00.000Z",
				Keys: []lock.Key{{UUID: "k1", UserID: alice}, {UUID: "k2", UserID: alice}, {UUID: "k3", UserID: bob}, {UUID: "k4"}}})
			state, err := json.Marshal(s1)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO aggregates (aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at) VALUES ('lock', '1', 1, '', $1, $2, $2)`, []any{string(state), s1.CreatedAt}},
				{`INSERT INTO aggregates (aggregate_type, aggregate_id, version, org_id, state, created_at, updated_at) VALUES ('lock', '2', 1, '', $1, $2, $2)`, []any{`{"lockId":2,"uuid":"x","keys":[7,{"uuid":"k9"}],"residents":null}`, s1.CreatedAt}},
				{`INSERT INTO lock_members (lock_id, user_id, role) VALUES ('1', $1, 'key'), ('1', $2, 'key')`, []any{alice, bob}},
			} {
				if err := store.Exec(ctx, st, q.sql, q.args...); err != nil {
					t.Fatalf("%s: %v", q.sql, err)
				}
			}
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("migrate to the latest: %v", err)
			}
			st.Register(lock.AggregateType, store.LockMembersProjection())
			appendLock(t, st, "1", lock.KeyRemoved{LockID: 1, UUID: dev, Timestamp: "2026-01-02T00:00:00.000Z", KeyUUID: "k3"},
				lock.KeyRemoved{LockID: 1, UUID: dev, Timestamp: "2026-01-02T00:00:00.000Z", KeyUUID: "k1"})
			got := lockTables(t, st)
			want := map[string][]string{
				"lock_members":     {member("1", alice, "key")},
				"lock_key_holders": {holds("1", "k2", alice)},
				"lock_devices":     nil,
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("lock read models after the upgrade and two KeyRemoved (-want +got):\n%s", diff)
			}
		})
	}
}
