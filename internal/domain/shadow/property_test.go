package shadow_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// leaves flattens a JSON object into path -> encoded leaf (arrays are leaves),
// the model the property below reasons in.
type leaves map[string]string

const sep = "/"

func flatten(v any) leaves {
	out := leaves{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				walk(prefix+sep+k, e)
			}
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out[prefix] = string(b)
	}
	if v != nil {
		for k, e := range v.(map[string]any) {
			walk(k, e)
		}
	}
	return out
}

// apply is the model of an update section: null deletes a path and what is
// under it, an object replaces a leaf at its path and merges, anything else
// replaces the path whole.
func (l leaves) apply(prefix string, patch map[string]any) {
	for k, v := range patch {
		p := k
		if prefix != "" {
			p = prefix + sep + k
		}
		switch v := v.(type) {
		case nil:
			l.drop(p)
		case map[string]any:
			delete(l, p)
			l.apply(p, v)
		default:
			l.drop(p)
			b, _ := json.Marshal(v)
			l[p] = string(b)
		}
	}
}

func (l leaves) drop(p string) {
	for k := range l {
		if k == p || strings.HasPrefix(k, p+sep) {
			delete(l, k)
		}
	}
}

func genValue(depth int) *rapid.Generator[any] {
	return rapid.Custom(func(t *rapid.T) any {
		kind := rapid.IntRange(0, 6).Draw(t, "kind")
		switch {
		case kind == 0:
			return nil
		case kind == 1:
			return rapid.SampledFrom([]any{"x", "y", true, false}).Draw(t, "scalar")
		case kind == 2:
			return []any{json.Number(fmt.Sprint(rapid.IntRange(0, 2).Draw(t, "e0"))), "x"}
		case kind >= 5 && depth > 0:
			return genObject(depth-1).Draw(t, "object")
		default:
			return json.Number(fmt.Sprint(rapid.IntRange(0, 2).Draw(t, "n")))
		}
	})
}

func genObject(depth int) *rapid.Generator[map[string]any] {
	return rapid.Custom(func(t *rapid.T) map[string]any {
		m := map[string]any{}
		for _, k := range []string{"a", "b", "c"} {
			if rapid.Bool().Draw(t, "has-"+k) {
				m[k] = genValue(depth).Draw(t, k)
			}
		}
		return m
	})
}

func TestUpdateProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var cur shadow.Document
		desired, reported := leaves{}, leaves{}
		version := int64(0)
		for step := range rapid.IntRange(1, 25).Draw(t, "steps") {
			now := int64(100 * (step + 1))
			req := map[string]any{}
			state := map[string]any{}
			for _, sec := range []string{"desired", "reported"} {
				switch rapid.IntRange(0, 9).Draw(t, sec) {
				case 0:
					state[sec] = nil
				case 1, 2, 3, 4, 5:
					state[sec] = genObject(2).Draw(t, sec+"-fields")
				}
			}
			req["state"] = state
			conflict := false
			switch rapid.IntRange(0, 3).Draw(t, "version") {
			case 0:
				req["version"] = version
			case 1:
				req["version"] = version + int64(rapid.IntRange(1, 3).Draw(t, "off"))
				conflict = true
			}
			body, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}

			res, rerr := shadow.Update(cur, body, now, shadow.DefaultLimits())
			if conflict {
				if rerr == nil || rerr.Code != 409 {
					t.Fatalf("step %d %s: got %v, want 409", step, body, rerr)
				}
				continue
			}
			if rerr != nil {
				t.Fatalf("step %d %s: rejected %s", step, body, rerr.Payload())
			}
			version++
			if res.Document.Version != version {
				t.Fatalf("step %d: version %d, want %d", step, res.Document.Version, version)
			}
			cur = res.Document
			for sec, model := range map[string]leaves{"desired": desired, "reported": reported} {
				if v, ok := state[sec]; ok {
					if v == nil {
						clear(model)
					} else {
						model.apply("", v.(map[string]any))
					}
				}
			}

			wantDelta := leaves{}
			for p, v := range desired {
				if reported[p] != v {
					wantDelta[p] = v
				}
			}
			got := decodedNumbers(t, mustGet(t, cur, now))
			gotState := got["state"].(map[string]any)
			for name, pair := range map[string][2]leaves{
				"desired":  {desired, flatten(gotState["desired"])},
				"reported": {reported, flatten(gotState["reported"])},
				"delta":    {wantDelta, flatten(gotState["delta"])},
			} {
				if diff := cmp.Diff(pair[0], pair[1]); diff != "" {
					t.Fatalf("step %d %s: get %s (-model +got):\n%s", step, body, name, diff)
				}
			}
			// The /update/delta payload carries the same delta, with the
			// desired timestamps of its fields, or is absent.
			if len(wantDelta) == 0 {
				if res.Delta != nil {
					t.Fatalf("step %d: delta published without a difference: %s", step, res.Delta)
				}
				continue
			}
			pub := decodedNumbers(t, res.Delta)
			if diff := cmp.Diff(wantDelta, flatten(pub["state"])); diff != "" {
				t.Fatalf("step %d: /delta state (-model +got):\n%s", step, diff)
			}
			if diff := cmp.Diff(pub["version"], json.Number(fmt.Sprint(version))); diff != "" {
				t.Fatalf("step %d: /delta version (-got +want):\n%s", step, diff)
			}
			wantMeta := leaves{}
			desiredMeta := flatten(got["metadata"].(map[string]any)["desired"])
			for p := range wantDelta {
				maps.Copy(wantMeta, prefixed(desiredMeta, p))
			}
			if diff := cmp.Diff(wantMeta, flatten(pub["metadata"])); diff != "" {
				t.Fatalf("step %d: /delta metadata (-desired metadata +got):\n%s", step, diff)
			}
		}
	})
}

// prefixed returns the metadata leaves of the field at path p (its
// timestamp or, for an array, its elements').
func prefixed(meta leaves, p string) leaves {
	out := leaves{}
	for k, v := range meta {
		if k == p+sep+"timestamp" || k == p {
			out[k] = v
		}
	}
	return out
}

func mustGet(t *rapid.T, d shadow.Document, now int64) []byte {
	b, err := shadow.Get(d, "t", "", nil, now, shadow.DefaultLimits())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return b
}

func decodedNumbers(t *rapid.T, b []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}
