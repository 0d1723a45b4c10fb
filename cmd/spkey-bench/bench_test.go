package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestMain lets scenario (m) re-run this test binary as its child process
// (runMemoryChild), as it re-runs spkey-bench outside tests.
func TestMain(m *testing.M) {
	if os.Getenv(memoryChildEnv) != "" {
		cmdline.Main("spkey-bench", run)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchQuick runs the whole bench for a few hundred milliseconds per
// scenario and checks that every scenario and ratio is reported (not the
// figures: they depend on the machine).
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	// A deadline against a hang, not a timing assertion: under -race beside
	// the other packages' tests every scenario is many times slower.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-quick", "-db", "sqlite", "-d", "200ms", "-replay-events", "100", "-dir", t.TempDir()}
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		scA, scB, scC, scCRate(1000), scD, scE("sqlite", 1), scE("sqlite", 8),
		scFAccept("sqlite"), scFDeliver("sqlite"), scG("sqlite"),
		scHDeliver("sqlite"), scHCommands("sqlite"), scHDelay("sqlite"), scINone("sqlite"), scIDead("sqlite"), scIBeside("sqlite"), scILive("sqlite"),
		scJBaseline("sqlite"), scJDuring("sqlite"), scJWhileQueueing("sqlite"), scJWhileDelivering("sqlite"), scJQueue("sqlite"), scJDeliver("sqlite"),
		scJDuring("sqlite") + "/" + scJBaseline("sqlite") + ": ",
		scR("sqlite"), "rebuild-sqlite = ", "memory-growth-sqlite = ",
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

// TestBenchWebhooks runs the webhook scenarios (h, i) and the replay
// scenarios (j) with small counts on every backend and checks that every
// delivery arrived, that the replay was queued in full and that every
// ratio is reported (not the figures: they depend on the machine).
func TestBenchWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	got, backends := runOnBackends(t, 5*time.Minute, "-quick", "-only", "webhooks,replay", "-d", "300ms", "-wh-commands", "40", "-replay-events", "300")
	line := func(prefix string) string {
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return l
			}
		}
		t.Errorf("bench output lacks a line %q:\n%s", prefix, got)
		return ""
	}
	for _, b := range backends {
		b := string(b)
		if l := line(scHDeliver(b) + " = "); !strings.Contains(l, "missing 0)") {
			t.Errorf("deliveries missing: %s", l)
		}
		if l := line("p50/p99(" + scHDelay(b) + ") = "); !strings.Contains(l, "errors 0)") {
			t.Errorf("commands whose deliveries did not all arrive: %s", l)
		}
		line(scIDead(b) + "/" + scINone(b) + " = ")
		line(scIBeside(b) + "/" + scINone(b) + " = ")
		line(scILive(b) + "/" + scINone(b) + " = ")
		line(scJQueue(b) + " = ")
		for _, name := range []string{scJDuring(b), scJWhileQueueing(b), scJWhileDelivering(b)} {
			line(name + "/" + scJBaseline(b) + ": ")
		}
	}
	// Every command's event reached all 10 webhooks, and no command failed.
	for _, line := range strings.Split(got[strings.Index(got, "medians across"):], "\n") {
		if f := strings.Fields(line); len(f) == 7 && (strings.Contains(f[0], "webhooks") || strings.Contains(f[0], "replay")) && f[5] != "0" {
			t.Errorf("errors in %s", line)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"-db", "postgres"}, // no URL anywhere
		{"-db", "mysql"},
		{"-c", "0"},
		{"-conns", "5000"},
		{"extra"},
		{"-replay-events", "0"},
		{"-replay-chunk", "-1"},
		{"-rounds", "11"}, // (j) replays once a round: over a tenant's hourly limit
	} {
		var out, errOut bytes.Buffer
		if err := run(ctx, args, nil, &out, &errOut); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

// TestBenchHelp: -h (and --help) succeeds, prints the usage on stdout,
// nothing on stderr, and does nothing else: no file appears in the working
// folder.
func TestBenchHelp(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, nil, &out, &errOut)
		if err != nil || !strings.Contains(out.String(), "Usage: spkey-bench") || errOut.Len() != 0 {
			t.Errorf("%v: err %v, stdout %q, stderr %q; want nil and the usage on stdout", args, err, out.String(), errOut.String())
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%v created %s in the working folder", args, entries[0].Name())
		}
	}
}

// TestBenchPG runs the PostgreSQL twins of b, c and d (issue 12) briefly
// and checks that they ran without errors and that their ratios are
// reported against their targets.
func TestBenchPG(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("no PostgreSQL configured (SPKEY_TEST_POSTGRES_URL)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // against a hang (see TestBenchQuick)
	defer cancel()
	args := []string{"-quick", "-only", "a-http,b-pg,c-pg,d-pg", "-d", "200ms", "-rate", "200", "-dir", t.TempDir(), "-db", "postgres", "-pg", os.Getenv("SPKEY_TEST_POSTGRES_URL")}
	var out, errOut bytes.Buffer
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"c-pg/d-pg = ", "b-pg/a = ", "c-pg/a = ", "p99(c-pg @200/s) = "} {
		if !strings.Contains(got, want) {
			t.Errorf("bench output lacks %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(got[strings.Index(got, "medians across"):], "\n") {
		if f := strings.Fields(line); len(f) == 7 && strings.Contains(f[0], "-pg-") && (f[5] != "0" || f[1] == "0") {
			t.Errorf("errors or nothing done in %s", line)
		}
	}
}

// TestBenchRebuildMemory runs the rebuild (r) and memory (m) scenarios
// with small sizes on every backend and checks that they ran and report
// their figures (not the figures themselves).
func TestBenchRebuildMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	got, backends := runOnBackends(t, 4*time.Minute, "-quick", "-only", "r-rebuild,m-memory", "-rebuild-events", "1500", "-mem-users", "1500", "-mem-commands", "500")
	for _, b := range backends {
		b := string(b)
		for _, want := range []string{"rebuild-" + b + " = ", "memory-growth-" + b + " = "} {
			if !strings.Contains(got, want) {
				t.Errorf("bench output lacks %q:\n%s", want, got)
			}
		}
		seeded := 0
		for _, l := range strings.Split(got, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[0] == scM(b) && strings.Contains(l, "RSS ") {
				seeded++
			}
		}
		if seeded != 3 {
			t.Errorf("%d lines of %s with an RSS, want 3:\n%s", seeded, scM(b), got)
		}
	}
	for _, line := range strings.Split(got[strings.Index(got, "medians across"):], "\n") {
		if f := strings.Fields(line); len(f) == 7 && strings.HasPrefix(f[0], "r-rebuild") && (f[5] != "0" || f[1] == "0") {
			t.Errorf("errors or nothing done in %s", line)
		}
	}
	if strings.Contains(got, "memory child") {
		t.Errorf("the memory child failed:\n%s", got)
	}
}

// TestBenchWrk runs a, b and c with -wrk when wrk is installed and checks
// that both load generators' figures are reported and that wrk's c
// requests all succeeded (its script keeps each lock's add/remove in
// step with the server).
func TestBenchWrk(t *testing.T) {
	if testing.Short() {
		t.Skip("bench smoke run skipped in -short mode")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // against a hang (see TestBenchQuick)
	defer cancel()
	args := []string{"-quick", "-only", "a-http,b-residents,c-residents-write", "-wrk", "-d", "1s", "-rounds", "1", "-dir", t.TempDir(), "-db", "sqlite"}
	var out, errOut bytes.Buffer
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	got := out.String()
	for _, sc := range []string{scA, scB, scC} {
		var line string
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), sc+" ") && strings.Contains(l, "wrk/in-process = ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("no wrk line for %s:\n%s", sc, got)
		} else if !strings.Contains(line, "non-2xx 0)") {
			t.Errorf("wrk got failures: %s", line)
		}
	}
}

// runOnBackends runs the bench with args in a temporary folder on SQLite
// and, when one is configured, PostgreSQL too, within timeout (against a
// hang, not a timing assertion: see TestBenchQuick), and returns its
// output and the backends it ran on.
func runOnBackends(t *testing.T, timeout time.Duration, args ...string) (string, []testenv.Backend) {
	t.Helper()
	backends := testenv.Backends(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append(args, "-dir", t.TempDir(), "-db", "sqlite")
	if slices.Contains(backends, testenv.Postgres) {
		args[len(args)-1] = "both"
		args = append(args, "-pg", os.Getenv("SPKEY_TEST_POSTGRES_URL"))
	}
	var out, errOut bytes.Buffer
	if err := run(ctx, args, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	return out.String(), backends
}
