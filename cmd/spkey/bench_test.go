package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestBenchQuick runs the whole bench for a few hundred milliseconds per
// scenario and checks that every scenario and ratio is reported (not the
// figures: they depend on the machine).
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"bench", "-quick", "-db", "sqlite", "-d", "200ms", "-dir", t.TempDir()}
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		scA, scB, scC, scCRate(1000), scD, scE("sqlite", 1), scE("sqlite", 8),
		scFAccept("sqlite"), scFDeliver("sqlite"), scG("sqlite"),
		"b/a = ", "c/a = ", "c/d = ", "p99(c @1000/s) = ", "p99(g-doorbell-stream-sqlite) = ",
		"medians across 1 round(s)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bench output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "postgres") {
		t.Errorf("-db sqlite ran PostgreSQL:\n%s", got)
	}
	if !strings.Contains(got, "PASS") && !strings.Contains(got, "FAIL") {
		t.Errorf("no PASS/FAIL verdicts:\n%s", got)
	}
}

func TestBenchFlags(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"bench", "-db", "postgres"}, // no URL anywhere
		{"bench", "-db", "mysql"},
		{"bench", "-c", "0"},
		{"bench", "-conns", "5000"},
		{"bench", "extra"},
	} {
		var out, errOut bytes.Buffer
		if err := run(ctx, args, nil, &out, &errOut); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
