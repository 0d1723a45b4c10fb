package store_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

func putPresence(t *testing.T, st *store.Store, p store.DevicePresence) {
	t.Helper()
	if err := st.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error { return tx.PutPresence(ctx, p) }); err != nil {
		t.Fatalf("put presence of %s: %v", p.Thing, err)
	}
}

func TestPresenceRoundTripAndNodeReset(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			if _, found, err := st.Presence(ctx, "lock-1"); err != nil || found {
				t.Fatalf("never seen: found %v, err %v", found, err)
			}
			a1 := store.DevicePresence{Thing: "lock-1", Online: true, LastSeen: credNow, Node: "node-a", Announced: true, ConnectedAt: credNow, UpdatedAt: credNow}
			a2 := store.DevicePresence{Thing: "lock-2", Online: true, LastSeen: credNow, Node: "node-a", UpdatedAt: credNow}
			b3 := store.DevicePresence{Thing: "lock-3", Online: true, LastSeen: credNow, Node: "node-b", UpdatedAt: credNow}
			a4 := store.DevicePresence{Thing: "lock-4", Online: false, LastSeen: credNow, Node: "node-a", UpdatedAt: credNow}
			for _, p := range []store.DevicePresence{a1, a2, b3, a4} {
				putPresence(t, st, p)
			}
			// Replaced, not added.
			a2.LastSeen, a2.UpdatedAt = credLater, credLater
			putPresence(t, st, a2)
			got, found, err := st.Presence(ctx, "lock-2")
			if err != nil || !found {
				t.Fatalf("lock-2: found %v, err %v", found, err)
			}
			if d := cmp.Diff(a2, got); d != "" {
				t.Fatalf("lock-2 (-want +got):\n%s", d)
			}
			things, err := st.ResetNodePresence(ctx, "node-a", credLatest)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"lock-1", "lock-2"}, things); d != "" {
				t.Fatalf("reset things (-want +got):\n%s", d)
			}
			want := map[string]store.DevicePresence{
				"lock-1": {Thing: "lock-1", Online: false, LastSeen: credNow, Node: "node-a", Announced: true, ConnectedAt: credNow, UpdatedAt: credLatest},
				"lock-2": {Thing: "lock-2", Online: false, LastSeen: credLater, Node: "node-a", UpdatedAt: credLatest},
				"lock-3": b3,
				"lock-4": a4,
			}
			for thing, w := range want {
				got, found, err := st.Presence(ctx, thing)
				if err != nil || !found {
					t.Fatalf("%s: found %v, err %v", thing, found, err)
				}
				if d := cmp.Diff(w, got); d != "" {
					t.Errorf("%s after the reset (-want +got):\n%s", thing, d)
				}
			}
			if _, err := st.ResetNodePresence(ctx, "", credLatest); err == nil {
				t.Error("reset of an empty node: no error")
			}
			err = st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				return tx.PutPresence(ctx, store.DevicePresence{Thing: "", LastSeen: credNow, UpdatedAt: credNow})
			})
			if err == nil {
				t.Error("put presence of an empty thing: no error")
			}
		})
	}
}
