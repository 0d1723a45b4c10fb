package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// debugLogged is one message written to a device's shadow message log.
type debugLogged struct {
	lockID    int64
	direction string // store.ShadowCommand or store.ShadowStatus
	payload   string
}

// debugLog writes msgs, in order, to the shadow message logs through the
// store, as the device gateway does; the i-th is logged at wireNow plus i
// seconds. It returns the timestamps it gave.
func debugLog(t testing.TB, srv *testenv.Server, msgs ...debugLogged) []string {
	t.Helper()
	stamps := make([]string, len(msgs))
	err := srv.Store.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		for i, m := range msgs {
			stamps[i] = wireNow.Add(time.Duration(i) * time.Second).Format(domain.TimeLayout)
			if err := tx.LogShadowMessage(ctx, lock.ThingName(m.lockID), m.direction, []byte(m.payload), stamps[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("log shadow messages: %v", err)
	}
	return stamps
}

// TestLockDebugMessages: GET /locks/{id}/debug/messages shows the lock
// device's logged shadow messages newest first, split by direction, JSON
// payloads decoded and others as text, up to limit per direction (default
// 50, at most 200), with total counting both directions; it writes
// nothing, refuses a limit that is not a positive integer like the page of
// GET /locks/{id}/events, and answers 404 for an unknown lock.
func TestLockDebugMessages(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			srv := f.srv
			super := srv.Tenant(t, "root", true)
			path := "/locks/1/debug/messages"

			// An empty log: empty lists, not null.
			got := wireOK(t, srv, wireReq{Method: "GET", Path: path, Key: f.key}, http.StatusOK)
			empty := map[string]any{"messages": map[string]any{"command": []any{}, "status": []any{}}, "total": float64(0)}
			if diff := cmp.Diff(empty, any(got)); diff != "" {
				t.Fatalf("empty log (-want +got):\n%s", diff)
			}

			stamps := debugLog(t, srv,
				debugLogged{1, store.ShadowStatus, `{"state":{"reported":{"lock":"closed"}}}`},
				debugLogged{1, store.ShadowCommand, `{"state":{"desired":{"lock":"open"}}}`},
				debugLogged{2, store.ShadowStatus, `{"state":{"reported":{"lock":"open"}}}`}, // another lock's
				debugLogged{1, store.ShadowStatus, "not JSON {"},
				debugLogged{1, store.ShadowCommand, " [1, 2] "},
				debugLogged{1, store.ShadowStatus, "\xff\xfe"},
			)
			ids := debugIDs(t, srv, stamps)
			msg := func(i int, payload any) any {
				return map[string]any{"id": ids[i], "payload": payload, "timestamp": stamps[i]}
			}
			answer := func(command, status []any) any {
				return map[string]any{"messages": map[string]any{"command": command, "status": status}, "total": float64(5)}
			}
			commands := []any{msg(4, []any{float64(1), float64(2)}), msg(1, wireJSON(t, `{"state":{"desired":{"lock":"open"}}}`))}
			statuses := []any{msg(5, "\uFFFD"), msg(3, "not JSON {"), msg(0, wireJSON(t, `{"state":{"reported":{"lock":"closed"}}}`))}
			all := answer(commands, statuses)
			newest := answer(commands[:1], statuses[:1])

			before := wireSnapshot(t, srv)
			cases := []struct {
				name string
				req  wireReq
				want any
			}{
				{"default limit, the lock's tenant key", wireReq{Method: "GET", Path: path, Key: f.key}, all},
				{"the owner's JWT", wireReq{Method: "GET", Path: path, JWT: f.jwt}, all},
				{"a super key", wireReq{Method: "GET", Path: path, Key: super}, all},
				{"limit=1", wireReq{Method: "GET", Path: path + "?limit=1", Key: f.key}, newest},
				{"limit=2", wireReq{Method: "GET", Path: path + "?limit=2", Key: f.key}, answer(commands, statuses[:2])},
				{"limit above the cap", wireReq{Method: "GET", Path: path + "?limit=500", Key: f.key}, all},
				{"limit beyond int64", wireReq{Method: "GET", Path: path + "?limit=99999999999999999999", Key: f.key}, all},
				{"empty limit", wireReq{Method: "GET", Path: path + "?limit=", Key: f.key}, all},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					got := wireOK(t, srv, c.req, http.StatusOK)
					if diff := cmp.Diff(c.want, any(got)); diff != "" {
						t.Errorf("%s (-want +got):\n%s", c.req.Path, diff)
					}
				})
			}
			wireUnchanged(t, srv, before)

			for _, l := range []string{"0", "-1", "x", "1.5", "-99999999999999999999"} {
				wireRefused(t, srv, wireReq{Method: "GET", Path: path + "?limit=" + l, Key: f.key}, http.StatusBadRequest,
					wireErr(wireQuery, 400, "limit must be a positive integer", [2]string{"limit", "limit must be a positive integer"}))
			}
			wireRefused(t, srv, wireReq{Method: "GET", Path: "/locks/2/debug/messages", Key: f.key}, http.StatusNotFound,
				wireErr(wireQuery, 404, "Lock 2 not found"))
		})
	}
}

// TestLockDebugMessagesLimit: the default shows the newest 50 of each
// direction, and a limit above the log's 200 reads all it keeps.
func TestLockDebugMessagesLimit(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			f := newSeedFixture(t, b)
			var msgs []debugLogged
			for i := range 210 {
				msgs = append(msgs, debugLogged{1, store.ShadowStatus, `{"n":` + strconv.Itoa(i) + `}`})
			}
			msgs = append(msgs, debugLogged{1, store.ShadowCommand, `{"n":"command"}`})
			debugLog(t, f.srv, msgs...)
			for _, c := range []struct {
				query          string
				status, newest int
			}{
				{"", 50, 209},
				{"?limit=50", 50, 209},
				{"?limit=200", 200, 209},
				{"?limit=201", 200, 209},
			} {
				got := wireOK(t, f.srv, wireReq{Method: "GET", Path: "/locks/1/debug/messages" + c.query, Key: f.key}, http.StatusOK)
				ms, _ := got["messages"].(map[string]any)
				status, _ := ms["status"].([]any)
				command, _ := ms["command"].([]any)
				if len(status) != c.status || len(command) != 1 || got["total"] != float64(201) {
					t.Errorf("%s: %d statuses, %d commands, total %v; want %d, 1, 201", c.query, len(status), len(command), got["total"], c.status)
					continue
				}
				first, _ := status[0].(map[string]any)
				last, _ := status[len(status)-1].(map[string]any)
				want := []any{map[string]any{"n": float64(c.newest)}, map[string]any{"n": float64(c.newest - c.status + 1)}}
				if diff := cmp.Diff(want, []any{first["payload"], last["payload"]}); diff != "" {
					t.Errorf("%s: newest and oldest payloads (-want +got):\n%s", c.query, diff)
				}
			}
		})
	}
}

// debugIDs returns the store's id of each message of lock 1 logged at
// stamps[i] (nil for the other lock's), read from the store directly.
func debugIDs(t *testing.T, srv *testenv.Server, stamps []string) []any {
	t.Helper()
	command, status, _, err := srv.Store.ShadowMessages(context.Background(), lock.ThingName(1), store.ShadowMessagesKept)
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	byStamp := map[string]int64{}
	for _, m := range append(command, status...) {
		byStamp[m.CreatedAt] = m.ID
	}
	ids := make([]any, len(stamps))
	for i, s := range stamps {
		if id, ok := byStamp[s]; ok {
			ids[i] = float64(id)
		}
	}
	return ids
}
