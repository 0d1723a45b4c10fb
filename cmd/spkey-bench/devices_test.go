package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestBenchDevices runs the device scenarios of issue 13 with small
// counts on SQLite: every round trip succeeded, the devices child
// connected them all, and the goal and the memory lines are reported (not
// the figures: they depend on the machine).
func TestBenchDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-quick", "-db", "sqlite", "-d", "300ms", "-open-locks", "4", "-devices", "50",
		"-only", "open-rtt,mqtt-rtt,devices-10k", "-dir", t.TempDir()}
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"p99(" + scOpenRTT("sqlite", 1) + ") = ", "p99(" + scOpenRTT("sqlite", 4) + ") = ",
		"devices: 50 connected in ", "memory per connected device", scDevAddKey + "/" + scDevAddKeyNone + " = ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bench output lacks %q:\n%s", want, got)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "p99(open-rtt") && !strings.Contains(l, "errors 0)") {
			t.Errorf("failed round trips: %s", l)
		}
	}
	if strings.Contains(got, "first error of") {
		t.Errorf("errors:\n%s", got)
	}
}
