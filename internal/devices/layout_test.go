package devices_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestLockLayout: a lock's classic shadow takes only reports that fit the
// lock shadow layout (README, "Lock firmware"); a report that breaks it is
// answered 400 on /update/rejected, naming the field, and stores nothing.
// Other things and a lock's named shadows keep plain AWS rules.
func TestLockLayout(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			d := e.dial(t, "lock-7")
			refused := func(payload, field string) {
				t.Helper()
				got := d.request(t, "update", payload, 1)
				if got[0].Topic != d.topic("update/rejected") {
					t.Fatalf("%s: answered on %s (%s), want update/rejected", payload, got[0].Topic, got[0].Payload)
				}
				var rej struct {
					Code        int
					Message     string
					ClientToken string
				}
				if err := json.Unmarshal([]byte(got[0].Payload), &rej); err != nil {
					t.Fatal(err)
				}
				if rej.Code != 400 || !strings.Contains(rej.Message, field) || rej.ClientToken != "c" {
					t.Errorf("%s: rejected %+v, want 400 naming %s with clientToken c", payload, rej, field)
				}
			}
			refused(`{"state":{"reported":{"battery":80}},"clientToken":"c"}`, "reported.layout")
			if _, found := storedShadow(t, e.st, "lock-7", ""); found {
				t.Fatal("a report without the layout was stored")
			}
			// A report that fits: accepted, stored (accepted + documents).
			got := d.request(t, "update", `{"state":{"reported":{"layout":1,"battery":80,"lock":"locked"}},"clientToken":"c"}`, 2)
			if got[0].Topic != d.topic("update/accepted") {
				t.Fatalf("a fitting report answered on %s: %s", got[0].Topic, got[0].Payload)
			}
			refused(`{"state":{"reported":{"battery":150}},"clientToken":"c"}`, "reported.battery")
			refused(`{"state":{"reported":{"layout":2}},"clientToken":"c"}`, "reported.layout")
			doc, found := storedShadow(t, e.st, "lock-7", "")
			if !found || doc.Version != 1 || fmt.Sprint(doc.Reported["battery"]) != "80" {
				t.Errorf("stored after the refusals: found %v, version %d, reported %v; want version 1 with battery 80", found, doc.Version, doc.Reported)
			}
			// A named shadow of the lock and another thing have no layout.
			got = d.request(t, "name/extra/update", `{"state":{"reported":{"anything":true}}}`, 2)
			if got[0].Topic != d.topic("name/extra/update/accepted") {
				t.Errorf("named shadow: answered on %s: %s", got[0].Topic, got[0].Payload)
			}
			o := e.dial(t, "sensor-1")
			got = o.request(t, "update", `{"state":{"reported":{"anything":true}}}`, 2)
			if got[0].Topic != o.topic("update/accepted") {
				t.Errorf("another thing: answered on %s: %s", got[0].Topic, got[0].Payload)
			}
		})
	}
}
