// Package domaintest holds the checks that the aggregates' property tests
// share.
package domaintest

import (
	"encoding/json"
	"reflect"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Diff is cmp.Diff with a cheap equality test first: property tests compare
// thousands of states.
func Diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return cmp.Diff(want, got)
}

// Expect checks a decide result: with wantCode set, an error of that code and
// no events; otherwise no error and exactly wantEvs.
func Expect(t *rapid.T, what string, gotEvs []domain.Event, gotErr error, wantEvs []domain.Event, wantCode domain.Code) {
	t.Helper()
	if wantCode != "" {
		if code := domain.ErrorCode(gotErr); code != wantCode {
			t.Fatalf("%s: error %v (code %s), want code %s", what, gotErr, code, wantCode)
		}
		if len(gotEvs) != 0 {
			t.Fatalf("%s: failed with %v but returned events %v", what, gotErr, gotEvs)
		}
		return
	}
	if gotErr != nil {
		t.Fatalf("%s: unexpected error %v", what, gotErr)
	}
	if diff := Diff(wantEvs, gotEvs); diff != "" {
		t.Fatalf("%s: events mismatch (-want +got):\n%s", what, diff)
	}
}

// RoundTrip marshals e, decodes it with the catalogue events and checks it
// comes back equal; it returns the encoding and the decoded event.
func RoundTrip(t *rapid.T, e domain.Event, events *domain.Catalog) ([]byte, domain.Event) {
	t.Helper()
	typ := events.Name(e)
	if typ == "" {
		t.Fatalf("%T is not in the %s catalogue", e, events.Aggregate())
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("marshal %s: %v", typ, err)
	}
	got, err := events.Decode(typ, b)
	if err != nil {
		t.Fatalf("decode %s %s: %v", typ, b, err)
	}
	if diff := Diff(e, got); diff != "" {
		t.Fatalf("%s does not survive JSON (-want +got):\n%s", typ, diff)
	}
	return b, got
}
