package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// Scenario (m), issue 12: the memory of a node. A child process (this
// program again, with -memory-child) builds a whole node as `spkey serve`
// does (internal/server, HTTP on loopback, the outbox engine), seeds it
// through the app in-process (1,000 locks, -mem-users users, 10 residents
// a lock), then sends -mem-commands AddResident/RemoveResident requests
// over HTTP (the mix of scenario c), then as many again. After each stage
// it collects garbage, returns freed pages to the system and prints its
// resident set size and Go heap. The process holds the node and its load
// generator (-conns keep-alive clients) and nothing else.
func scM(backend string) string { return "m-memory-" + backend }

// memoryChildEnv marks the child process (tests re-run their own binary,
// whose TestMain dispatches on it).
const memoryChildEnv = "SPKEY_BENCH_MEMORY_CHILD"

// memResidents is the residents of each lock of scenario (m).
const memResidents = 10

// Noise of scenario (m): growth of the resident set between the two equal
// runs within max(memNoiseBytes, memNoiseFrac of the first) counts as none.
const (
	memNoiseBytes = 8 << 20
	memNoiseFrac  = 0.05
)

// memStage is one measurement of the child.
type memStage struct {
	name       string
	rss, heap  int64 // bytes: VmRSS; Go heap in use (runtime.MemStats.HeapInuse)
	took       time.Duration
	goroutines int
}

// memResult is scenario (m) on one backend.
type memResult struct {
	backend string
	locks   int
	users   int
	stages  []memStage // seeded, run 1, run 2
	err     error
}

// memoryScenarios runs scenario (m) for every backend -only selects, one
// child process each, and returns their figures.
func memoryScenarios(ctx context.Context, c benchConfig, dir string, progress func(string, ...any)) []memResult {
	var out []memResult
	for _, b := range c.backends() {
		// On PostgreSQL the set-up alone takes minutes (130,000 commands
		// at a few hundred a second here): only when -only names it.
		if !c.wants(scM(b)) || (b == "postgres" && c.only == "") {
			continue
		}
		progress("%s: measuring in a child process (%d users, 2 x %d commands)", scM(b), c.memUsers, c.memCommands)
		r := runMemoryChild(ctx, c, b, filepath.Join(dir, "memory-"+b))
		for _, s := range r.stages {
			progress("%s: %-8s RSS %s  heap %s  (took %s)", scM(b), s.name, mb(s.rss), mb(s.heap), s.took.Round(time.Millisecond))
		}
		out = append(out, r)
	}
	return out
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

// runMemoryChild runs this program again as the child of scenario (m) on
// backend and reads its figures.
func runMemoryChild(ctx context.Context, c benchConfig, backend, dir string) memResult {
	r := memResult{backend: backend}
	exe, err := os.Executable()
	if err != nil {
		r.err = err
		return r
	}
	db := "sqlite"
	if backend == "postgres" {
		db = "postgres"
	}
	args := []string{"-memory-child", backend, "-db", db, "-dir", dir, "-conns", strconv.Itoa(c.conns),
		"-mem-users", strconv.Itoa(c.memUsers), "-mem-commands", strconv.Itoa(c.memCommands)}
	if c.pg != "" {
		args = append(args, "-pg", c.pg)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.err = err
		return r
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), memoryChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.err = fmt.Errorf("memory child: %w: %s", err, strings.TrimSpace(stderr.String()))
		return r
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "size":
			r.locks, _ = strconv.Atoi(f[1])
			r.users, _ = strconv.Atoi(f[2])
		case len(f) == 6 && f[0] == "stage":
			var s memStage
			s.name = f[1]
			s.rss, _ = strconv.ParseInt(f[2], 10, 64)
			s.heap, _ = strconv.ParseInt(f[3], 10, 64)
			ns, _ := strconv.ParseInt(f[4], 10, 64)
			s.took = time.Duration(ns)
			s.goroutines, _ = strconv.Atoi(f[5])
			r.stages = append(r.stages, s)
		}
	}
	if len(r.stages) != 3 {
		r.err = fmt.Errorf("memory child printed %d stages, want 3: %s", len(r.stages), strings.TrimSpace(stderr.String()))
	}
	return r
}

// memoryChild is the child process of scenario (m) on c.memoryChild.
func memoryChild(ctx context.Context, c benchConfig, stdout io.Writer) error {
	n, err := openNodeStore(ctx, c, c.memoryChild, c.dir, store.SQLiteOptions{})
	if err != nil {
		return err
	}
	defer n.drop()
	sp, err := startSpkeyOn(ctx, n.st, filepath.Join(c.dir, "node"), server.Config{Notify: outbox.Config{Node: "bench-mem"}})
	if err != nil {
		n.st.Close()
		return err
	}
	sp.closeStore = func() { _ = n.st.Close() }
	defer sp.close()
	n.svc = sp.svc
	key, err := n.register(ctx)
	if err != nil {
		return err
	}
	locks := min(benchLocks, max(1, c.memUsers/(memResidents+3)))
	perLock := c.memUsers / locks
	fmt.Fprintf(stdout, "size %d %d\n", locks, locks*perLock)

	stage := func(name string, began time.Time) {
		took := time.Since(began)
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(stdout, "stage %s %d %d %d %d\n", name, vmRSS(), ms.HeapInuse, took.Nanoseconds(), runtime.NumGoroutine())
	}

	began := time.Now()
	ls, err := n.createLocks(ctx, locks, perLock, c.conns)
	if err != nil {
		return err
	}
	if err := ls.addResidents(ctx, memResidents, c.conns); err != nil {
		return err
	}
	stage("seeded", began)

	// The commands: lock i+1 adds and removes users[i][memResidents] in
	// turn, over HTTP with the tenant's key, as scenario c does.
	toggled := make([]string, locks)
	for i := range toggled {
		toggled[i] = ls.users[i][memResidents]
	}
	t := benchTenant{s: sp, json: http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {key}}, firstLock: 1, users: toggled}
	workers := min(c.conns, locks)
	tog := newTenantToggler(t, locks, workers)
	client := newLoadClient(workers)
	defer client.CloseIdleConnections()
	for _, name := range []string{"run1", "run2"} {
		began := time.Now()
		err := parallel(ctx, workers, func(w int) error {
			mine := c.memCommands/workers + btoi(w < c.memCommands%workers)
			for range mine {
				if err := httpDo(client, tog.next(w)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		stage(name, began)
	}
	return nil
}

// memoryReport prints scenario (m): the three figures of each backend and
// the growth between the two equal runs.
func memoryReport(w io.Writer, c benchConfig, results []memResult) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmemory (m): a node in a process of its own, with its load generator (%d keep-alive clients); RSS = VmRSS after runtime.GC and debug.FreeOSMemory, heap = Go HeapInuse\n", c.conns)
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "  %s: %v\n", scM(r.backend), r.err)
			continue
		}
		labels := []string{
			fmt.Sprintf("seeded: %d locks, %d users, %d residents", r.locks, r.users, r.locks*memResidents),
			fmt.Sprintf("after %d commands", c.memCommands),
			fmt.Sprintf("after %d more commands", c.memCommands),
		}
		for i, s := range r.stages {
			fmt.Fprintf(w, "  %-16s %-46s RSS %9s   heap %9s   goroutines %4d   (took %s)\n", scM(r.backend), labels[i], mb(s.rss), mb(s.heap), s.goroutines, s.took.Round(time.Millisecond))
		}
		g := r.stages[2].rss - r.stages[1].rss
		gh := r.stages[2].heap - r.stages[1].heap
		noise := max(int64(memNoiseBytes), int64(memNoiseFrac*float64(r.stages[1].rss)))
		fmt.Fprintf(w, "  memory-growth-%s = %+.1f MB RSS (%+.1f%%), %+.1f MB heap between the two equal runs   target: within noise (<= %s)   %s\n",
			r.backend, float64(g)/(1<<20), 100*float64(g)/float64(r.stages[1].rss), float64(gh)/(1<<20), mb(noise), passFail(g <= noise))
	}
}
