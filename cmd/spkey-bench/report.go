package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

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

// reportExtras is what the report prints besides the rounds' samples.
type reportExtras struct {
	mem []memResult // scenario (m)
	wrk []wrkResult // -wrk
	// fleet is scenario devices-10k (nil when it did not run).
	fleet *devFleetBench
}

func report(w io.Writer, c benchConfig, dir, pgInfo, load0 string, names []string, samples []sample, x reportExtras, took time.Duration) {
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
	if m := meds[scDRate(c.rate)]; m.rate > 0 {
		fmt.Fprintf(w, "  p99(d @%d/s) = %s (p50 %s, achieved %.0f commits/s, errors %d)   (the storage floor of p99(c @%d/s): raw single-row commits at the same rate)\n",
			c.rate, msf(m.p99), msf(m.p50), m.rate, m.errs, c.rate)
	}
	pgReport(w, c, meds, ratio, ran)
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
	rebuildReport(w, meds)
	memoryReport(w, c, x.mem)
	wrkReport(w, meds, x.wrk)
	devRTTReport(w, c, meds)
	openFloorReport(w, meds)
	devFleetReport(w, x.fleet, meds)
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
