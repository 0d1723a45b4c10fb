package shadow_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// nested returns a desired section nested levels deep: {"k":{"k":…1}}.
func nested(levels int) string {
	return strings.Repeat(`{"k":`, levels) + "1" + strings.Repeat("}", levels)
}

func TestUpdateRejects(t *testing.T) {
	small := shadow.DefaultLimits()
	small.MaxStateBytes = 40
	for _, c := range []struct {
		name    string
		request string
		limits  *shadow.Limits
		payload string // the /rejected payload, at 1000
	}{
		{"not JSON", `{"state":`, nil, `{"code":400,"message":"Invalid JSON","timestamp":1000}`},
		{"empty", ``, nil, `{"code":400,"message":"Invalid JSON","timestamp":1000}`},
		{"not an object", `[1]`, nil, `{"code":400,"message":"Invalid JSON","timestamp":1000}`},
		{"trailing data", `{"state":{}} {}`, nil, `{"code":400,"message":"Invalid JSON","timestamp":1000}`},
		{"missing state", `{"clientToken":"c"}`, nil, `{"code":400,"message":"Missing required node: state","timestamp":1000,"clientToken":"c"}`},
		{"state not an object", `{"state":[],"clientToken":"c"}`, nil, `{"code":400,"message":"State node must be an object","timestamp":1000,"clientToken":"c"}`},
		{"state a string", `{"state":"on"}`, nil, `{"code":400,"message":"State node must be an object","timestamp":1000}`},
		{"desired not an object", `{"state":{"desired":5}}`, nil, `{"code":400,"message":"Desired node must be an object","timestamp":1000}`},
		{"reported not an object", `{"state":{"reported":[1]}}`, nil, `{"code":400,"message":"Reported node must be an object","timestamp":1000}`},
		{"invalid node in state", `{"state":{"delta":{"a":1}}}`, nil, `{"code":400,"message":"State contains an invalid node","timestamp":1000}`},
		{"clientToken a number", `{"state":{},"clientToken":5}`, nil, `{"code":400,"message":"Invalid clientToken","timestamp":1000}`},
		{"clientToken of 65 bytes", `{"state":{},"clientToken":"` + strings.Repeat("x", 65) + `"}`, nil, `{"code":400,"message":"Invalid clientToken","timestamp":1000}`},
		{"version a string", `{"state":{},"version":"3"}`, nil, `{"code":400,"message":"Invalid version","timestamp":1000}`},
		{"version a fraction", `{"state":{},"version":1.5}`, nil, `{"code":400,"message":"Invalid version","timestamp":1000}`},
		{"version negative", `{"state":{},"version":-1}`, nil, `{"code":400,"message":"Invalid version","timestamp":1000}`},
		{"version conflict", `{"state":{"desired":{"a":2}},"version":1,"clientToken":"c"}`, nil, `{"code":409,"message":"Version conflict","timestamp":1000,"clientToken":"c"}`},
		{"version ahead", `{"state":{"desired":{"a":2}},"version":3}`, nil, `{"code":409,"message":"Version conflict","timestamp":1000}`},
		{"null in an array", `{"state":{"desired":{"colors":[null,"RED"]}}}`, nil, `{"code":400,"message":"Arrays can't have null values","timestamp":1000}`},
		{"nine levels", `{"state":{"desired":` + nested(9) + `}}`, nil, `{"code":400,"message":"JSON contains too many levels of nesting; maximum is 8","timestamp":1000}`},
		{"arrays count as levels", `{"state":{"reported":` + strings.Repeat(`{"k":`, 8) + `[1]` + strings.Repeat("}", 8) + `}}`, nil, `{"code":400,"message":"JSON contains too many levels of nesting; maximum is 8","timestamp":1000}`},
		{"request too large", `{"state":{"reported":{"s":"` + strings.Repeat("x", 128*1024) + `"}}}`, nil, `{"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":1000}`},
		{"resulting state too large", `{"state":{"desired":{"s":"` + strings.Repeat("x", 30) + `"}},"clientToken":"c"}`, &small, `{"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":1000,"clientToken":"c"}`},
		{"not UTF-8", "{\"state\":{\"desired\":{\"s\":\"\xff\"}}}", nil, `{"code":415,"message":"Unsupported documented encoding; supported encoding is UTF-8","timestamp":1000}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Version 2 with 13 bytes of state: {"a":1} and {"b":2}.
			cur := build(t, `{"state":{"desired":{"a":1}}}`, `{"state":{"reported":{"b":2}}}`)
			before, err := shadow.Marshal(cur)
			if err != nil {
				t.Fatal(err)
			}
			limits := shadow.DefaultLimits()
			if c.limits != nil {
				limits = *c.limits
			}
			res, rerr := shadow.Update(cur, []byte(c.request), 1000, limits)
			if rerr == nil {
				t.Fatalf("accepted: %s", res.Accepted)
			}
			if diff := cmp.Diff(want(t, c.payload), decoded(t, rerr.Payload())); diff != "" {
				t.Errorf("rejected payload (-want +got):\n%s", diff)
			}
			if res.Accepted != nil || res.Delta != nil || res.Documents != nil || res.Document.Exists {
				t.Errorf("a rejected update returned a result: %+v", res)
			}
			after, err := shadow.Marshal(cur)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(decoded(t, before), decoded(t, after)); diff != "" {
				t.Errorf("document changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestUpdateLimitBoundaries(t *testing.T) {
	for _, c := range []struct {
		name    string
		request string
	}{
		{"eight levels", `{"state":{"desired":` + nested(8) + `}}`},
		{"clientToken of 64 bytes", `{"state":{},"clientToken":"` + strings.Repeat("x", 64) + `"}`},
		{"8 KB of state", `{"state":{"desired":{"s":"` + strings.Repeat("x", 8192-len(`{"s":""}`)) + `"}}}`},
		{"null version and token are absent", `{"state":{"desired":{"a":1}},"version":null,"clientToken":null}`},
		{"empty state", `{"state":{}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := shadow.Update(shadow.Document{}, []byte(c.request), 1000, shadow.DefaultLimits())
			if err != nil {
				t.Fatalf("rejected: %s", err.Payload())
			}
			if res.Document.Version != 1 || !res.Document.Exists {
				t.Errorf("document %+v, want version 1 existing", res.Document)
			}
		})
	}
}

func TestErrorPayloadKeepsUTF8(t *testing.T) {
	e := &shadow.Error{Code: 404, Message: shadow.NotFoundMessage("lock-7", "door"), Timestamp: 5, ClientToken: "<é>"}
	if diff := cmp.Diff(`{"code":404,"message":"No shadow exists with name: 'lock-7~door'","timestamp":5,"clientToken":"<é>"}`, string(e.Payload())); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("No shadow exists with name: 'lock-7'", shadow.NotFoundMessage("lock-7", "")); diff != "" {
		t.Errorf("classic message (-want +got):\n%s", diff)
	}
}

func TestZeroLimitsAreDefaults(t *testing.T) {
	if _, err := shadow.Update(shadow.Document{}, []byte(`{"state":{"desired":{"a":1}}}`), 1, shadow.Limits{}); err != nil {
		t.Fatalf("zero limits rejected a small update: %s", err.Payload())
	}
	_, err := shadow.Update(shadow.Document{}, []byte(`{"state":{"desired":`+nested(9)+`}}`), 1, shadow.Limits{MaxStateBytes: 10000})
	if err == nil || err.Message != "JSON contains too many levels of nesting; maximum is 8" {
		t.Fatalf("got %v, want the default depth limit", err)
	}
	if _, err := shadow.Get(build(t, `{"state":{}}`), "t", "", []byte(`{"clientToken":"`+strings.Repeat("x", 64)+`"}`), 1, shadow.Limits{}); err != nil {
		t.Fatalf("zero limits rejected a 64-byte token: %v", err)
	}
}

func TestUpdateStoredDocumentWithoutMetadata(t *testing.T) {
	cur, err := shadow.Unmarshal([]byte(`{"exists":true,"version":3,"desired":{"a":{"b":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	res, rerr := shadow.Update(cur, []byte(`{"state":{"desired":{"a":{"c":2}}}}`), 50, shadow.DefaultLimits())
	if rerr != nil {
		t.Fatal(rerr)
	}
	got := get(t, res.Document, 60)
	wantGet := `{"state":{"desired":{"a":{"b":1,"c":2}},"delta":{"a":{"b":1,"c":2}}},"metadata":{"desired":{"a":{"c":{"timestamp":50}}}},"version":4,"timestamp":60}`
	if diff := cmp.Diff(want(t, wantGet), got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
}
