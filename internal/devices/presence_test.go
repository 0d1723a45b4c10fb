package devices_test

import (
	"strings"
	"testing"

	"github.com/spkey-dev/spkey/internal/devices"
)

func TestParsePresence(t *testing.T) {
	for _, c := range []struct {
		payload string
		online  bool
		ok      bool
	}{
		{`{"online":true}`, true, true},
		{`{"online":false}`, false, true},
		{`{"online":true,"reason":"boot"}`, true, true},
		{`{}`, false, false},
		{`{"online":"yes"}`, false, false},
		{`{"online":null}`, false, false},
		{`true`, false, false},
		{`not json`, false, false},
		{`{"online":true,"pad":"` + strings.Repeat("x", 300) + `"}`, false, false},
	} {
		online, err := devices.ParsePresence([]byte(c.payload))
		if (err == nil) != c.ok || online != c.online {
			t.Errorf("ParsePresence(%.40s) = %v, %v; want %v, ok %v", c.payload, online, err, c.online, c.ok)
		}
	}
	if got := devices.PresenceTopic("lock-1"); got != "$aws/things/lock-1/presence" {
		t.Errorf("PresenceTopic = %q", got)
	}
}
