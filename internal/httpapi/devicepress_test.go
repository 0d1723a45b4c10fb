package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestDevicePressRings: a doorbell press the lock reports rings the lock's
// residents through the doorbell pipeline (source device), once per
// pressId however often the lock reports it.
func TestDevicePressRings(t *testing.T) {
	forBackends(t, func(t *testing.T, b testenv.Backend) {
		e := newDevEnv(t, b, testenv.Options{})
		l := e.newSim(t, sim.Config{BatteryEvery: 50 * time.Millisecond})
		e.connect(t, l)
		path := "/locks/" + strconv.Itoa(e2eLock)
		rings := func() []any {
			got := wireOK(t, e.srv, wireReq{Method: "GET", Path: path + "/doorbell/rings", Key: e.key}, http.StatusOK)
			list, _ := got["rings"].([]any)
			return list
		}

		wireOK(t, e.srv, wireReq{Method: "GET", Path: "/users/by-email?email=ann@users.test", Key: e.key}, http.StatusOK)
		wireOK(t, e.srv, wireReq{Method: "POST", Path: path + "/AddResident", Key: e.key, Body: map[string]any{"name": "Ann", "email": "ann@users.test"}}, http.StatusOK)
		second, err := l.Press()
		if err != nil {
			t.Fatal(err)
		}
		var list []any
		for deadline := time.Now().Add(e2eWait); ; time.Sleep(20 * time.Millisecond) {
			if list = rings(); len(list) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rings after the press %s: %v", second, list)
			}
		}
		ring, _ := list[0].(map[string]any)
		if ring["source"] != "device" || ring["lockId"] != float64(e2eLock) {
			t.Errorf("ring %v: want source device", ring)
		}
		// The lock keeps reporting (its battery) while its press stays in
		// reported: still one ring.
		reports := e.lines.count("battery ")
		for deadline := time.Now().Add(e2eWait); e.lines.count("battery ") < reports+3; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no battery reports; lock printed:\n%s", e.lines)
			}
		}
		e.waitShadow(t, "the battery reports", func(d shadowSections) bool { return d.Reported["battery"] != float64(100) })
		if n := len(rings()); n != 1 {
			t.Errorf("%d rings after reports repeating press %s, want 1", n, second)
		}
	})
}
