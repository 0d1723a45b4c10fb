package shadow_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

func TestGet(t *testing.T) {
	limits := shadow.DefaultLimits()
	deleted, _, derr := shadow.Delete(build(t, `{"state":{"reported":{"a":1}}}`), "lock-7", "", nil, 300, limits)
	if derr != nil {
		t.Fatal(derr)
	}
	for _, c := range []struct {
		name    string
		doc     shadow.Document
		shadow  string
		request string
		want    string
		code    int
	}{
		{name: "empty request", doc: build(t, `{"state":{"desired":{"a":1},"reported":{"a":1}}}`),
			want: `{"state":{"desired":{"a":1},"reported":{"a":1}},"metadata":{"desired":{"a":{"timestamp":100}},"reported":{"a":{"timestamp":100}}},"version":1,"timestamp":1000}`},
		{name: "clientToken echoed", doc: build(t, `{"state":{"reported":{"a":1}}}`), request: `{"clientToken":"g1"}`,
			want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":100}}},"version":1,"timestamp":1000,"clientToken":"g1"}`},
		{name: "content other than a token is ignored", doc: build(t, `{"state":{"reported":{"a":1}}}`), request: `not json`,
			want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":100}}},"version":1,"timestamp":1000}`},
		{name: "delta in state, not in metadata", doc: build(t, `{"state":{"desired":{"a":{"b":1,"c":2}},"reported":{"a":{"b":1,"c":3}}}}`),
			want: `{"state":{"desired":{"a":{"b":1,"c":2}},"reported":{"a":{"b":1,"c":3}},"delta":{"a":{"c":2}}},
				"metadata":{"desired":{"a":{"b":{"timestamp":100},"c":{"timestamp":100}}},"reported":{"a":{"b":{"timestamp":100},"c":{"timestamp":100}}}},"version":1,"timestamp":1000}`},
		{name: "never created", doc: shadow.Document{}, request: `{"clientToken":"g2"}`,
			want: `{"code":404,"message":"No shadow exists with name: 'lock-7'","timestamp":1000,"clientToken":"g2"}`, code: 404},
		{name: "named shadow never created", doc: shadow.Document{}, shadow: "door",
			want: `{"code":404,"message":"No shadow exists with name: 'lock-7~door'","timestamp":1000}`, code: 404},
		{name: "after delete", doc: deleted,
			want: `{"code":404,"message":"No shadow exists with name: 'lock-7'","timestamp":1000}`, code: 404},
		{name: "bad clientToken", doc: build(t, `{"state":{"reported":{"a":1}}}`), request: `{"clientToken":"` + strings.Repeat("x", 65) + `"}`,
			want: `{"code":400,"message":"Invalid clientToken","timestamp":1000}`, code: 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := shadow.Get(c.doc, "lock-7", c.shadow, []byte(c.request), 1000, limits)
			if c.code != 0 {
				if err == nil || err.Code != c.code {
					t.Fatalf("got %s %v, want code %d", got, err, c.code)
				}
				got = err.Payload()
			} else if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(want(t, c.want), decoded(t, got)); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	limits := shadow.DefaultLimits()
	cur := build(t, `{"state":{"desired":{"a":1}}}`, `{"state":{"reported":{"a":2}}}`, `{"state":{"reported":{"a":1}}}`)
	deleted, payload, err := shadow.Delete(cur, "lock-7", "", []byte(`{"clientToken":"d1"}`), 1000, limits)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if diff := cmp.Diff(want(t, `{"version":3,"timestamp":1000,"clientToken":"d1"}`), decoded(t, payload)); diff != "" {
		t.Errorf("delete/accepted (-want +got):\n%s", diff)
	}
	if _, _, again := shadow.Delete(deleted, "lock-7", "door", nil, 1001, limits); again == nil || again.Code != 404 ||
		again.Message != "No shadow exists with name: 'lock-7~door'" {
		t.Errorf("second delete: %v, want 404", again)
	}

	for _, c := range []struct {
		name    string
		at      int64
		request string
		version int64
		code    int
	}{
		{name: "recreated soon continues the version", at: 1000 + 3600, request: `{"state":{"reported":{"b":1}}}`, version: 4},
		{name: "version check sees the kept version", at: 1000 + 3600, request: `{"state":{"reported":{"b":1}},"version":3}`, version: 4},
		{name: "stale version after delete", at: 1000 + 3600, request: `{"state":{"reported":{"b":1}},"version":2}`, code: 409},
		{name: "exactly 48 hours later still continues", at: 1000 + shadow.DeletedVersionTTL, request: `{"state":{"reported":{"b":1}}}`, version: 4},
		{name: "more than 48 hours later starts again", at: 1001 + shadow.DeletedVersionTTL, request: `{"state":{"reported":{"b":1}}}`, version: 1},
		{name: "more than 48 hours later version 0 matches", at: 1001 + shadow.DeletedVersionTTL, request: `{"state":{"reported":{"b":1}},"version":0}`, version: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, uerr := shadow.Update(deleted, []byte(c.request), c.at, limits)
			if c.code != 0 {
				if uerr == nil || uerr.Code != c.code {
					t.Fatalf("got %v, want code %d", uerr, c.code)
				}
				return
			}
			if uerr != nil {
				t.Fatalf("Update: %v", uerr)
			}
			if res.Document.Version != c.version {
				t.Errorf("version %d, want %d", res.Document.Version, c.version)
			}
			// The old state is gone: the new shadow holds only this update.
			wantGet := `{"state":{"reported":{"b":1}},"metadata":{"reported":{"b":{"timestamp":` + itoa(c.at) + `}}},"version":` + itoa(c.version) + `,"timestamp":5000}`
			if diff := cmp.Diff(want(t, wantGet), get(t, res.Document, 5000)); diff != "" {
				t.Errorf("get (-want +got):\n%s", diff)
			}
			docs := decoded(t, res.Documents).(map[string]any)
			if prev, ok := docs["previous"]; !ok || prev != nil {
				t.Errorf("documents of a re-created shadow: previous %v, want null", prev)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
