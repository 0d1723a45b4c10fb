package shadow_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// decoded parses a JSON payload for comparison; "" stands for no payload.
func decoded(t *testing.T, b []byte) any {
	t.Helper()
	if b == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("payload %q is not JSON: %v", b, err)
	}
	return v
}

func want(t *testing.T, s string) any {
	t.Helper()
	if s == "" {
		return nil
	}
	return decoded(t, []byte(s))
}

// build applies requests in order, the i-th at 100*(i+1) seconds.
func build(t *testing.T, requests ...string) shadow.Document {
	t.Helper()
	var d shadow.Document
	for i, r := range requests {
		res, err := shadow.Update(d, []byte(r), int64(100*(i+1)), shadow.DefaultLimits())
		if err != nil {
			t.Fatalf("setup update %d %s: %v", i, r, err)
		}
		d = res.Document
	}
	return d
}

func get(t *testing.T, d shadow.Document, now int64) any {
	t.Helper()
	b, err := shadow.Get(d, "lock-7", "", nil, now, shadow.DefaultLimits())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return decoded(t, b)
}

func TestUpdate(t *testing.T) {
	for _, c := range []struct {
		name     string
		before   []string
		request  string
		accepted string
		delta    string // "" when no /delta is published
		get      string // /get/accepted at 5000 afterwards
	}{
		{
			name:     "first desired update creates version 1",
			request:  `{"state":{"desired":{"color":"RED"}},"clientToken":"t1"}`,
			accepted: `{"state":{"desired":{"color":"RED"}},"metadata":{"desired":{"color":{"timestamp":1000}}},"version":1,"timestamp":1000,"clientToken":"t1"}`,
			delta:    `{"state":{"color":"RED"},"metadata":{"color":{"timestamp":1000}},"version":1,"timestamp":1000,"clientToken":"t1"}`,
			get:      `{"state":{"desired":{"color":"RED"},"delta":{"color":"RED"}},"metadata":{"desired":{"color":{"timestamp":1000}}},"version":1,"timestamp":5000}`,
		},
		{
			name:     "reported matching desired: no delta",
			before:   []string{`{"state":{"desired":{"color":"RED"}}}`},
			request:  `{"state":{"reported":{"color":"RED"}}}`,
			accepted: `{"state":{"reported":{"color":"RED"}},"metadata":{"reported":{"color":{"timestamp":1000}}},"version":2,"timestamp":1000}`,
			get:      `{"state":{"desired":{"color":"RED"},"reported":{"color":"RED"}},"metadata":{"desired":{"color":{"timestamp":100}},"reported":{"color":{"timestamp":1000}}},"version":2,"timestamp":5000}`,
		},
		{
			name:     "reported update that leaves a difference publishes the whole delta",
			before:   []string{`{"state":{"desired":{"color":"RED","mode":"eco"}}}`},
			request:  `{"state":{"reported":{"color":"RED","temp":21}}}`,
			accepted: `{"state":{"reported":{"color":"RED","temp":21}},"metadata":{"reported":{"color":{"timestamp":1000},"temp":{"timestamp":1000}}},"version":2,"timestamp":1000}`,
			delta:    `{"state":{"mode":"eco"},"metadata":{"mode":{"timestamp":100}},"version":2,"timestamp":1000}`,
			get: `{"state":{"desired":{"color":"RED","mode":"eco"},"reported":{"color":"RED","temp":21},"delta":{"mode":"eco"}},
				"metadata":{"desired":{"color":{"timestamp":100},"mode":{"timestamp":100}},"reported":{"color":{"timestamp":1000},"temp":{"timestamp":1000}}},"version":2,"timestamp":5000}`,
		},
		{
			name: "nested objects merge and the delta keeps the path to the root",
			before: []string{
				`{"state":{"desired":{"lights":{"color":{"r":255,"g":0,"b":255}}}}}`,
				`{"state":{"reported":{"lights":{"color":{"r":255,"g":0,"b":255}}}}}`,
			},
			request:  `{"state":{"desired":{"lights":{"color":{"g":255}}}}}`,
			accepted: `{"state":{"desired":{"lights":{"color":{"g":255}}}},"metadata":{"desired":{"lights":{"color":{"g":{"timestamp":1000}}}}},"version":3,"timestamp":1000}`,
			delta:    `{"state":{"lights":{"color":{"g":255}}},"metadata":{"lights":{"color":{"g":{"timestamp":1000}}}},"version":3,"timestamp":1000}`,
			get: `{"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}}},"reported":{"lights":{"color":{"r":255,"g":0,"b":255}}},"delta":{"lights":{"color":{"g":255}}}},
				"metadata":{"desired":{"lights":{"color":{"r":{"timestamp":100},"g":{"timestamp":1000},"b":{"timestamp":100}}}},"reported":{"lights":{"color":{"r":{"timestamp":200},"g":{"timestamp":200},"b":{"timestamp":200}}}}},"version":3,"timestamp":5000}`,
		},
		{
			name:     "arrays replace whole and metadata is per element",
			before:   []string{`{"state":{"desired":{"colors":["RED","GREEN","BLUE"]},"reported":{"colors":["RED","GREEN"]}}}`},
			request:  `{"state":{"desired":{"colors":["RED"]}}}`,
			accepted: `{"state":{"desired":{"colors":["RED"]}},"metadata":{"desired":{"colors":[{"timestamp":1000}]}},"version":2,"timestamp":1000}`,
			delta:    `{"state":{"colors":["RED"]},"metadata":{"colors":[{"timestamp":1000}]},"version":2,"timestamp":1000}`,
			get: `{"state":{"desired":{"colors":["RED"]},"reported":{"colors":["RED","GREEN"]},"delta":{"colors":["RED"]}},
				"metadata":{"desired":{"colors":[{"timestamp":1000}]},"reported":{"colors":[{"timestamp":100},{"timestamp":100}]}},"version":2,"timestamp":5000}`,
		},
		{
			name:     "null deletes a field and is echoed with a timestamp",
			before:   []string{`{"state":{"desired":{"a":1,"b":2}}}`},
			request:  `{"state":{"desired":{"a":null}}}`,
			accepted: `{"state":{"desired":{"a":null}},"metadata":{"desired":{"a":{"timestamp":1000}}},"version":2,"timestamp":1000}`,
			delta:    `{"state":{"b":2},"metadata":{"b":{"timestamp":100}},"version":2,"timestamp":1000}`,
			get:      `{"state":{"desired":{"b":2},"delta":{"b":2}},"metadata":{"desired":{"b":{"timestamp":100}}},"version":2,"timestamp":5000}`,
		},
		{
			name:     "deleting the last field of an object removes the object",
			before:   []string{`{"state":{"reported":{"cfg":{"x":1},"y":2}}}`},
			request:  `{"state":{"reported":{"cfg":{"x":null}}}}`,
			accepted: `{"state":{"reported":{"cfg":{"x":null}}},"metadata":{"reported":{"cfg":{"x":{"timestamp":1000}}}},"version":2,"timestamp":1000}`,
			get:      `{"state":{"reported":{"y":2}},"metadata":{"reported":{"y":{"timestamp":100}}},"version":2,"timestamp":5000}`,
		},
		{
			name:     "desired null clears the section",
			before:   []string{`{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}}}`},
			request:  `{"state":{"reported":{"color":"red"},"desired":null},"clientToken":"dev"}`,
			accepted: `{"state":{"reported":{"color":"red"},"desired":null},"metadata":{"reported":{"color":{"timestamp":1000}},"desired":{"timestamp":1000}},"version":2,"timestamp":1000,"clientToken":"dev"}`,
			get:      `{"state":{"reported":{"color":"red"}},"metadata":{"reported":{"color":{"timestamp":1000}}},"version":2,"timestamp":5000}`,
		},
		{
			name:     "state null empties the shadow, which still exists",
			before:   []string{`{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}}}`},
			request:  `{"state":null}`,
			accepted: `{"state":{"desired":null,"reported":null},"metadata":{"desired":{"timestamp":1000},"reported":{"timestamp":1000}},"version":2,"timestamp":1000}`,
			get:      `{"state":{},"metadata":{},"version":2,"timestamp":5000}`,
		},
		{
			name:     "a scalar replaced by an object and back",
			before:   []string{`{"state":{"reported":{"v":1}}}`, `{"state":{"reported":{"v":{"w":2}}}}`},
			request:  `{"state":{"reported":{"v":"x"}}}`,
			accepted: `{"state":{"reported":{"v":"x"}},"metadata":{"reported":{"v":{"timestamp":1000}}},"version":3,"timestamp":1000}`,
			get:      `{"state":{"reported":{"v":"x"}},"metadata":{"reported":{"v":{"timestamp":1000}}},"version":3,"timestamp":5000}`,
		},
		{
			name:     "matching version is accepted; unknown top-level keys are ignored",
			before:   []string{`{"state":{"reported":{"on":true}}}`, `{"state":{"reported":{"on":false}}}`},
			request:  `{"state":{"reported":{"on":true}},"version":2,"extra":{"ignored":1}}`,
			accepted: `{"state":{"reported":{"on":true}},"metadata":{"reported":{"on":{"timestamp":1000}}},"version":3,"timestamp":1000}`,
			get:      `{"state":{"reported":{"on":true}},"metadata":{"reported":{"on":{"timestamp":1000}}},"version":3,"timestamp":5000}`,
		},
		{
			name:     "numbers compare by value in the delta",
			before:   []string{`{"state":{"reported":{"t":21.0,"big":12345678901234567890}}}`},
			request:  `{"state":{"desired":{"t":21,"big":12345678901234567890}}}`,
			accepted: `{"state":{"desired":{"t":21,"big":12345678901234567890}},"metadata":{"desired":{"t":{"timestamp":1000},"big":{"timestamp":1000}}},"version":2,"timestamp":1000}`,
			get: `{"state":{"desired":{"t":21,"big":12345678901234567890},"reported":{"t":21.0,"big":12345678901234567890}},
				"metadata":{"desired":{"t":{"timestamp":1000},"big":{"timestamp":1000}},"reported":{"t":{"timestamp":100},"big":{"timestamp":100}}},"version":2,"timestamp":5000}`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cur := build(t, c.before...)
			res, err := shadow.Update(cur, []byte(c.request), 1000, shadow.DefaultLimits())
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if diff := cmp.Diff(want(t, c.accepted), decoded(t, res.Accepted)); diff != "" {
				t.Errorf("accepted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want(t, c.delta), decoded(t, res.Delta)); diff != "" {
				t.Errorf("delta (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want(t, c.get), get(t, res.Document, 5000)); diff != "" {
				t.Errorf("get afterwards (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateDocuments(t *testing.T) {
	first, err := shadow.Update(shadow.Document{}, []byte(`{"state":{"desired":{"color":"RED"}},"clientToken":"a"}`), 100, shadow.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	second, err := shadow.Update(first.Document, []byte(`{"state":{"reported":{"color":"GREEN"}},"clientToken":"b"}`), 200, shadow.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"creation has no previous", first.Documents,
			`{"previous":null,"current":{"state":{"desired":{"color":"RED"}},"metadata":{"desired":{"color":{"timestamp":100}}},"version":1},"timestamp":100,"clientToken":"a"}`},
		{"update carries previous and current", second.Documents,
			`{"previous":{"state":{"desired":{"color":"RED"}},"metadata":{"desired":{"color":{"timestamp":100}}},"version":1},
			  "current":{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}},"metadata":{"desired":{"color":{"timestamp":100}},"reported":{"color":{"timestamp":200}}},"version":2},
			  "timestamp":200,"clientToken":"b"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(want(t, c.want), decoded(t, c.got)); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateDoesNotMutateInput(t *testing.T) {
	cur := build(t, `{"state":{"desired":{"a":{"b":1},"list":[1,2]},"reported":{"a":{"b":1}}}}`)
	before, err := shadow.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	if _, uerr := shadow.Update(cur, []byte(`{"state":{"desired":{"a":{"b":null,"c":2},"list":[3]},"reported":null}}`), 900, shadow.DefaultLimits()); uerr != nil {
		t.Fatal(uerr)
	}
	after, err := shadow.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(decoded(t, before), decoded(t, after)); diff != "" {
		t.Errorf("input document changed (-before +after):\n%s", diff)
	}
}
