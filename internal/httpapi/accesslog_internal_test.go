package httpapi

import "testing"

// TestParseAccessLog: the names and sample rates `--access-log` takes,
// and which answers each setting logs.
func TestParseAccessLog(t *testing.T) {
	for _, c := range []struct {
		in         string
		want       AccessLog
		ok200, ok4 bool // a 200 is always (or never) logged; a 404 is logged
	}{
		{"all", AccessLogAll, true, true},
		{"ALL", AccessLogAll, true, true},
		{"errors", AccessLogErrors, false, true},
		{"off", AccessLogOff, false, false},
		{"none", AccessLogOff, false, false},
		{"1", AccessLog{Errors: true, Sample: 1}, true, true},
		{"0", AccessLogErrors, false, true},
	} {
		got, err := ParseAccessLog(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseAccessLog(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		for range 100 {
			if got.logs(200) != c.ok200 || got.logs(404) != c.ok4 || got.logs(500) != c.ok4 {
				t.Fatalf("%q: logs(200) %v, logs(404) %v, logs(500) %v", c.in, got.logs(200), got.logs(404), got.logs(500))
			}
		}
		if back, err := ParseAccessLog(got.String()); err != nil || back != got {
			t.Errorf("%q: String %q reads back as %+v, %v", c.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", "sometimes", "-0.1", "1.5", "NaN"} {
		if _, err := ParseAccessLog(bad); err == nil {
			t.Errorf("ParseAccessLog(%q) accepted", bad)
		}
	}
	// A rate logs about that share of the successes, and every error.
	a, err := ParseAccessLog("0.25")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 10000 {
		if a.logs(200) {
			n++
		}
		if !a.logs(503) {
			t.Fatal("0.25 dropped a 503")
		}
	}
	if n < 2000 || n > 3000 {
		t.Errorf("0.25 logged %d of 10000 successes", n)
	}
}
