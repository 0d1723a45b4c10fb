package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestLockActionsProjection: LockActionUpdated events fill lock_actions
// (one row per action, created_at from its first record, expires_at only
// while open, the key's slot kept through the transitions); DueLockActions
// lists the locks with open actions due, earliest first; a new action
// drops the lock's actions finished more than FinishedActionsKept before;
// a Rebuild gives the same rows.
func TestLockActionsProjection(t *testing.T) {
	const (
		devA = "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40"
		devB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
		devC = "11111111-2222-4333-8444-555555555555"
	)
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ts := func(d time.Duration) string { return t0.Add(d).Format(domain.TimeLayout) }
	slot := func(n int64) *int64 { return &n }
	at := t0.Unix()
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, svc := acmeStore(t, b)
			acme := app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "acme"}}
			for i, dev := range []string{devA, devB, devC} {
				if _, err := svc.CreateLock(ctx, acme, int64(1001+i), app.CreateLockInput{Index: int64(i + 1), UUID: dev}); err != nil {
					t.Fatal(err)
				}
			}
			// ev is a transition of action requestID of lock id at t0+d.
			ev := func(id int64, dev, requestID, action, status string, d time.Duration, expires time.Duration) lock.LockActionUpdated {
				e := lock.LockActionUpdated{LockID: id, UUID: dev, Timestamp: ts(d), RequestID: requestID, Action: action, Status: status, At: at}
				if lock.Open(status) {
					e.ExpiresAt = ts(expires)
				}
				return e
			}
			get := func(lockID, requestID string) store.LockAction {
				t.Helper()
				a, found, err := st.LockAction(ctx, lockID, requestID)
				if err != nil || !found {
					t.Fatalf("LockAction(%s, %s) = %+v, %v, %v", lockID, requestID, a, found, err)
				}
				return a
			}
			want := func(step string, got, want store.LockAction) {
				t.Helper()
				if d := cmp.Diff(want, got); d != "" {
					t.Fatalf("%s: action (-want +got):\n%s", step, d)
				}
			}
			due := func(now time.Time, limit int, want ...string) {
				t.Helper()
				got, err := st.DueLockActions(ctx, now, limit)
				if err != nil {
					t.Fatalf("DueLockActions(%v, %d): %v", now, limit, err)
				}
				if len(want) == 0 {
					want = nil
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("DueLockActions(%v, %d) (-want +got):\n%s", now, limit, d)
				}
			}

			// Lock 1001: an open (r-1) and a key added while offline (r-2).
			open1 := ev(1001, devA, "r-1", lock.ActionOpenLock, lock.StatusPending, 0, time.Minute)
			add2 := ev(1001, devA, "r-2", lock.ActionAddKey, lock.StatusQueued, time.Second, 24*time.Hour)
			add2.KeyUUID, add2.KeyIndexNumber = "k-2", slot(3)
			appendLock(t, st, "1001", open1, add2)
			if _, found, err := st.LockAction(ctx, "1001", "r-9"); err != nil || found {
				t.Fatalf("LockAction of an unknown request: %v, %v", found, err)
			}
			if _, found, err := st.LockAction(ctx, "1002", "r-1"); err != nil || found {
				t.Fatalf("LockAction of another lock's request: %v, %v", found, err)
			}
			r1 := store.LockAction{LockID: "1001", RequestID: "r-1", Action: lock.ActionOpenLock, Status: lock.StatusPending, At: at,
				CreatedAt: ts(0), UpdatedAt: ts(0), ExpiresAt: ts(time.Minute)}
			want("r-1 pending", get("1001", "r-1"), r1)
			r2 := store.LockAction{LockID: "1001", RequestID: "r-2", Action: lock.ActionAddKey, Status: lock.StatusQueued, KeyUUID: "k-2", KeyIndex: slot(3),
				At: at, CreatedAt: ts(time.Second), UpdatedAt: ts(time.Second), ExpiresAt: ts(24 * time.Hour)}
			want("r-2 queued", get("1001", "r-2"), r2)

			// Both delivered by gets of their shadows (the transitions carry no
			// key slot), then r-1 fails.
			s := lock.Apply(lock.Apply(lock.State{LockID: 1001, UUID: devA}, open1), add2)
			evs := append(lock.DecideReport(s, "", lock.Report{}, true, ts(5*time.Second)),
				lock.DecideReport(s, lock.KeyPage("k-2"), lock.Report{}, true, ts(5*time.Second))...)
			if len(evs) != 2 {
				t.Fatalf("deliveries: %v", evs)
			}
			appendLock(t, st, "1001", evs...)
			r1.Status, r1.UpdatedAt = lock.StatusDelivered, ts(5*time.Second)
			want("r-1 delivered", get("1001", "r-1"), r1)
			r2.Status, r2.UpdatedAt = lock.StatusDelivered, ts(5*time.Second)
			want("r-2 delivered", get("1001", "r-2"), r2)
			for _, e := range evs {
				s = lock.Apply(s, e)
			}
			evs = lock.DecideReport(s, "", lock.Report{Open: map[string]lock.Result{"r-1": {At: at, Result: lock.StatusFailed, Error: "jammed"}}}, false, ts(20*time.Second))
			appendLock(t, st, "1001", evs...)
			r1.Status, r1.Error, r1.UpdatedAt, r1.ExpiresAt = lock.StatusFailed, "jammed", ts(20*time.Second), ""
			want("r-1 failed", get("1001", "r-1"), r1)

			// Lock 1002: r-1 due at +30s. Lock 1003: r-1 due at +90s and
			// r-2 at +10s, so 1003 is due first.
			appendLock(t, st, "1002", ev(1002, devB, "r-1", lock.ActionOpenLock, lock.StatusPending, 0, 30*time.Second))
			appendLock(t, st, "1003", ev(1003, devC, "r-1", lock.ActionWriteKey, lock.StatusQueued, 0, 90*time.Second),
				ev(1003, devC, "r-2", lock.ActionOpenLock, lock.StatusPending, 0, 10*time.Second))
			due(t0.Add(10*time.Second-time.Millisecond), 10)
			due(t0.Add(10*time.Second), 10, "1003")
			due(t0.Add(30*time.Second), 10, "1003", "1002")
			due(t0.Add(2*time.Minute), 10, "1003", "1002")
			due(t0.Add(2*time.Minute), 1, "1003")
			due(t0.Add(2*time.Minute), 0)
			due(t0.Add(2*time.Minute), -1)
			due(t0.Add(48*time.Hour), 10, "1003", "1002", "1001") // 1001's r-2 too; its failed r-1 never
			// 1003's r-2 expires: 1003 is now due at +90s, after 1002.
			appendLock(t, st, "1003", ev(1003, devC, "r-2", lock.ActionOpenLock, lock.StatusExpired, 10*time.Second, 0))
			due(t0.Add(2*time.Minute), 10, "1002", "1003")
			due(t0.Add(time.Minute), 10, "1002")
			appendLock(t, st, "1002", ev(1002, devB, "r-1", lock.ActionOpenLock, lock.StatusSucceeded, 31*time.Second, 0))
			due(t0.Add(2*time.Minute), 10, "1003")

			// The requestId of a finished action may be used again: a new row.
			reopen := ev(1002, devB, "r-1", lock.ActionOpenLock, lock.StatusQueued, time.Hour, time.Hour+time.Minute)
			appendLock(t, st, "1002", reopen)
			want("1002 r-1 again", get("1002", "r-1"), store.LockAction{LockID: "1002", RequestID: "r-1", Action: lock.ActionOpenLock,
				Status: lock.StatusQueued, At: at, CreatedAt: ts(time.Hour), UpdatedAt: ts(time.Hour), ExpiresAt: ts(time.Hour + time.Minute)})
			appendLock(t, st, "1002", ev(1002, devB, "r-1", lock.ActionOpenLock, lock.StatusExpired, time.Hour+time.Minute, 0))

			// Retention: a new action exactly FinishedActionsKept after r-1
			// finished keeps it; one a millisecond later drops it, and
			// neither the open r-2 nor another lock's finished action.
			keep := store.FinishedActionsKept
			appendLock(t, st, "1001", ev(1001, devA, "r-3", lock.ActionOpenLock, lock.StatusPending, 20*time.Second+keep, 20*time.Second+keep+time.Minute))
			want("r-1 kept", get("1001", "r-1"), r1)
			appendLock(t, st, "1001", ev(1001, devA, "r-3", lock.ActionOpenLock, lock.StatusSucceeded, 20*time.Second+keep+time.Millisecond, 0))
			if _, found, err := st.LockAction(ctx, "1001", "r-1"); err != nil || !found {
				t.Fatalf("a transition (not a new action) dropped r-1: %v, %v", found, err)
			}
			appendLock(t, st, "1001", ev(1001, devA, "r-4", lock.ActionOpenLock, lock.StatusPending, 20*time.Second+keep+time.Millisecond, 20*time.Second+keep+time.Minute))
			if a, found, err := st.LockAction(ctx, "1001", "r-1"); err != nil || found {
				t.Fatalf("r-1, finished more than %v before the new action, is still there: %+v, %v", keep, a, err)
			}
			want("r-2 open, kept", get("1001", "r-2"), r2)
			get("1001", "r-3") // finished a moment ago
			get("1002", "r-1") // another lock's

			rows, err := store.DumpTable(st, "lock_actions")
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 6 { // 1001: r-2, r-3, r-4; 1002: r-1; 1003: r-1, r-2
				t.Errorf("lock_actions has %d rows, want 6:\n%v", len(rows), rows)
			}
			live := dump(t, st)
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			if d := cmp.Diff(live, dump(t, st)); d != "" {
				t.Errorf("read models after rebuild differ from the live ones (-live +rebuilt):\n%s", d)
			}
			rebuilt, err := store.DumpTable(st, "lock_actions")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(rows, rebuilt); d != "" {
				t.Errorf("lock_actions after rebuild (-live +rebuilt):\n%s", d)
			}
			want("r-2 after rebuild", get("1001", "r-2"), r2)
		})
	}
}
