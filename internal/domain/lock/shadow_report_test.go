package lock_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// fullReport is the README's example report plus a field the layout does
// not name (ignored).
const fullReport = `{
  "layout": 1,
  "keys": {
    "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40": {"at": 1764780000, "index": 3},
    "wallet-key-7": {"at": 1764780010}
  },
  "open": {"r-1": {"at": 1764780100, "result": "succeeded"}},
  "writeKey": {"w-1": {"at": 1764780200, "keyUuid": "wallet-key-7", "result": "failed", "error": "no card"}},
  "lock": "locked",
  "battery": 87,
  "firmware": "acme-1.4.2",
  "doorbell": {"pressId": "p-42", "at": 1764780300},
  "vendorExtra": {"anything": [1, 2]}
}`

func TestParseReportedFull(t *testing.T) {
	got, err := lock.ParseReported([]byte(fullReport))
	if err != nil {
		t.Fatal(err)
	}
	battery := 87
	want := lock.Report{
		Keys: map[string]lock.HeldKey{
			"6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40": {At: 1764780000, Index: idx(3)},
			"wallet-key-7":                         {At: 1764780010},
		},
		Open:     map[string]lock.Result{"r-1": {At: 1764780100, Result: "succeeded"}},
		WriteKey: map[string]lock.Result{"w-1": {At: 1764780200, Result: "failed", Error: "no card"}},
		Lock:     "locked",
		Battery:  &battery,
		Firmware: "acme-1.4.2",
		Doorbell: &lock.Press{ID: "p-42", At: 1764780300},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseReported (-want +got):\n%s", diff)
	}
}

func TestParseReportedEmpty(t *testing.T) {
	for _, in := range []string{"", "null", "  "} {
		got, err := lock.ParseReported([]byte(in))
		if err != nil {
			t.Fatalf("ParseReported(%q): %v", in, err)
		}
		if diff := cmp.Diff(lock.Report{}, got); diff != "" {
			t.Errorf("ParseReported(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestParseReportedRefuses(t *testing.T) {
	many := func(n int, entry string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `"` + strings.Repeat("x", 1+i%7) + string(rune('a'+i/7%26)) + string(rune('a'+i/182)) + `":` + entry
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	for _, c := range []struct {
		name, body, field string
	}{
		{"not an object", `[1]`, "reported"},
		{"no layout", `{"keys":{}}`, "reported.layout"},
		{"layout 2", `{"layout":2}`, "reported.layout"},
		{"layout as string", `{"layout":"1"}`, "reported.layout"},
		{"layout as fraction", `{"layout":1.5}`, "reported.layout"},
		{"keys not an object", `{"layout":1,"keys":["k1"]}`, "reported.keys"},
		{"key entry not an object", `{"layout":1,"keys":{"k1":true}}`, `reported.keys["k1"]`},
		{"key without at", `{"layout":1,"keys":{"k1":{"index":1}}}`, `reported.keys["k1"].at`},
		{"key index as string", `{"layout":1,"keys":{"k1":{"at":1,"index":"1"}}}`, `reported.keys["k1"].index`},
		{"key index out of range", `{"layout":1,"keys":{"k1":{"at":1,"index":9007199254740992}}}`, `reported.keys["k1"].index`},
		{"key name too long", `{"layout":1,"keys":{"` + strings.Repeat("k", 129) + `":{"at":1}}}`, `reported.keys["` + strings.Repeat("k", 129) + `"]`},
		{"too many keys", `{"layout":1,"keys":` + many(lock.MaxReportedKeys+1, `{"at":1}`) + `}`, "reported.keys"},
		{"too many open results", `{"layout":1,"open":` + many(lock.MaxReportedResults+1, `{"at":1,"result":"succeeded"}`) + `}`, "reported.open"},
		{"open without result", `{"layout":1,"open":{"r":{"at":1}}}`, `reported.open["r"].result`},
		{"open result unknown", `{"layout":1,"open":{"r":{"at":1,"result":"done"}}}`, `reported.open["r"].result`},
		{"open error not a string", `{"layout":1,"open":{"r":{"at":1,"result":"failed","error":5}}}`, `reported.open["r"].error`},
		{"open error too long", `{"layout":1,"open":{"r":{"at":1,"result":"failed","error":"` + strings.Repeat("e", 201) + `"}}}`, `reported.open["r"].error`},
		{"write key at missing", `{"layout":1,"writeKey":{"w":{"result":"succeeded"}}}`, `reported.writeKey["w"].at`},
		{"lock state unknown", `{"layout":1,"lock":"open"}`, "reported.lock"},
		{"lock state not a string", `{"layout":1,"lock":1}`, "reported.lock"},
		{"battery over 100", `{"layout":1,"battery":101}`, "reported.battery"},
		{"battery negative", `{"layout":1,"battery":-1}`, "reported.battery"},
		{"battery fraction", `{"layout":1,"battery":50.5}`, "reported.battery"},
		{"firmware not a string", `{"layout":1,"firmware":1.2}`, "reported.firmware"},
		{"firmware too long", `{"layout":1,"firmware":"` + strings.Repeat("f", 65) + `"}`, "reported.firmware"},
		{"doorbell not an object", `{"layout":1,"doorbell":"p-1"}`, "reported.doorbell"},
		{"doorbell without pressId", `{"layout":1,"doorbell":{"at":1}}`, "reported.doorbell.pressId"},
		{"doorbell empty pressId", `{"layout":1,"doorbell":{"pressId":"","at":1}}`, "reported.doorbell.pressId"},
		{"doorbell at as string", `{"layout":1,"doorbell":{"pressId":"p","at":"now"}}`, "reported.doorbell.at"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := lock.ParseReported([]byte(c.body))
			var de *domain.Error
			if !errors.As(err, &de) {
				t.Fatalf("ParseReported error = %v, want a *domain.Error", err)
			}
			var fields []string
			for _, d := range de.Details {
				fields = append(fields, d.Field)
			}
			if diff := cmp.Diff([]string{c.field}, fields); diff != "" || de.Code != domain.Invalid {
				t.Errorf("ParseReported: code %s, fields (-want +got):\n%s", de.Code, diff)
			}
			if !strings.HasPrefix(de.Message, c.field+" ") {
				t.Errorf("message %q does not name %s", de.Message, c.field)
			}
		})
	}
}

// TestParseReportedBounds: exactly at the bounds is accepted.
func TestParseReportedBounds(t *testing.T) {
	body := `{"layout":1,"battery":0,"keys":{"` + strings.Repeat("k", 128) + `":{"at":0,"index":-9007199254740991}},` +
		`"open":{"r":{"at":1,"result":"failed","error":"` + strings.Repeat("é", 200) + `"}},"firmware":"` + strings.Repeat("f", 64) + `"}`
	if _, err := lock.ParseReported([]byte(body)); err != nil {
		t.Errorf("ParseReported at the bounds: %v", err)
	}
}
