package devices_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// storedShadow reads the committed shadow thing/name; found is false when
// it has no row.
func storedShadow(t *testing.T, st *store.Store, thing, name string) (shadow.Document, bool) {
	t.Helper()
	raw, found, err := st.Shadow(context.Background(), thing, name)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return shadow.Document{}, false
	}
	doc, err := shadow.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return doc, true
}

// logged returns the payloads of thing's logged messages, newest first.
func logged(t *testing.T, st *store.Store, thing string) (command, status []string) {
	t.Helper()
	c, s, _, err := st.ShadowMessages(context.Background(), thing, store.ShadowMessagesKept)
	if err != nil {
		t.Fatal(err)
	}
	command, status = []string{}, []string{}
	for _, m := range c {
		command = append(command, m.Payload)
	}
	for _, m := range s {
		status = append(status, m.Payload)
	}
	return command, status
}

// TestDeviceShadowLifecycle: a device reports, the server sets desired, the
// device gets the delta, catches up, meets a version conflict and a
// malformed request, and deletes its shadow; every answer is AWS's payload
// and the store holds what was accepted, only that.
func TestDeviceShadowLifecycle(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			d := e.dial(t, "thing-1")

			report1 := `{"state":{"reported":{"lock":"closed"}},"clientToken":"t1"}`
			got := d.request(t, "update", report1, 2)
			want := []msg{
				{d.topic("update/accepted"), `{"state":{"reported":{"lock":"closed"}},"metadata":{"reported":{"lock":{"timestamp":` + T + `}}},"version":1,"timestamp":` + T + `,"clientToken":"t1"}`},
				{d.topic("update/documents"), `{"previous":null,"current":{"state":{"reported":{"lock":"closed"}},"metadata":{"reported":{"lock":{"timestamp":` + T + `}}},"version":1},"timestamp":` + T + `,"clientToken":"t1"}`},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("first report answers (-want +got):\n%s", diff)
			}
			report2 := `{"state":{"reported":{"battery":80}}}`
			got = d.request(t, "update", report2, 2)
			if diff := cmp.Diff(msg{d.topic("update/accepted"), `{"state":{"reported":{"battery":80}},"metadata":{"reported":{"battery":{"timestamp":` + T + `}}},"version":2,"timestamp":` + T + `}`}, got[0]); diff != "" {
				t.Errorf("second report accepted (-want +got):\n%s", diff)
			}
			doc, found := storedShadow(t, e.st, "thing-1", "")
			if !found || doc.Version != 2 || !cmp.Equal(doc.Reported, map[string]any{"lock": "closed", "battery": json.Number("80")}) {
				t.Errorf("stored shadow: found %v, version %d, reported %v; want version 2 with lock and battery", found, doc.Version, doc.Reported)
			}
			_, status := logged(t, e.st, "thing-1")
			if diff := cmp.Diff([]string{report2, report1}, status); diff != "" {
				t.Errorf("logged statuses (-want +got):\n%s", diff)
			}

			// The server sets desired in a transaction of its own; the
			// delta is published once it has committed.
			var after func()
			err := e.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				var err error
				after, err = e.gw.UpdateDesired(ctx, tx, "thing-1", "", json.RawMessage(`{"lock":"open"}`), "cmd-1", testNow.Unix())
				return err
			})
			if err != nil {
				t.Fatalf("UpdateDesired: %v", err)
			}
			// Nothing is published before after(): the answer to a get
			// comes first, and shows the delta already stored.
			got = d.request(t, "get", `{"clientToken":"g1"}`, 1)
			wantGet := msg{d.topic("get/accepted"), `{"state":{"delta":{"lock":"open"},"desired":{"lock":"open"},"reported":{"battery":80,"lock":"closed"}},` +
				`"metadata":{"desired":{"lock":{"timestamp":` + T + `}},"reported":{"battery":{"timestamp":` + T + `},"lock":{"timestamp":` + T + `}}},"version":3,"timestamp":` + T + `,"clientToken":"g1"}`}
			if diff := cmp.Diff(wantGet, got[0]); diff != "" {
				t.Errorf("get with a delta (-want +got):\n%s", diff)
			}
			after()
			if diff := cmp.Diff(msg{d.topic("update/delta"), `{"state":{"lock":"open"},"metadata":{"lock":{"timestamp":` + T + `}},"version":3,"timestamp":` + T + `,"clientToken":"cmd-1"}`}, d.next(t)); diff != "" {
				t.Errorf("delta (-want +got):\n%s", diff)
			}
			if m := d.next(t); m.Topic != d.topic("update/documents") {
				t.Errorf("after the delta: %v, want update/documents", m)
			}
			command, _ := logged(t, e.st, "thing-1")
			if diff := cmp.Diff([]string{`{"state":{"desired":{"lock":"open"}},"clientToken":"cmd-1"}`}, command); diff != "" {
				t.Errorf("logged commands (-want +got):\n%s", diff)
			}

			// Catching up clears the delta: no /delta, and get shows none.
			got = d.request(t, "update", `{"state":{"reported":{"lock":"open"}}}`, 2)
			if diff := cmp.Diff([]string{d.topic("update/accepted"), d.topic("update/documents")}, []string{got[0].Topic, got[1].Topic}); diff != "" {
				t.Errorf("catching up answers (-want +got):\n%s", diff)
			}
			got = d.request(t, "get", ``, 1)
			var read struct {
				State   map[string]json.RawMessage `json:"state"`
				Version int64                      `json:"version"`
			}
			if err := json.Unmarshal([]byte(got[0].Payload), &read); err != nil || got[0].Topic != d.topic("get/accepted") {
				t.Fatalf("get after catching up: %v (%v)", got[0], err)
			}
			if _, ok := read.State["delta"]; ok || read.Version != 4 {
				t.Errorf("get after catching up: %s, want version 4 without a delta", got[0].Payload)
			}

			// Refused requests are answered on /rejected and store nothing.
			for _, c := range []struct{ name, payload, want string }{
				{"version conflict", `{"state":{"reported":{"lock":"jammed"}},"version":1,"clientToken":"v1"}`,
					`{"code":409,"message":"Version conflict","timestamp":` + T + `,"clientToken":"v1"}`},
				{"malformed JSON", `{"state":`, `{"code":400,"message":"Invalid JSON","timestamp":` + T + `}`},
			} {
				_, before := logged(t, e.st, "thing-1")
				got = d.request(t, "update", c.payload, 1)
				if diff := cmp.Diff(msg{d.topic("update/rejected"), c.want}, got[0]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", c.name, diff)
				}
				if doc, _ := storedShadow(t, e.st, "thing-1", ""); doc.Version != 4 {
					t.Errorf("%s: stored version %d, want 4", c.name, doc.Version)
				}
				if _, after := logged(t, e.st, "thing-1"); len(after) != len(before) {
					t.Errorf("%s: %d statuses logged, want %d", c.name, len(after), len(before))
				}
			}

			got = d.request(t, "delete", `{"clientToken":"d1"}`, 1)
			if diff := cmp.Diff(msg{d.topic("delete/accepted"), `{"version":4,"timestamp":` + T + `,"clientToken":"d1"}`}, got[0]); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
			got = d.request(t, "get", ``, 1)
			if diff := cmp.Diff(msg{d.topic("get/rejected"), `{"code":404,"message":"No shadow exists with name: 'thing-1'","timestamp":` + T + `}`}, got[0]); diff != "" {
				t.Errorf("get after delete (-want +got):\n%s", diff)
			}
			if doc, found := storedShadow(t, e.st, "thing-1", ""); !found || doc.Exists || doc.Version != 4 {
				t.Errorf("stored after delete: found %v, %+v; want a deleted document at version 4", found, doc)
			}
		})
	}
}
