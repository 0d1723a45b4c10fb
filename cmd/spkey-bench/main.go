// Command spkey-bench measures spkey against its own ceilings: a bare
// HTTP handler, raw SQLite commits, the event store alone, and real
// in-process spkey nodes (built by internal/server, as `spkey serve`
// builds its own) under HTTP load. See docs/benchmarks.md.
//
//	go run ./cmd/spkey-bench [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/cmdline"
)

func main() { cmdline.Main("spkey-bench", run) }

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

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
	// Rebuild scenario (r; rebuild.go).
	rebuildEvents int
	// Memory scenario (m; memory.go).
	memUsers, memCommands int
	memoryChild           string // the backend a child process measures (internal)
	// wrk cross-check of a, b and c (wrk.go).
	wrk bool
	// Device scenarios of issue 13 (devices.go).
	openLocks    int
	sqliteSync   string
	devices      int
	devicesChild string // the broker the devices child process connects to (internal)
}

// run is the whole program; tests call it directly. -h prints the usage
// on stdout and succeeds.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	c, err := parse(args, cmdline.Env(environ), stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.memoryChild != "" {
		return memoryChild(ctx, c, stdout)
	}
	if c.devicesChild != "" {
		return deviceChildMain(ctx, c.devicesChild, os.Stdin, stdout)
	}
	return runBench(ctx, c, stdout, stderr)
}

// parse reads the command line and the environment into a checked
// benchConfig.
func parse(args []string, env map[string]string, stdout, stderr io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("spkey-bench", flag.ContinueOnError)
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
	fs.IntVar(&c.rebuildEvents, "rebuild-events", 100000, "events in the history whose read models scenario (r) rebuilds")
	fs.IntVar(&c.memUsers, "mem-users", 130000, "users of the node whose memory scenario (m) measures (with 1,000 locks of 10 residents)")
	fs.IntVar(&c.memCommands, "mem-commands", 100000, "commands of each of the two equal runs of scenario (m)")
	fs.StringVar(&c.memoryChild, "memory-child", "", "internal: measure scenario (m) on this backend in this process and print the figures")
	fs.IntVar(&c.openLocks, "open-locks", 100, "sim locks (and bare MQTT clients) of the concurrent run of the device round trips (open-rtt, mqtt-rtt; the other run has 1)")
	fs.StringVar(&c.sqliteSync, "sqlite-sync", "FULL", "SQLite synchronous pragma of the device scenarios' nodes (open-rtt, devices-10k): FULL is spkey's; NORMAL or OFF only show what durability costs")
	fs.IntVar(&c.devices, "devices", 10000, "devices (raw MQTT clients in a child process) connected in scenario devices-10k")
	fs.StringVar(&c.devicesChild, "devices-child", "", "internal: connect the devices given on standard input to this broker address and hold them")
	fs.BoolVar(&c.wrk, "wrk", false, "also drive a, b and c with wrk (16 connections, 2 threads; needs wrk on PATH) and report both load generators' figures")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: -d 1s -rounds 1 -streams 1000 -ring-locks 4 -ring-streams 20 -wh-commands 100 -replay-events 500 -rebuild-events 3000 -mem-users 3000 -mem-commands 2000 -open-locks 10 -devices 300 unless given")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: spkey-bench [flags]

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
  r  a full rebuild of every read model from a history of -rebuild-events
     events (locks, users, residents added and removed, rings): events/s
  m  the resident set size of a node (in a process of its own) with 1,000
     locks, -mem-users users and 10,000 residents, after -mem-commands
     commands, and after as many again: the growth between the two runs
     (on PostgreSQL only when -only names m-memory)
  open-rtt  OpenLock through a sim lock on the embedded broker until GET
     actions/{id}?wait=10s answers succeeded, 1 and -open-locks locks, SQLite
     and PostgreSQL; mqtt-rtt: the bare MQTT publish/receive round trip on
     the same broker (the baseline; goal p99 <= 3ms + 2 x its p99);
     open-rtt-floor-sqlite-c1: two serial 15-page SQLite commits (FULL),
     the storage floor of one open
  devices-10k  -devices raw MQTT devices connected (child process): the
     server's memory per device, AddKey/s connected vs none
With -wrk, wrk (16 connections, 2 threads) drives a, b and c as well.
and prints the medians, the ratios b/a, c/a, c/d and the floors they are held to.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := cmdline.Parse(fs, args, stdout, stderr)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, fmt.Errorf("bench: unexpected argument %q", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		// The smoke sizes, for every flag not given.
		for name, v := range map[string]string{"d": "1s", "rounds": "1", "streams": "1000", "ring-locks": "4", "ring-streams": "20",
			"wh-commands": "100", "open-locks": "10", "devices": "300", "replay-events": "500", "rebuild-events": "3000", "mem-users": "3000", "mem-commands": "2000"} {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return c, fmt.Errorf("bench: -quick: %w", err)
				}
			}
		}
	}
	for _, s := range strings.Split(writers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("bench: -c must be a comma-separated list of positive integers")
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
		return c, fmt.Errorf("bench: -db must be sqlite, postgres or both")
	case c.db != "sqlite" && c.pg == "":
		return c, fmt.Errorf("bench: -db %s needs a PostgreSQL URL: -pg, SPKEY_DB or SPKEY_TEST_POSTGRES_URL", c.db)
	case c.rounds < 1 || c.d <= 0 || c.conns < 1 || c.streams < 1 || c.rate < 1:
		return c, fmt.Errorf("bench: -rounds, -d, -conns, -streams and -rate must be positive")
	case c.ringLocks < 1 || c.ringStreams < 1 || c.whCommands < 1 || c.replayEvents < 1:
		return c, fmt.Errorf("bench: -ring-locks, -ring-streams, -wh-commands and -replay-events must be positive")
	case c.sqliteSync != "FULL" && c.sqliteSync != "NORMAL" && c.sqliteSync != "OFF":
		return c, fmt.Errorf("bench: -sqlite-sync must be FULL, NORMAL or OFF")
	case c.openLocks < 1 || c.devices < 1:
		return c, fmt.Errorf("bench: -open-locks and -devices must be positive")
	case c.rebuildEvents < 1 || c.memUsers < 1 || c.memCommands < 1:
		return c, fmt.Errorf("bench: -rebuild-events, -mem-users and -mem-commands must be positive")
	case c.replayChunk < 0:
		return c, fmt.Errorf("bench: -replay-chunk must not be negative")
	case c.rounds > app.DefaultReplaysPerHour && c.wants(replayNames(c.backends()...)...):
		return c, fmt.Errorf("bench: scenario (j) replays once a round, and a tenant may start %d replays an hour: run at most %d rounds, or leave (j) out with -only", app.DefaultReplaysPerHour, app.DefaultReplaysPerHour)
	case c.conns > benchLocks:
		return c, fmt.Errorf("bench: -conns must be at most %d (each connection owns locks of its own)", benchLocks)
	case slices.Max(c.writers) > c.streams:
		return c, fmt.Errorf("bench: -c must not exceed -streams (each writer owns streams of its own)")
	}
	if c.pg != "" && c.db == "sqlite" {
		c.pg = ""
	}
	return c, nil
}
