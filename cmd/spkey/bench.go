package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
)

// benchConfig is the settings of one `spkey bench` run.
type benchConfig struct {
	rounds  int
	d       time.Duration
	conns   int
	writers []int
	streams int
	db      string // sqlite, postgres or both: the backends of scenario (e)
	pg      string
	rate    int
	dir     string
	quick   bool
	cpuProf string
	only    string
	// Doorbell scenarios (f, g; bench_doorbell.go).
	ringLocks   int
	ringStreams int
	// Partner webhook scenarios (h, i; bench_webhooks.go).
	whCommands int
	// Webhook replay scenarios (j; bench_replay.go).
	replayEvents int
	replayChunk  int
}

// The scenario names, printed in the table and asserted by the test.
const (
	scA = "a-http-ceiling"
	scB = "b-residents-get"
	scC = "c-residents-write"
	scD = "d-sqlite-raw-insert"
)

func scCRate(rate int) string { return fmt.Sprintf("c-residents-write@%d/s", rate) }

func scE(backend string, writers int) string { return fmt.Sprintf("e-es-%s-c%d", backend, writers) }

// The floors the report checks against.
const (
	floorBA     = 0.5
	floorCD     = 1.5
	floorCRateP = 20 * time.Millisecond
)

// benchLocks is how many locks (and resident users) scenario (c) spreads
// its writes over.
const benchLocks = 1000

func cmdBench(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	env := envMap(environ)
	fs := flag.NewFlagSet("spkey bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := benchConfig{}
	var writers string
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each round runs every scenario once, baselines interleaved with subjects")
	fs.DurationVar(&c.d, "d", 5*time.Second, "duration of each measurement")
	fs.IntVar(&c.conns, "conns", 32, "concurrent keep-alive connections of the closed-loop HTTP load generator")
	fs.StringVar(&writers, "c", "1,8", "event-store writers per measurement of scenario (e), comma-separated")
	fs.IntVar(&c.streams, "streams", 10000, "event streams scenario (e) appends to")
	fs.StringVar(&c.db, "db", "", "backends of scenarios (e), (f) and (g): sqlite, postgres or both (default both when a PostgreSQL URL is known, else sqlite)")
	fs.StringVar(&c.pg, "pg", "", "PostgreSQL URL for scenarios (e), (f) and (g) (default $SPKEY_DB, then $SPKEY_TEST_POSTGRES_URL); a fresh schema is created and dropped")
	fs.IntVar(&c.rate, "rate", 1000, "requests/s of the constant-rate run of scenario (c)")
	fs.StringVar(&c.dir, "dir", "", "folder for the temporary databases (default the system temp folder; it must be a real disk for fsync to count)")
	fs.StringVar(&c.cpuProf, "cpuprofile", "", "write a CPU profile of the measured rounds (server and load generator alike) to this file")
	fs.StringVar(&c.only, "only", "", "run only the scenarios whose names contain one of these comma-separated words (ratios then lack their other side)")
	fs.IntVar(&c.ringLocks, "ring-locks", 20, "locks of 10 residents each that scenario (f) rings, every resident streaming")
	fs.IntVar(&c.ringStreams, "ring-streams", 100, "residents of the lock scenario (g) rings, each with a live stream open")
	fs.IntVar(&c.whCommands, "wh-commands", 1000, "commands scenario (h) sends, each delivered to 10 webhooks")
	fs.IntVar(&c.replayEvents, "replay-events", 20000, "commands in the history of the tenant whose webhook replay scenario (j) replays")
	fs.IntVar(&c.replayChunk, "replay-chunk", 0, "deliveries of a replay queued per transaction in (j) (default the server's, 200: at most what fills the webhook's window)")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: -d 1s -rounds 1 -streams 1000 -ring-locks 4 -ring-streams 20 -wh-commands 100 -replay-events 500 unless given")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: spkey bench [flags]

Measures, in one run and interleaved over -rounds rounds:
  a  a bare net/http handler answering 100 bytes of JSON (the HTTP ceiling)
  b  GET /locks/{id}/residents on a real in-process spkey (SQLite, synchronous=FULL)
  c  AddResident/RemoveResident spread over 1,000 locks (closed loop, then constant rate)
  d  single-row INSERT transactions into a fresh SQLite file, one goroutine
  e  the event store alone: one event per append, 1 and 8 writers, SQLite and PostgreSQL
  f  RingDoorbell on locks of 10 streaming residents (closed loop): rings accepted/s
     and rings delivered to every resident's live stream/s, SQLite and PostgreSQL
  g  one ring at a time to a lock whose residents all stream: delay from the
     answer to each stream's event (p50, p99), SQLite and PostgreSQL
  h  commands whose events go to 10 webhooks at live loopback receivers:
     deliveries/s and the delay from a command's answer to each receipt
  i  the command mix of (c) with no webhook, with 10 webhooks at a dead
     receiver (never answers; 2s timeout) and at live ones: API throughput
  j  the command mix of (c) of one tenant, alone and while another tenant's
     webhook replays its whole history (-replay-events): latency and req/s
and prints the medians, the ratios b/a, c/a, c/d and the floors they are held to.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("bench: unexpected argument %q", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		if !set["d"] {
			c.d = time.Second
		}
		if !set["rounds"] {
			c.rounds = 1
		}
		if !set["streams"] {
			c.streams = 1000
		}
		if !set["ring-locks"] {
			c.ringLocks = 4
		}
		if !set["ring-streams"] {
			c.ringStreams = 20
		}
		if !set["wh-commands"] {
			c.whCommands = 100
		}
		if !set["replay-events"] {
			c.replayEvents = 500
		}
	}
	for _, s := range strings.Split(writers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bench: -c must be a comma-separated list of positive integers")
		}
		c.writers = append(c.writers, n)
	}
	if c.pg == "" {
		c.pg = env["SPKEY_DB"]
	}
	if c.pg == "" {
		c.pg = env["SPKEY_TEST_POSTGRES_URL"]
	}
	if c.db == "" {
		c.db = "sqlite"
		if c.pg != "" {
			c.db = "both"
		}
	}
	switch {
	case c.db != "sqlite" && c.db != "postgres" && c.db != "both":
		return fmt.Errorf("bench: -db must be sqlite, postgres or both")
	case c.db != "sqlite" && c.pg == "":
		return fmt.Errorf("bench: -db %s needs a PostgreSQL URL: -pg, SPKEY_DB or SPKEY_TEST_POSTGRES_URL", c.db)
	case c.rounds < 1 || c.d <= 0 || c.conns < 1 || c.streams < 1 || c.rate < 1:
		return fmt.Errorf("bench: -rounds, -d, -conns, -streams and -rate must be positive")
	case c.ringLocks < 1 || c.ringStreams < 1 || c.whCommands < 1 || c.replayEvents < 1:
		return fmt.Errorf("bench: -ring-locks, -ring-streams, -wh-commands and -replay-events must be positive")
	case c.replayChunk < 0:
		return fmt.Errorf("bench: -replay-chunk must not be negative")
	case c.rounds > app.DefaultReplaysPerHour && c.wants(replayNames(c.backends()...)...):
		return fmt.Errorf("bench: scenario (j) replays once a round, and a tenant may start %d replays an hour: run at most %d rounds, or leave (j) out with -only", app.DefaultReplaysPerHour, app.DefaultReplaysPerHour)
	case c.conns > benchLocks:
		return fmt.Errorf("bench: -conns must be at most %d (each connection owns locks of its own)", benchLocks)
	case slices.Max(c.writers) > c.streams:
		return fmt.Errorf("bench: -c must not exceed -streams (each writer owns streams of its own)")
	}
	if c.pg != "" && c.db == "sqlite" {
		c.pg = ""
	}
	return runBench(ctx, c, stdout, stderr)
}

// scenario is one measurement, repeated every round.
type scenario struct {
	name string
	run  func(ctx context.Context) (result, error)
}

// alsoMeasured is what one run of a scenario measures besides its own
// result (the doorbell's deliveries): names, and results returning them in
// that order after each run.
type alsoMeasured struct {
	names   []string
	results func() []result
}

// wants reports whether -only selects any of names (everything is
// selected without -only). The filter of runBench also matches what a
// scenario measures besides itself; wants lets a costly setup be skipped.
func (c benchConfig) wants(names ...string) bool {
	if c.only == "" {
		return true
	}
	for _, w := range strings.Split(c.only, ",") {
		w = strings.TrimSpace(w)
		for _, name := range names {
			if w != "" && strings.Contains(name, w) {
				return true
			}
		}
	}
	return false
}

// sample is one scenario's figures in one round.
type sample struct {
	scenario string
	round    int
	res      result
	cores    float64 // CPU time of this process over wall time during the run
}

func runBench(ctx context.Context, c benchConfig, stdout, stderr io.Writer) (err error) {
	began, load0 := time.Now(), loadAvg()
	dir, err := os.MkdirTemp(c.dir, "spkey-bench-")
	if err != nil {
		return fmt.Errorf("bench: temp folder: %w", err)
	}
	defer os.RemoveAll(dir)
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	progress("setting up in %s", dir)
	bare, err := startBare()
	if err != nil {
		return err
	}
	defer bare.close()
	sp, err := startSpkey(ctx, filepath.Join(dir, "server"))
	if err != nil {
		return err
	}
	defer sp.close()
	if err := sp.seed(ctx, benchLocks, c.conns); err != nil {
		return err
	}
	raw, err := openRawSQLite(ctx, filepath.Join(dir, "raw", "raw.db"))
	if err != nil {
		return err
	}
	defer raw.close()

	var targets []*esTarget
	if c.db == "sqlite" || c.db == "both" {
		t, err := openESSQLite(ctx, filepath.Join(dir, "es", "es.db"), c.streams)
		if err != nil {
			return err
		}
		defer t.close()
		targets = append(targets, t)
	}
	pgInfo := ""
	if c.db == "postgres" || c.db == "both" {
		t, info, err := openESPostgres(ctx, c.pg, c.streams)
		if err != nil {
			return err
		}
		defer t.close()
		targets = append(targets, t)
		pgInfo = info
	}

	progress("setting up the doorbell scenarios")
	doorbell, also, dbInfo, closeDoorbell, err := doorbellScenarios(ctx, c, dir)
	if err != nil {
		return err
	}
	defer closeDoorbell()
	if pgInfo == "" {
		pgInfo = dbInfo
	}
	progress("setting up the webhook scenarios")
	webhooks, whAlso, closeWebhooks, err := webhookScenarios(ctx, c, dir)
	if err != nil {
		return err
	}
	defer closeWebhooks()
	maps.Copy(also, whAlso)

	client := newLoadClient(c.conns)
	defer client.CloseIdleConnections()
	cstate := newResidentToggler(sp, benchLocks, c.conns)

	scenarios := []scenario{
		{scA, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(int) error { return httpDo(client, bare.get()) }), nil
		}},
		{scB, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(int) error { return httpDo(client, sp.residentsReq()) }), nil
		}},
		{scD, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, 1, c.d, func(int) error { return raw.insert(ctx) }), nil
		}},
		{scC, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(w int) error { return httpDo(client, cstate.next(w)) }), nil
		}},
		{scCRate(c.rate), func(ctx context.Context) (result, error) {
			return constantRate(ctx, c.rate, c.d, c.conns, cstate.targeter()), nil
		}},
	}
	for _, t := range targets {
		for _, w := range c.writers {
			scenarios = append(scenarios, scenario{scE(t.backend, w), func(ctx context.Context) (result, error) {
				return t.run(ctx, w, c.d), nil
			}})
		}
	}
	scenarios = append(scenarios, doorbell...)
	scenarios = append(scenarios, webhooks...)

	// Warm up the HTTP paths once, unmeasured: keep-alive connections,
	// database pools, the page cache.
	warm := min(c.d/5, time.Second)
	progress("warming up for %s per HTTP scenario", warm)
	closedLoop(ctx, c.conns, warm, func(int) error { return httpDo(client, bare.get()) })
	closedLoop(ctx, c.conns, warm, func(int) error { return httpDo(client, sp.residentsReq()) })
	closedLoop(ctx, c.conns, warm, func(w int) error { return httpDo(client, cstate.next(w)) })

	if c.only != "" {
		scenarios = slices.DeleteFunc(scenarios, func(sc scenario) bool {
			for _, w := range strings.Split(c.only, ",") {
				w = strings.TrimSpace(w)
				for _, name := range append([]string{sc.name}, also[sc.name].names...) {
					if w != "" && strings.Contains(name, w) {
						return false
					}
				}
			}
			return true
		})
	}
	if c.cpuProf != "" {
		f, err := os.Create(c.cpuProf)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var samples []sample
	for r := 1; r <= c.rounds; r++ {
		order := slices.Clone(scenarios)
		if r%2 == 0 {
			// Alternate the order so that slow drift (WAL growth, page
			// cache, thermal) does not always favour the same side.
			slices.Reverse(order)
		}
		for _, sc := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			cpu0, wall0 := cpuTime(), time.Now()
			res, err := sc.run(ctx)
			if err != nil {
				return fmt.Errorf("bench %s: %w", sc.name, err)
			}
			cores := (cpuTime() - cpu0).Seconds() / time.Since(wall0).Seconds()
			progress("round %d %-26s %9.0f ops/s  p50 %s  p99 %s  errors %d  cpu %.2f", r, sc.name, res.rate(), ms(res.pct(0.50)), ms(res.pct(0.99)), res.errs, cores)
			samples = append(samples, sample{scenario: sc.name, round: r, res: res, cores: cores})
			if x, ok := also[sc.name]; ok {
				for i, res := range x.results() {
					progress("round %d %-26s %9.0f ops/s  p50 %s  p99 %s  errors %d", r, x.names[i], res.rate(), ms(res.pct(0.50)), ms(res.pct(0.99)), res.errs)
					samples = append(samples, sample{scenario: x.names[i], round: r, res: res, cores: cores})
				}
			}
		}
	}
	names := make([]string, 0, len(scenarios))
	for _, sc := range scenarios {
		names = append(names, sc.name)
		names = append(names, also[sc.name].names...)
	}
	report(stdout, c, dir, pgInfo, load0, names, samples, time.Since(began))
	return nil
}

// med holds a scenario's medians across rounds.
type med struct {
	rate, p50, p99, p999 float64 // ops/s; latencies in seconds
	cores                float64
	errs                 int
	firstErr             error
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func msf(sec float64) string { return fmt.Sprintf("%.2fms", sec*1000) }

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func report(w io.Writer, c benchConfig, dir, pgInfo, load0 string, names []string, samples []sample, took time.Duration) {
	fmt.Fprintf(w, "spkey bench %s — %s\n", version, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine:  %s %s/%s, GOMAXPROCS=%d, NumCPU=%d, CPU %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel())
	if load0 != "" {
		fmt.Fprintf(w, "load avg: %s at start, %s at end (1 min; the bench itself adds up to ~%d, more means neighbours shared the cores)\n", load0, loadAvg(), runtime.NumCPU())
	}
	fmt.Fprintf(w, "storage:  %s (%s); SQLite WAL, synchronous=FULL, busy_timeout=10000\n", filepath.Dir(dir), fsType(filepath.Dir(dir)))
	if pgInfo != "" {
		fmt.Fprintf(w, "postgres: %s\n", pgInfo)
	}
	fmt.Fprintf(w, "flags:    -rounds %d -d %s -conns %d -c %s -streams %d -db %s -rate %d -ring-locks %d -ring-streams %d -wh-commands %d -replay-events %d -replay-chunk %d\n", c.rounds, c.d, c.conns, joinInts(c.writers), c.streams, c.db, c.rate, c.ringLocks, c.ringStreams, c.whCommands, c.replayEvents, c.replayChunk)
	fmt.Fprintf(w, "load:     closed loop of %d keep-alive net/http clients in-process (a, b, c, f); vegeta at %d req/s (c@rate); 1 goroutine (d, g); -c goroutines (e)\n", c.conns, c.rate)
	fmt.Fprintf(w, "req/s:    HTTP requests/s for a, b, c; committed transactions/s for d; appends/s for e (one event each); rings/s for f and g\n")
	fmt.Fprintf(w, "doorbell: f rings %d locks of %d residents, %d live streams open; f-accept: answers and their latency; f-deliver: rings on all %d streams, latency answer to last stream\n", c.ringLocks, ringResidents, c.ringLocks*ringResidents, ringResidents)
	fmt.Fprintf(w, "          g rings one lock of %d streaming residents one ring at a time; p50/p99 per receipt, from the answer to the stream's event\n", c.ringStreams)
	fmt.Fprintf(w, "cpu:      cores this process kept busy during the run (server, load generator and database driver together)\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tround\treq/s\tp50\tp99\tp99.9\trequests\terrors\tcpu\t")
	for _, s := range samples {
		r := s.res
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t%.2f\t\n", s.scenario, s.round, r.rate(), ms(r.pct(0.50)), ms(r.pct(0.99)), ms(r.pct(0.999)), r.n, r.errs, s.cores)
	}
	tw.Flush()

	meds := map[string]med{}
	for _, name := range names {
		var rates, p50, p99, p999, cores []float64
		m := med{}
		for _, s := range samples {
			if s.scenario != name {
				continue
			}
			rates = append(rates, s.res.rate())
			p50 = append(p50, s.res.pct(0.50).Seconds())
			p99 = append(p99, s.res.pct(0.99).Seconds())
			p999 = append(p999, s.res.pct(0.999).Seconds())
			cores = append(cores, s.cores)
			m.errs += s.res.errs
			if m.firstErr == nil {
				m.firstErr = s.res.firstErr
			}
		}
		m.rate, m.p50, m.p99, m.p999, m.cores = median(rates), median(p50), median(p99), median(p999), median(cores)
		meds[name] = m
	}
	fmt.Fprintf(w, "\nmedians across %d round(s)\n", c.rounds)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tp50\tp99\tp99.9\terrors\tcpu\t")
	for _, name := range names {
		m := meds[name]
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%.2f\t\n", name, m.rate, msf(m.p50), msf(m.p99), msf(m.p999), m.errs, m.cores)
	}
	tw.Flush()
	for _, name := range names {
		if m := meds[name]; m.firstErr != nil {
			fmt.Fprintf(w, "  first error of %s: %v\n", name, m.firstErr)
		}
	}

	ratio := func(x, y string) float64 {
		if meds[y].rate == 0 {
			return 0
		}
		return meds[x].rate / meds[y].rate
	}
	ba, ca, cd := ratio(scB, scA), ratio(scC, scA), ratio(scC, scD)
	crate := meds[scCRate(c.rate)]
	ran := func(names ...string) bool {
		for _, n := range names {
			if meds[n].rate == 0 {
				return false
			}
		}
		return true
	}
	fmt.Fprintf(w, "\nratios (of median req/s) and floors\n")
	// A ratio whose scenarios did not run (-only) is left out, not failed.
	if ran(scB, scA) {
		fmt.Fprintf(w, "  b/a = %.3f   floor >= %.1f   %s   (residents GET vs bare HTTP)\n", ba, floorBA, passFail(ba >= floorBA))
	}
	if ran(scC, scA) {
		fmt.Fprintf(w, "  c/a = %.3f   (no floor)      (resident writes vs bare HTTP)\n", ca)
	}
	if ran(scC, scD) {
		fmt.Fprintf(w, "  c/d = %.3f   floor >= %.1f   %s   (resident writes vs raw single-row SQLite commits)\n", cd, floorCD, passFail(cd >= floorCD))
	}
	if ran(scCRate(c.rate)) {
		okRate := crate.p99 <= floorCRateP.Seconds() && crate.errs == 0
		fmt.Fprintf(w, "  p99(c @%d/s) = %s (p50 %s, achieved %.0f req/s, errors %d)   floor <= %s   %s\n",
			c.rate, msf(crate.p99), msf(crate.p50), crate.rate, crate.errs, ms(floorCRateP), passFail(okRate))
	}
	for _, t := range []string{"sqlite", "postgres"} {
		if len(c.writers) >= 2 {
			lo, hi := scE(t, c.writers[0]), scE(t, c.writers[len(c.writers)-1])
			if meds[lo].rate > 0 {
				fmt.Fprintf(w, "  %s/%s = %.2f   (event-store scaling with writers)\n", hi, lo, meds[hi].rate/meds[lo].rate)
			}
		}
	}
	doorbellReport(w, c, meds)
	webhookReport(w, c, meds)
	replayReport(w, c, meds)
	fmt.Fprintf(w, "\nbench took %s\n", took.Round(time.Second))
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
