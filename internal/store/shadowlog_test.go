package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// logMessages logs payloads prefix0..prefix(n-1) for thing in direction,
// per transactions of at most per messages (so pruning runs both inside a
// transaction and across them).
func logMessages(t *testing.T, st *store.Store, thing, direction, prefix string, n, per int) {
	t.Helper()
	for from := 0; from < n; from += per {
		err := st.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
			for i := from; i < min(from+per, n); i++ {
				if err := tx.LogShadowMessage(ctx, thing, direction, []byte(prefix+strconv.Itoa(i)), "t"+strconv.Itoa(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// payloads renders messages as their payloads, checking that their ids
// decrease (newest first) and their times match their payloads.
func payloads(t *testing.T, ms []store.ShadowMessage) []string {
	t.Helper()
	out := []string{}
	for i, m := range ms {
		if i > 0 && m.ID >= ms[i-1].ID {
			t.Errorf("message %d has id %d after id %d: not newest first", i, m.ID, ms[i-1].ID)
		}
		if want := "t" + strings.TrimLeft(m.Payload, "cso"); m.CreatedAt != want {
			t.Errorf("message %q logged at %q, want %q", m.Payload, m.CreatedAt, want)
		}
		out = append(out, m.Payload)
	}
	return out
}

// series is prefix(hi-1) down to prefix(lo).
func series(prefix string, hi, lo int) []string {
	out := []string{}
	for i := hi - 1; i >= lo; i-- {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

// TestShadowMessageLog: the log keeps the newest 200 messages per thing
// and direction, returns them newest first up to a limit taken into
// 1..200, counts what it holds, and leaves other things' logs alone.
func TestShadowMessageLog(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			st := testenv.OpenStore(t, b)
			logMessages(t, st, "lock-1", store.ShadowCommand, "c", 230, 60)
			logMessages(t, st, "lock-1", store.ShadowStatus, "s", 3, 1)
			logMessages(t, st, "lock-2", store.ShadowCommand, "o", 2, 2)
			logMessages(t, st, "lock-1", store.ShadowCommand, "c", 240, 1) // c0..c239 again, one at a time
			cases := []struct {
				name            string
				thing           string
				limit           int
				command, status []string
				total           int
			}{
				{name: "all kept", thing: "lock-1", limit: 200, command: series("c", 240, 40), status: series("s", 3, 0), total: 203},
				{name: "default page", thing: "lock-1", limit: 50, command: series("c", 240, 190), status: series("s", 3, 0), total: 203},
				{name: "limit above the cap", thing: "lock-1", limit: 1000, command: series("c", 240, 40), status: series("s", 3, 0), total: 203},
				{name: "limit 0", thing: "lock-1", limit: 0, command: series("c", 240, 239), status: series("s", 3, 2), total: 203},
				{name: "negative limit", thing: "lock-1", limit: -3, command: series("c", 240, 239), status: series("s", 3, 2), total: 203},
				{name: "other thing", thing: "lock-2", limit: 50, command: series("o", 2, 0), status: []string{}, total: 2},
				{name: "unknown thing", thing: "lock-3", limit: 50, command: []string{}, status: []string{}, total: 0},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					cmds, stats, total, err := st.ShadowMessages(context.Background(), c.thing, c.limit)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(c.command, payloads(t, cmds)); diff != "" {
						t.Errorf("commands (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(c.status, payloads(t, stats)); diff != "" {
						t.Errorf("statuses (-want +got):\n%s", diff)
					}
					if total != c.total {
						t.Errorf("total %d, want %d", total, c.total)
					}
				})
			}
			rows, err := store.DumpTable(st, "shadow_messages")
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 205 {
				t.Errorf("%d rows stored, want 200 + 3 + 2", len(rows))
			}
		})
	}
}

// TestShadowMessagePayloads: payloads are stored as text, bounded: a long
// one is cut at a character boundary and marked, bytes that are not UTF-8
// and NUL become U+FFFD (PostgreSQL's text would refuse them), and an
// unknown direction is refused.
func TestShadowMessagePayloads(t *testing.T) {
	long := strings.Repeat("é", 20000) // 40000 bytes
	cases := []struct {
		name    string
		payload string
		want    string
	}{
		{name: "json", payload: `{"state":{"desired":{"lock":"open"}}}`, want: `{"state":{"desired":{"lock":"open"}}}`},
		{name: "empty", payload: "", want: ""},
		{name: "at the bound", payload: strings.Repeat("a", store.MaxShadowMessageBytes), want: strings.Repeat("a", store.MaxShadowMessageBytes)},
		{name: "binary", payload: "a\x00b\xffc", want: "a\uFFFDb\uFFFDc"},
		{name: "too long", payload: long, want: long[:store.MaxShadowMessageBytes-len(store.ShadowMessageTruncated+"40000 bytes]")-1] + store.ShadowMessageTruncated + "40000 bytes]"},
	}
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			for _, c := range cases {
				err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					return tx.LogShadowMessage(ctx, "lock-"+c.name, store.ShadowStatus, []byte(c.payload), shadowNow)
				})
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				_, stats, _, err := st.ShadowMessages(ctx, "lock-"+c.name, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(stats) != 1 {
					t.Fatalf("%s: %d messages, want 1", c.name, len(stats))
				}
				got := stats[0].Payload
				if got != c.want {
					t.Errorf("%s: stored %d bytes ending %q, want %d bytes ending %q", c.name, len(got), got[max(0, len(got)-40):], len(c.want), c.want[max(0, len(c.want)-40):])
				}
				if len(got) > store.MaxShadowMessageBytes || !utf8.ValidString(got) {
					t.Errorf("%s: stored %d bytes, valid UTF-8 %v", c.name, len(got), utf8.ValidString(got))
				}
			}
			err := st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				return tx.LogShadowMessage(ctx, "lock-1", "event", []byte("{}"), shadowNow)
			})
			if err == nil {
				t.Error("direction \"event\" accepted")
			}
		})
	}
}
