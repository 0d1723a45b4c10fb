package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzUnmarshalStrict: the API's JSON decoder never panics, never names a
// Go type, and agrees with encoding/json on bodies whose member names are
// spelled exactly.
func FuzzUnmarshalStrict(f *testing.F) {
	for _, s := range []string{
		`{"index":1,"uuid":"x","keys":[{"uuid":"k","indexNumber":2}]}`,
		`{"index":1e308}`, `{"INDEX":1}`, `{"keys":[{"IndexNumber":1e3}]}`, `{"keys":{}}`, `[]`, `null`, `{"index":null}`,
		`{"serialNumber":5}`, `{"keys":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var strict, std lockCommandInput[createLockInputBody]
		err := unmarshalStrict(data, &strict.Body)
		if err != nil {
			if strings.Contains(err.Error(), "Go ") {
				t.Fatalf("error names a Go type: %v", err)
			}
			return
		}
		if json.Unmarshal(data, &std.Body) == nil && exactNames(data) && !reflect.DeepEqual(strict.Body, std.Body) {
			t.Fatalf("%s: strict %+v, encoding/json %+v", data, strict.Body, std.Body)
		}
	})
}

// exactNames reports whether every member name in data is one of
// CreateLock's, spelled exactly, or unknown in every case.
func exactNames(data []byte) bool {
	known := map[string]bool{"index": true, "uuid": true, "serialNumber": true, "vendorName": true, "ownerId": true, "keys": true, "indexNumber": true, "userId": true}
	lower := map[string]bool{}
	for k := range known {
		lower[strings.ToLower(k)] = true
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return false
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !known[k] && lower[strings.ToLower(k)] {
					return false
				}
				if !walk(e) {
					return false
				}
			}
		case []any:
			for _, e := range x {
				if !walk(e) {
					return false
				}
			}
		}
		return true
	}
	return walk(v)
}
