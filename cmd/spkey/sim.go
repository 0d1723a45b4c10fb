package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

const simUsage = "sim --api URL --api-key KEY --locks N [--first-lock 1001] [--hubs N] [--mqtt-addr HOST:PORT | --mqtts-addr HOST:PORT] [flags]"

// maxSimLocks bounds --locks, maxSimHubs --hubs.
const (
	maxSimLocks = 1000
	maxSimHubs  = 100
)

// SimHubID is the id of the n-th simulated hub (from 1): fixed, so that a
// second run finds the hubs of the first.
func SimHubID(n int64) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// connectWait bounds each simulated lock's first connection.
const connectWait = 30 * time.Second

// simFlags are `spkey sim`'s settings.
type simFlags struct {
	api, apiKey         string
	locks, first, hubs  int64
	mqttAddr, mqttsAddr string
	failRate            float64
	delay, battery      time.Duration
	flap, maxAge        time.Duration
}

// cmdSim is `spkey sim`: simulated locks that create themselves through
// the API (a tenant's key), fetch their device credentials there, connect
// to the broker and play shadow layout v1 until ctx ends (Ctrl-C). A line
// "LOCK_ID" (or "all") on stdin presses that lock's doorbell.
func cmdSim(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	var f simFlags
	cmd := command{name: "sim", usage: simUsage, flags: []string{}, extra: func(fs *flag.FlagSet) {
		fs.StringVar(&f.api, "api", "http://127.0.0.1:8787", "spkey's API base URL (spkey serve's default address)")
		fs.StringVar(&f.apiKey, "api-key", "", "a tenant's API key (env SPKEY_API_KEY): creates the locks and fetches their credentials")
		fs.Int64Var(&f.locks, "locks", 1, fmt.Sprintf("how many locks to simulate (1-%d)", maxSimLocks))
		fs.Int64Var(&f.first, "first-lock", 1001, "the first lock id; the others follow it")
		fs.Int64Var(&f.hubs, "hubs", 0, fmt.Sprintf("how many hubs to simulate too (0-%d; ids %s, …; provisioning them needs a super API key)", maxSimHubs, SimHubID(1)))
		fs.StringVar(&f.mqttAddr, "mqtt-addr", "", "the broker's plain listener (password login); default: the endpoint the API names, else 127.0.0.1:1884")
		fs.StringVar(&f.mqttsAddr, "mqtts-addr", "", "the broker's TLS listener: log in with client certificates instead of passwords")
		fs.Float64Var(&f.failRate, "fail-rate", 0, "share (0-1) of open/writeKey requests that fail with \""+sim.FailureMessage+"\"")
		fs.DurationVar(&f.delay, "delay", 200*time.Millisecond, "how long an open or writeKey request takes")
		fs.DurationVar(&f.battery, "battery-every", time.Minute, "how often the battery drops by 1% and is reported (0: never)")
		fs.DurationVar(&f.flap, "flap-every", 0, "go offline, then online again, every this long (0: stay online)")
		fs.DurationVar(&f.maxAge, "max-age", time.Hour, "refuse (failed, \"expired\") a request older than this (0: never)")
	}}
	_, _, err := parse(cmd, args, cmdline.Env(environ), stdout, stderr)
	if err != nil {
		return err
	}
	if f.apiKey == "" {
		f.apiKey = cmdline.Env(environ)["SPKEY_API_KEY"]
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("sim: %w (usage: spkey %s)", err, simUsage)
	}

	out := &linePrinter{w: stdout}
	api := &sim.API{Base: f.api, Key: f.apiKey}
	locks := map[int64]*sim.Lock{}
	defer func() {
		for _, l := range locks {
			l.Close()
		}
		if len(locks) > 0 {
			out.print(fmt.Sprintf("sim: stopped (%d locks offline)", len(locks)))
		}
	}()
	for id := f.first; id < f.first+f.locks; id++ {
		l, err := f.startLock(ctx, api, id, out.print)
		if err != nil {
			return err
		}
		locks[id] = l
	}
	var hubs []*sim.Hub
	defer func() {
		for _, h := range hubs {
			h.Close()
		}
	}()
	for n := int64(1); n <= f.hubs; n++ {
		h, err := f.startHub(ctx, api, SimHubID(n), out.print)
		if err != nil {
			return err
		}
		hubs = append(hubs, h)
	}
	if f.hubs > 0 {
		out.print(fmt.Sprintf("sim: %d hub(s) online (%s..%s)", f.hubs, SimHubID(1), SimHubID(f.hubs)))
	}
	if f.locks > 0 {
		out.print(fmt.Sprintf("sim: %d lock(s) online (lock-%d..lock-%d); type a lock id (or all) and Enter to press its doorbell; Ctrl-C stops",
			f.locks, f.first, f.first+f.locks-1))
	}

	var wg sync.WaitGroup
	if f.flap > 0 {
		for _, l := range locks {
			wg.Add(1)
			go func() { defer wg.Done(); flap(ctx, l, f.flap, out.print) }()
		}
	}
	go readPresses(os.Stdin, locks, out.print)
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (f *simFlags) validate() error {
	switch {
	case f.apiKey == "":
		return errors.New("--api-key (or SPKEY_API_KEY) is required: a tenant's API key")
	case f.locks < 0 || f.locks > maxSimLocks:
		return fmt.Errorf("--locks must be 0-%d", maxSimLocks)
	case f.hubs < 0 || f.hubs > maxSimHubs:
		return fmt.Errorf("--hubs must be 0-%d", maxSimHubs)
	case f.locks+f.hubs == 0:
		return errors.New("nothing to simulate: give --locks or --hubs")
	case f.first < 1 || f.first > domain.MaxID-f.locks:
		return errors.New("--first-lock must be a positive lock id")
	case f.failRate < 0 || f.failRate > 1:
		return errors.New("--fail-rate must be between 0 and 1")
	case f.delay < 0 || f.battery < 0 || f.flap < 0 || f.maxAge < 0:
		return errors.New("--delay, --battery-every, --flap-every and --max-age must not be negative")
	case f.mqttAddr != "" && f.mqttsAddr != "":
		return errors.New("give --mqtt-addr (passwords) or --mqtts-addr (certificates), not both")
	}
	for _, a := range []string{f.mqttAddr, f.mqttsAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("broker address %q must be host:port", a)
		}
	}
	return nil
}

// startLock creates lock id if missing, fetches its credentials and
// connects it.
func (f *simFlags) startLock(ctx context.Context, api *sim.API, id int64, print func(string)) (*sim.Lock, error) {
	created, err := api.EnsureLock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if created {
		print(fmt.Sprintf("%s: lock %d created", lock.ThingName(id), id))
	}
	cfg := sim.Config{Delay: f.delay, FailRate: f.failRate, MaxAge: f.maxAge, BatteryEvery: f.battery, Print: print}
	if f.mqttsAddr != "" {
		c, err := api.Credentials(ctx, id, "certificate")
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		host, _, _ := net.SplitHostPort(f.mqttsAddr)
		if cfg.TLS, err = c.TLS(host); err != nil {
			return nil, err
		}
		cfg.Thing, cfg.Broker = c.ThingName, "ssl://"+f.mqttsAddr
	} else {
		c, err := api.Credentials(ctx, id, "password")
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		addr := f.mqttAddr
		if addr == "" {
			addr = c.MQTTEndpoint
		}
		if addr == "" {
			addr = "127.0.0.1:1884"
		}
		cfg.Thing, cfg.Broker, cfg.Username, cfg.Password = c.ThingName, "tcp://"+addr, c.Username, c.Password
	}
	l, err := sim.New(cfg)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	if err := l.Start(cctx); err != nil {
		l.Close()
		return nil, fmt.Errorf("sim: %s did not connect to %s: %w", cfg.Thing, cfg.Broker, err)
	}
	return l, nil
}

// startHub provisions hub id if missing (a super key), fetches its
// password (or certificate) and connects it.
func (f *simFlags) startHub(ctx context.Context, api *sim.API, id string, print func(string)) (*sim.Hub, error) {
	created, err := api.EnsureHub(ctx, id, "SIM-"+id[len(id)-6:], "spkey-sim-hub")
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if created {
		print(fmt.Sprintf("%s: hub provisioned", id))
	}
	cfg := sim.HubConfig{Delay: f.delay, FailRate: f.failRate, Print: print}
	kind := "password"
	if f.mqttsAddr != "" {
		kind = "certificate"
	}
	c, err := api.HubCredentials(ctx, id, kind)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	cfg.Thing = c.ThingName
	if f.mqttsAddr != "" {
		host, _, _ := net.SplitHostPort(f.mqttsAddr)
		if cfg.TLS, err = c.TLS(host); err != nil {
			return nil, err
		}
		cfg.Broker = "ssl://" + f.mqttsAddr
	} else {
		addr := f.mqttAddr
		if addr == "" {
			addr = c.MQTTEndpoint
		}
		if addr == "" {
			addr = "127.0.0.1:1884"
		}
		cfg.Broker, cfg.Username, cfg.Password = "tcp://"+addr, c.Username, c.Password
	}
	h, err := sim.NewHub(cfg)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	if err := h.Start(cctx); err != nil {
		h.Close()
		return nil, fmt.Errorf("sim: hub %s did not connect to %s: %w", id, cfg.Broker, err)
	}
	return h, nil
}

// flap takes l offline and online again every every, until ctx ends.
func flap(ctx context.Context, l *sim.Lock, every time.Duration, print func(string)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l.Connected() {
			l.Offline()
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, connectWait)
		if err := l.Online(cctx); err != nil && ctx.Err() == nil {
			print(fmt.Sprintf("%s: reconnect failed: %v", l.Thing(), err))
		}
		cancel()
	}
}

// readPresses presses doorbells from r: a line with a lock id presses that
// lock's, "all" every lock's. It ends at the end of r.
func readPresses(r io.Reader, locks map[int64]*sim.Lock, print func(string)) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		word := strings.TrimSpace(sc.Text())
		if word == "" {
			continue
		}
		var targets []*sim.Lock
		if word == "all" {
			for _, l := range locks {
				targets = append(targets, l)
			}
		} else if id, err := strconv.ParseInt(strings.TrimPrefix(word, "lock-"), 10, 64); err == nil && locks[id] != nil {
			targets = append(targets, locks[id])
		} else {
			print(fmt.Sprintf("sim: %q is not one of the simulated locks: type a lock id or all", word))
			continue
		}
		for _, l := range targets {
			if _, err := l.Press(); err != nil {
				print(err.Error())
			}
		}
	}
}

// linePrinter writes whole lines, stamped, from several goroutines.
type linePrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *linePrinter) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05.000"), line)
}
