package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
)

// The scenario names, printed in the table and asserted by the test.
const (
	scA = "a-http-ceiling"
	scB = "b-residents-get"
	scC = "c-residents-write"
	scD = "d-sqlite-raw-insert"
)

func scCRate(rate int) string { return fmt.Sprintf("c-residents-write@%d/s", rate) }

func scDRate(rate int) string { return fmt.Sprintf("d-sqlite-raw-insert@%d/s", rate) }

func scE(backend string, writers int) string { return fmt.Sprintf("e-es-%s-c%d", backend, writers) }

// The floors the report checks against.
const (
	floorBA     = 0.5
	floorCD     = 1.5
	floorCRateP = 10 * time.Millisecond
)

// benchLocks is how many locks (and resident users) scenario (c) spreads
// its writes over.
const benchLocks = 1000

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

	progress("setting up the PostgreSQL twins of b, c and d")
	pgScs, warmPG, closePG, err := pgScenarios(ctx, c, dir)
	if err != nil {
		return err
	}
	defer closePG()

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
	progress("setting up the rebuild scenarios")
	rebuilds, closeRebuilds, err := rebuildScenarios(ctx, c, dir, progress)
	if err != nil {
		return err
	}
	defer closeRebuilds()
	mem := memoryScenarios(ctx, c, dir, progress)
	progress("setting up the device scenarios")
	devRTT, closeDevRTT, err := devRTTScenarios(ctx, c, dir)
	if err != nil {
		return err
	}
	defer closeDevRTT()
	floor, closeFloor, err := openFloorScenario(ctx, c, dir)
	if err != nil {
		return err
	}
	defer closeFloor()
	devRTT = append(devRTT, floor...)
	devFleet, devAlso, fleet, closeFleet, err := devFleetScenarios(ctx, c, dir, progress)
	if err != nil {
		return err
	}
	defer closeFleet()
	maps.Copy(also, devAlso)

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
		{scDRate(c.rate), func(ctx context.Context) (result, error) {
			var one sync.Mutex // one connection: the commits queue for it
			return openLoop(ctx, c.rate, c.d, func() error { one.Lock(); defer one.Unlock(); return raw.insert(ctx) }), nil
		}},
		{scC, func(ctx context.Context) (result, error) {
			return closedLoop(ctx, c.conns, c.d, func(w int) error { return httpDo(client, cstate.next(w)) }), nil
		}},
		{scCRate(c.rate), func(ctx context.Context) (result, error) {
			return constantRate(ctx, c.rate, c.d, c.conns, cstate.targeter()), nil
		}},
	}
	scenarios = append(scenarios, pgScs...)
	for _, t := range targets {
		for _, w := range c.writers {
			scenarios = append(scenarios, scenario{scE(t.backend, w), func(ctx context.Context) (result, error) {
				return t.run(ctx, w, c.d), nil
			}})
		}
	}
	scenarios = append(scenarios, doorbell...)
	scenarios = append(scenarios, webhooks...)
	scenarios = append(scenarios, rebuilds...)
	scenarios = append(scenarios, devRTT...)
	scenarios = append(scenarios, devFleet...)

	// Warm up the HTTP paths once, unmeasured: keep-alive connections,
	// database pools, the page cache.
	warm := min(c.d/5, time.Second)
	progress("warming up for %s per HTTP scenario", warm)
	closedLoop(ctx, c.conns, warm, func(int) error { return httpDo(client, bare.get()) })
	closedLoop(ctx, c.conns, warm, func(int) error { return httpDo(client, sp.residentsReq()) })
	closedLoop(ctx, c.conns, warm, func(w int) error { return httpDo(client, cstate.next(w)) })
	warmPG(ctx)

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
	var wrk []wrkResult
	if c.wrk {
		if wrk, err = wrkRuns(ctx, c, wrkTargets{bare: bare, sp: sp}, progress); err != nil {
			return err
		}
	}
	report(stdout, c, dir, pgInfo, load0, names, samples, reportExtras{mem: mem, wrk: wrk, fleet: fleet}, time.Since(began))
	return nil
}
