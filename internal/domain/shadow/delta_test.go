package shadow_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// object decodes a JSON object the way stored documents hold it.
func object(t *testing.T, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestDelta(t *testing.T) {
	for _, c := range []struct {
		name, desired, reported, want string
	}{
		{"no desired", "", `{"a":1}`, ""},
		{"equal", `{"a":1,"b":"x"}`, `{"a":1,"b":"x","c":true}`, ""},
		{"only in desired", `{"a":1,"b":2}`, `{"a":1}`, `{"b":2}`},
		{"only in reported is left out", `{"a":1}`, `{"a":1,"z":9}`, ""},
		{"no reported", `{"a":{"b":1}}`, "", `{"a":{"b":1}}`},
		{"different value", `{"color":"RED","state":"STOP"}`, `{"color":"GREEN","engine":"ON"}`, `{"color":"RED","state":"STOP"}`},
		{"nested keeps the path", `{"lights":{"color":{"r":255,"g":255,"b":255}}}`, `{"lights":{"color":{"r":255,"g":0,"b":255}}}`, `{"lights":{"color":{"g":255}}}`},
		{"nested equal", `{"lights":{"color":{"r":1}}}`, `{"lights":{"color":{"r":1},"on":true}}`, ""},
		{"object against scalar", `{"a":{"b":1}}`, `{"a":5}`, `{"a":{"b":1}}`},
		{"scalar against object", `{"a":5}`, `{"a":{"b":1}}`, `{"a":5}`},
		{"arrays whole", `{"c":["RED","GREEN"]}`, `{"c":["RED"]}`, `{"c":["RED","GREEN"]}`},
		{"equal arrays", `{"c":[1,{"x":[2]}]}`, `{"c":[1,{"x":[2]}]}`, ""},
		{"arrays of objects whole", `{"c":[{"x":1,"y":2}]}`, `{"c":[{"x":1,"y":3}]}`, `{"c":[{"x":1,"y":2}]}`},
		{"numbers by value", `{"a":1,"b":100,"c":0.5}`, `{"a":1.0,"b":1e2,"c":0.50}`, ""},
		{"booleans", `{"a":true}`, `{"a":false}`, `{"a":true}`},
		{"types differ", `{"a":"1","b":true}`, `{"a":1,"b":"true"}`, `{"a":"1","b":true}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := shadow.Delta(object(t, c.desired), object(t, c.reported))
			if diff := cmp.Diff(object(t, c.want), got); diff != "" {
				t.Errorf("Delta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	cur := build(t,
		`{"state":{"desired":{"n":12345678901234567890,"f":0.1,"s":"<é>","arr":[1,{"x":true}]},"reported":{"n":1}}}`,
		`{"state":{"reported":{"o":{"p":{"q":"r"}}}}}`)
	b, err := shadow.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	back, err := shadow.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cur.Version, back.Version); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
	// Stored and re-read documents answer alike, numbers kept exactly.
	got, gerr := shadow.Get(back, "t", "", nil, 9, shadow.DefaultLimits())
	if gerr != nil {
		t.Fatal(gerr)
	}
	wantGet, gerr := shadow.Get(cur, "t", "", nil, 9, shadow.DefaultLimits())
	if gerr != nil {
		t.Fatal(gerr)
	}
	if diff := cmp.Diff(string(wantGet), string(got)); diff != "" {
		t.Errorf("get after round trip (-want +got):\n%s", diff)
	}
	// An update after the round trip behaves as before it.
	req := []byte(`{"state":{"desired":{"o":{"p":{"q":"r"}},"n":null}}}`)
	r1, e1 := shadow.Update(cur, req, 500, shadow.DefaultLimits())
	r2, e2 := shadow.Update(back, req, 500, shadow.DefaultLimits())
	if e1 != nil || e2 != nil {
		t.Fatal(e1, e2)
	}
	if diff := cmp.Diff(string(r1.Documents), string(r2.Documents)); diff != "" {
		t.Errorf("documents after round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{``, `{"exists":true} x`, `[]`} {
		if _, err := shadow.Unmarshal([]byte(bad)); err == nil {
			t.Errorf("Unmarshal(%q) accepted", bad)
		}
	}
}
