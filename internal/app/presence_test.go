package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const presenceWait = 10 * time.Second

// presenceTypes is the presence events on lock id's stream, in order.
func presenceTypes(t *testing.T, st *store.Store, id string) []string {
	t.Helper()
	recs, err := st.Stream(context.Background(), lock.AggregateType, id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range recs {
		if r.Type == lock.TypeLockDeviceConnected || r.Type == lock.TypeLockDeviceDisconnected {
			out = append(out, r.Type)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(presenceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, presenceWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rowOf(t *testing.T, st *store.Store, thing string) store.DevicePresence {
	t.Helper()
	p, _, err := st.Presence(context.Background(), thing)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPresenceRecorder: the window holds back a flapping device's
// connects and announces the final state once it has passed; a node's
// late disconnect does not take a thing another node holds offline; a
// node that starts again sets its rows offline and announces it.
func TestPresenceRecorder(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			if _, err := svc.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			p := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
			if _, err := svc.CreateLock(ctx, app.Call{P: p}, 9, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
				t.Fatal(err)
			}
			const window = 700 * time.Millisecond
			a := app.NewPresenceRecorder(svc, "node-a", window, testenv.Discard())
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for i := 0; i < 5; i++ {
				a.Seen("lock-9", true, time.Now())
				waitFor(t, "online", func() bool { return rowOf(t, st, "lock-9").Online })
				a.Seen("lock-9", false, time.Now())
				waitFor(t, "offline", func() bool { return !rowOf(t, st, "lock-9").Online })
			}
			a.Seen("lock-9", true, time.Now())
			waitFor(t, "online", func() bool { return rowOf(t, st, "lock-9").Online })
			if time.Since(start) < window {
				if d := cmp.Diff([]string{lock.TypeLockDeviceConnected, lock.TypeLockDeviceDisconnected}, presenceTypes(t, st, "9")); d != "" {
					t.Errorf("inside the window (-want +got):\n%s", d)
				}
			}
			// Once the window has passed, the device's last connect is told.
			want := []string{lock.TypeLockDeviceConnected, lock.TypeLockDeviceDisconnected, lock.TypeLockDeviceConnected}
			waitFor(t, "the held-back connect announced", func() bool { return len(presenceTypes(t, st, "9")) == 3 })
			if d := cmp.Diff(want, presenceTypes(t, st, "9")); d != "" {
				t.Fatalf("after the window (-want +got):\n%s", d)
			}

			// Node b takes the thing; node a's old connection ending late
			// does not make it offline.
			bNode := app.NewPresenceRecorder(svc, "node-b", window, testenv.Discard())
			if err := bNode.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer bNode.Close()
			bNode.Seen("lock-9", true, time.Now())
			waitFor(t, "held by node b", func() bool { return rowOf(t, st, "lock-9").Node == "node-b" })
			a.Seen("lock-9", false, time.Now())
			a.Close()
			if r := rowOf(t, st, "lock-9"); !r.Online || r.Node != "node-b" {
				t.Fatalf("after node a's late disconnect: %+v, want online on node-b", r)
			}
			if d := cmp.Diff(want, presenceTypes(t, st, "9")); d != "" {
				t.Fatalf("a takeover wrote events (-want +got):\n%s", d)
			}

			// Node b dies without a word and starts again: its rows go
			// offline, lastSeen kept, and partners are told.
			seen := rowOf(t, st, "lock-9").LastSeen
			again := app.NewPresenceRecorder(svc, "node-b", window, testenv.Discard())
			if err := again.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if r := rowOf(t, st, "lock-9"); r.Online || r.LastSeen != seen {
				t.Fatalf("after node b's restart: %+v, want offline with lastSeen %s", r, seen)
			}
			want = append(want, lock.TypeLockDeviceDisconnected)
			waitFor(t, "the reset announced", func() bool { return len(presenceTypes(t, st, "9")) == 4 })
			if d := cmp.Diff(want, presenceTypes(t, st, "9")); d != "" {
				t.Fatalf("after the reset (-want +got):\n%s", d)
			}
			v, err := svc.Lock(ctx, p, 9)
			if err != nil {
				t.Fatal(err)
			}
			got, err := svc.LockPresence(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(app.PresenceView{Online: false, LastSeen: seen}, got); d != "" {
				t.Errorf("LockPresence (-want +got):\n%s", d)
			}
		})
	}
}
