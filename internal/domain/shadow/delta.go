package shadow

import (
	"encoding/json"
	"math/big"
)

// Delta returns AWS's delta state: the fields of desired whose values differ
// from reported. Nested objects are compared field by field and appear with
// only their differing fields on the path from the root; arrays and every
// other value are compared whole; fields only in desired are included and
// fields only in reported are not. It returns nil when nothing differs.
func Delta(desired, reported map[string]any) map[string]any {
	d, _ := deltaWithMeta(desired, reported, nil)
	return d
}

// deltaWithMeta computes Delta and, beside it, the metadata of its fields
// taken from desired's metadata (AWS: the delta's metadata equals the
// desired metadata of those fields).
func deltaWithMeta(desired, reported, desiredMeta map[string]any) (map[string]any, map[string]any) {
	var out, meta map[string]any
	for k, dv := range desired {
		rv, inReported := reported[k]
		var v, m any
		dObj, dIsObj := dv.(map[string]any)
		rObj, rIsObj := rv.(map[string]any)
		switch {
		case inReported && dIsObj && rIsObj:
			sub, subMeta := deltaWithMeta(dObj, rObj, asObject(desiredMeta[k]))
			if sub == nil {
				continue
			}
			v, m = sub, subMeta
		case inReported && equalJSON(dv, rv):
			continue
		default:
			v, m = copyJSON(dv), copyJSON(desiredMeta[k])
		}
		if out == nil {
			out, meta = map[string]any{}, map[string]any{}
		}
		out[k] = v
		if m != nil {
			meta[k] = m
		}
	}
	return out, meta
}

func asObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// equalJSON reports whether two decoded JSON values are equal; numbers are
// equal when they denote the same number (1, 1.0 and 1e0 are equal).
func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equalJSON(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, okA := new(big.Rat).SetString(string(a))
		rb, okB := new(big.Rat).SetString(string(b))
		return okA && okB && ra.Cmp(rb) == 0
	case string, bool, nil:
		return a == b
	default:
		return false
	}
}

// copyJSON deep-copies a decoded JSON value so that documents never share
// maps or slices.
func copyJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return copyObject(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = copyJSON(e)
		}
		return out
	default:
		return v
	}
}

func copyObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyJSON(v)
	}
	return out
}

// leafMeta is the metadata of a value written at now: per element for an
// array, per field for an object, {"timestamp": now} for anything else
// (null included, as AWS answers for a deleted field).
func leafMeta(v any, now int64) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = leafMeta(e, now)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = leafMeta(e, now)
		}
		return out
	default:
		return map[string]any{"timestamp": now}
	}
}
