package httpapi_test

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// openapiResolve follows a schema's $ref inside doc.
func openapiResolve(t *testing.T, doc map[string]any, s any) map[string]any {
	t.Helper()
	m, _ := s.(map[string]any)
	for m != nil && m["$ref"] != nil {
		name := strings.TrimPrefix(m["$ref"].(string), "#/components/schemas/")
		m, _ = doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	}
	if m == nil {
		t.Fatalf("schema %v does not resolve", s)
	}
	return m
}

// openapiAnswer is the resolved answer schema of one operation.
func openapiAnswer(t *testing.T, doc map[string]any, method, path, status string) map[string]any {
	t.Helper()
	op := doc["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	r := op["responses"].(map[string]any)[status].(map[string]any)
	return openapiResolve(t, doc, r["content"].(map[string]any)["application/json"].(map[string]any)["schema"])
}

// jsonNames lists the JSON member names of struct type t.
func jsonNames(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPICommandEvents: a command answer's event is nullable (spkey
// sends null when nothing changed), its type names the command's event and
// its data is that event's payload schema, typed as upstream types it
// (numbers, arrays that are never null); versions are numbers.
func TestOpenAPICommandEvents(t *testing.T) {
	srv := testenv.NewServer(t, testenv.SQLite, testenv.Options{})
	resp := wireDo(t, srv, wireReq{Method: "GET", Path: "/openapi.json"})
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %s", resp.Status, resp.Raw)
	}
	doc := resp.JSON.(map[string]any)
	for _, c := range []struct {
		method, path, status string
		payload              domain.Event
		numbers, arrays      []string
	}{
		{"POST", "/locks/{id}/AddResident", "200", lock.ResidentAdded{}, []string{"lockId"}, nil},
		{"POST", "/locks/{id}/CreateLock", "201", lock.LockCreated{}, []string{"lockId"}, []string{"keys"}},
	} {
		t.Run(c.path, func(t *testing.T) {
			answer := openapiAnswer(t, doc, c.method, c.path, c.status)
			props := answer["properties"].(map[string]any)
			if v := props["version"].(map[string]any); v["type"] != "number" {
				t.Errorf("version: %v, want a number", v)
			}
			ev := props["event"].(map[string]any)
			types, _ := ev["type"].([]any)
			if !slices.Contains(types, "object") || !slices.Contains(types, "null") {
				t.Errorf("event type %v, want [object null]", ev["type"])
			}
			evProps := ev["properties"].(map[string]any)
			if enum := evProps["type"].(map[string]any)["enum"]; !reflect.DeepEqual(enum, []any{app.EventName(c.payload)}) {
				t.Errorf("event type enum %v, want [%s]", enum, app.EventName(c.payload))
			}
			data := openapiResolve(t, doc, evProps["data"])
			var names []string
			for n := range data["properties"].(map[string]any) {
				names = append(names, n)
			}
			slices.Sort(names)
			if want := jsonNames(reflect.TypeOf(c.payload)); !slices.Equal(names, want) {
				t.Errorf("event data members %v, want %s's %v", names, app.EventName(c.payload), want)
			}
			dp := data["properties"].(map[string]any)
			for _, n := range c.numbers {
				if got := dp[n].(map[string]any)["type"]; got != "number" {
					t.Errorf("data.%s type %v, want number", n, got)
				}
			}
			for _, n := range c.arrays {
				if got := dp[n].(map[string]any)["type"]; got != "array" {
					t.Errorf("data.%s type %v, want array (never null)", n, got)
				}
			}
		})
	}
}
