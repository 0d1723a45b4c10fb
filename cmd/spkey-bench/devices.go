package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// The device scenarios of issue 13 (a): OpenLock through a simulated lock
// on the embedded broker, against a bare MQTT round trip on the same
// broker in the same run. One node per backend; locks 1..N run a sim lock
// each (Delay 0), locks N+1..2N are the things of the bare MQTT clients.

// scOpenRTT is OpenLock → the device gets the desired state → it reports
// → GET /locks/{id}/actions/{rid}?wait=10s answers succeeded, with conc
// locks each in a closed loop of its own.
func scOpenRTT(backend string, conc int) string {
	return fmt.Sprintf("open-rtt-%s-c%d", shortBackend(backend), conc)
}

// scMQTTRTT is the baseline: a paho client publishes (QoS 1) to a topic
// of its own thing it subscribes to (QoS 1), on the same broker: the
// delay from Publish to the receipt.
func scMQTTRTT(backend string, conc int) string {
	return fmt.Sprintf("mqtt-rtt-%s-c%d", shortBackend(backend), conc)
}

func shortBackend(b string) string {
	if b == "postgres" {
		return "pg"
	}
	return b
}

// The goal of issue 13 (a): p99(open) <= goalOpenFixed + 2 × p99(bare).
const goalOpenFixed = 3 * time.Millisecond

// devWait bounds every wait of the device scenarios' setup and of one
// round trip.
const devWait = 30 * time.Second

// devNode is a real spkey node with the embedded broker (plain listener on
// a loopback port, device CA in dir) over backend's store, and a tenant.
type devNode struct {
	*spkeyServer
	backend string
	key     string
	hdr     http.Header
	client  *http.Client
	mqtt    string // tcp://127.0.0.1:port
}

// startDevNode opens backend's store in dir (or a fresh PostgreSQL
// schema), serves a node with the device layer on it and registers a
// tenant with locks 1..locks (seedTenant).
func startDevNode(ctx context.Context, c benchConfig, backend, dir string, locks, conns int) (*devNode, error) {
	n, err := openNodeStore(ctx, c, backend, dir, store.SQLiteOptions{Synchronous: c.sqliteSync})
	if err != nil {
		return nil, err
	}
	sp, err := startSpkeyOn(ctx, n.st, dir, server.Config{Notify: outbox.Config{Node: "bench-dev-" + backend},
		Devices: server.DevicesConfig{MQTTAddr: "127.0.0.1:0", CADir: filepath.Join(dir, "ca")}})
	if err != nil {
		n.close()
		return nil, err
	}
	sp.closeStore = n.close
	d := &devNode{spkeyServer: sp, backend: backend, client: newLoadClient(conns), mqtt: "tcp://" + sp.node.MQTTAddr()}
	t, err := sp.seedTenant(ctx, "bench-dev-org", 1, locks, min(conns, 8))
	if err != nil {
		d.close()
		return nil, err
	}
	d.hdr, d.key = t.json, t.json.Get("X-Api-Key")
	return d, nil
}

func (d *devNode) close() {
	d.spkeyServer.close()
	d.client.CloseIdleConnections()
}

// post sends body to path as the tenant and decodes a 2xx answer into out.
func (d *devNode) do(method, path string, body []byte, out any) error {
	resp, err := d.client.Do(newRequest(method, d.base+path, body, d.hdr))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, truncate(b, 300))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

// openRTT is one OpenLock of lock id and the waits on its action until it
// finishes; an action that does not succeed is an error.
func (d *devNode) openRTT(id int64) error {
	p := "/locks/" + strconv.FormatInt(id, 10)
	var ans struct {
		RequestID string `json:"requestId"`
		Offline   bool   `json:"offline"`
	}
	if err := d.do(http.MethodPost, p+"/OpenLock", []byte(`{}`), &ans); err != nil {
		return err
	}
	if ans.RequestID == "" {
		return fmt.Errorf("OpenLock of lock %d: no requestId in the answer", id)
	}
	deadline := time.Now().Add(devWait)
	for {
		var a struct {
			Status string `json:"status"`
			Error  any    `json:"error"`
		}
		if err := d.do(http.MethodGet, p+"/actions/"+ans.RequestID+"?wait=10s", nil, &a); err != nil {
			return err
		}
		switch a.Status {
		case "succeeded":
			return nil
		case "pending", "queued", "delivered":
			if time.Now().After(deadline) {
				return fmt.Errorf("action %s of lock %d still %s after %v (offline at the command: %v)", ans.RequestID, id, a.Status, devWait, ans.Offline)
			}
		default:
			return fmt.Errorf("action %s of lock %d: %s (%v)", ans.RequestID, id, a.Status, a.Error)
		}
	}
}

// credentials issues password credentials for locks first..first+n-1
// through the API, 8 at a time.
func (d *devNode) credentials(ctx context.Context, first int64, n int) ([]sim.Credentials, error) {
	api := &sim.API{Base: d.base, Key: d.key, HTTP: d.client}
	out := make([]sim.Credentials, n)
	err := parallel(ctx, min(8, n), func(w int) error {
		for i := w; i < n && ctx.Err() == nil; i += min(8, n) {
			c, err := api.Credentials(ctx, first+int64(i), "password")
			if err != nil {
				return err
			}
			out[i] = c
		}
		return nil
	})
	return out, err
}

// rttLane is one bare MQTT client: it subscribes to a topic of its own
// thing and publishes to it; got receives the sequence numbers it reads.
type rttLane struct {
	c     paho.Client
	topic string
	got   chan uint64
	seq   uint64
}

func newRTTLane(ctx context.Context, broker string, cr sim.Credentials) (*rttLane, error) {
	l := &rttLane{topic: "$aws/things/" + cr.ThingName + "/bench/rtt", got: make(chan uint64, 64)}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(cr.ThingName).SetUsername(cr.Username).SetPassword(cr.Password).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second)
	l.c = paho.NewClient(opts)
	if err := waitToken(ctx, l.c.Connect()); err != nil {
		return nil, fmt.Errorf("bench: connect %s: %w", cr.ThingName, err)
	}
	err := waitToken(ctx, l.c.Subscribe(l.topic, 1, func(_ paho.Client, m paho.Message) {
		if n, err := strconv.ParseUint(string(m.Payload()), 10, 64); err == nil {
			select {
			case l.got <- n:
			default:
			}
		}
	}))
	if err != nil {
		l.c.Disconnect(0)
		return nil, fmt.Errorf("bench: subscribe %s: %w", l.topic, err)
	}
	return l, nil
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(devWait):
		return errors.New("timed out")
	}
}

// roundTrip publishes the next sequence number and waits until it comes
// back.
func (l *rttLane) roundTrip() error {
	l.seq++
	want := l.seq
	l.c.Publish(l.topic, 1, false, strconv.FormatUint(want, 10))
	timeout := time.NewTimer(devWait)
	defer timeout.Stop()
	for {
		select {
		case n := <-l.got:
			if n == want {
				return nil
			}
		case <-timeout.C:
			return fmt.Errorf("publish %d on %s: not received within %v", want, l.topic, devWait)
		}
	}
}

// devRTTBench is scenario (a) on one backend.
type devRTTBench struct {
	node  *devNode
	sims  []*sim.Lock
	lanes []*rttLane
}

func (b *devRTTBench) close() {
	for _, l := range b.lanes {
		l.c.Disconnect(0)
	}
	for _, s := range b.sims {
		s.Close()
	}
	if b.node != nil {
		b.node.close()
	}
}

// newDevRTTBench starts backend's node, locks 1..locks with a sim lock
// each and locks+1..2*locks with a bare client each, and runs one
// OpenLock through every sim lock (which also waits until it is
// connected and subscribed).
func newDevRTTBench(ctx context.Context, c benchConfig, backend, dir string, locks int) (b *devRTTBench, err error) {
	b = &devRTTBench{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.node, err = startDevNode(ctx, c, backend, dir, 2*locks, locks); err != nil {
		return nil, err
	}
	crs, err := b.node.credentials(ctx, 1, 2*locks)
	if err != nil {
		return nil, err
	}
	for i := range locks {
		cr := crs[i]
		l, err := sim.New(sim.Config{Thing: cr.ThingName, Broker: b.node.mqtt, Username: cr.Username, Password: cr.Password})
		if err != nil {
			return nil, err
		}
		b.sims = append(b.sims, l)
		sctx, cancel := context.WithTimeout(ctx, devWait)
		err = l.Start(sctx)
		cancel()
		if err != nil {
			return nil, err
		}
		lane, err := newRTTLane(ctx, b.node.mqtt, crs[locks+i])
		if err != nil {
			return nil, err
		}
		b.lanes = append(b.lanes, lane)
	}
	err = parallel(ctx, locks, func(w int) error { return b.node.openRTT(int64(w + 1)) })
	if err != nil {
		return nil, fmt.Errorf("bench: first OpenLock of every sim lock: %w", err)
	}
	err = parallel(ctx, locks, func(w int) error { return b.lanes[w].roundTrip() })
	return b, err
}

// devRTTScenarios sets up scenario (a) on every backend of c wanted by
// -only: per backend and concurrency (1 and -open-locks), the bare MQTT
// round trip right before the OpenLock round trip.
func devRTTScenarios(ctx context.Context, c benchConfig, dir string) ([]scenario, func(), error) {
	var benches []*devRTTBench
	closeAll := func() {
		for _, b := range benches {
			b.close()
		}
	}
	concs := []int{1}
	if c.openLocks > 1 {
		concs = append(concs, c.openLocks)
	}
	var out []scenario
	for _, backend := range c.backends() {
		var names []string
		for _, n := range concs {
			names = append(names, scOpenRTT(backend, n), scMQTTRTT(backend, n))
		}
		if !c.wants(names...) {
			continue
		}
		b, err := newDevRTTBench(ctx, c, backend, filepath.Join(dir, "devices-"+backend), c.openLocks)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		benches = append(benches, b)
		for _, n := range concs {
			out = append(out,
				scenario{scMQTTRTT(backend, n), func(ctx context.Context) (result, error) {
					return closedLoop(ctx, n, c.d, func(w int) error { return b.lanes[w].roundTrip() }), nil
				}},
				scenario{scOpenRTT(backend, n), func(ctx context.Context) (result, error) {
					return closedLoop(ctx, n, c.d, func(w int) error { return b.node.openRTT(int64(w + 1)) }), nil
				}},
			)
		}
	}
	return out, closeAll, nil
}

// devRTTReport prints the goal of (a) for every backend and concurrency
// that ran.
func devRTTReport(w io.Writer, c benchConfig, meds map[string]med) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, n := range slices.Compact([]int{1, c.openLocks}) {
			o, m := meds[scOpenRTT(backend, n)], meds[scMQTTRTT(backend, n)]
			if o.rate == 0 || m.rate == 0 {
				continue
			}
			goal := goalOpenFixed.Seconds() + 2*m.p99
			if backend == "sqlite" && c.sqliteSync != "FULL" {
				fmt.Fprintf(w, "  (synchronous=%s: not spkey's durability; this run only shows what the commits' syncs cost)\n", c.sqliteSync)
			}
			fmt.Fprintf(w, "  p99(%s) = %s (p50 %s, %.0f opens/s, errors %d) vs bare MQTT p99 %s (p50 %s): goal <= 3ms + 2 x %s = %s   %s (%+.2fms)\n",
				scOpenRTT(backend, n), msf(o.p99), msf(o.p50), o.rate, o.errs, msf(m.p99), msf(m.p50), msf(m.p99), msf(goal),
				passFail(o.p99 <= goal && o.errs == 0), (o.p99-goal)*1000)
		}
	}
}

// Scenario (b) of issue 13: -devices devices connected to the embedded
// broker (SQLite node): the server's memory per device, and AddKey
// throughput while they are connected against none connected.
const (
	scDevAddKey     = "devices-10k-addkey-connected"
	scDevAddKeyNone = "devices-10k-addkey-none"
)

// devMem is one round's memory figures of scenario (b): the bench
// process (the server; the devices run in a child process) before and
// after the devices connected, after a GC.
type devMem struct {
	devices          int
	rss0, rss1       int64
	heap0, heap1     int64 // HeapInuse + StackInuse
	goroutines0, gr1 int
	connectTook      time.Duration
}

// devFleetBench is scenario (b).
type devFleetBench struct {
	node    *devNode
	creds   []sim.Credentials
	nextKey atomic.Int64
	mu      sync.Mutex
	mems    []devMem
	none    result // the baseline of the latest run
}

func newDevFleetBench(ctx context.Context, c benchConfig, dir string, progress func(string, ...any)) (*devFleetBench, error) {
	if err := raiseFDLimit(uint64(c.devices) + 1024); err != nil {
		return nil, err
	}
	t0 := time.Now()
	node, err := startDevNode(ctx, c, "sqlite", dir, c.devices, c.conns)
	if err != nil {
		return nil, err
	}
	progress("devices: %d locks created in %s; issuing their passwords", c.devices, time.Since(t0).Round(time.Millisecond))
	b := &devFleetBench{node: node}
	t0 = time.Now()
	if b.creds, err = issuePasswords(ctx, node, c.devices); err != nil {
		node.close()
		return nil, err
	}
	progress("devices: %d passwords issued in %s", c.devices, time.Since(t0).Round(time.Millisecond))
	return b, nil
}

func (b *devFleetBench) close() { b.node.close() }

// addKey is one AddKey of a new key to the next lock, round robin over
// every lock of the fleet.
func (b *devFleetBench) addKey() error {
	n := b.nextKey.Add(1)
	locks := int64(len(b.creds))
	// The lock's own count of keys is the slot: never one a key holds.
	id, slot := (n-1)%locks+1, (n-1)/locks+1
	body := fmt.Sprintf(`{"keyUuid":"bench-key-%d","keyIndexNumber":%d}`, n, slot)
	return b.node.do(http.MethodPost, "/locks/"+strconv.FormatInt(id, 10)+"/AddKey", []byte(body), nil)
}

// run is one round: AddKey with no device connected, then with all
// connected (in the other order on even rounds), and the memory of the
// process before and after they connected.
func (b *devFleetBench) run(ctx context.Context, c benchConfig, round int) (result, error) {
	load := func() result {
		return closedLoop(ctx, c.conns, c.d, func(int) error { return b.addKey() })
	}
	var none, conn result
	if round%2 == 1 {
		none = load()
	}
	m := devMem{devices: len(b.creds)}
	m.rss0, m.heap0, m.goroutines0 = memNow()
	t0 := time.Now()
	child, err := startDeviceChild(ctx, b.node.node.MQTTAddr(), b.creds)
	if err != nil {
		return result{}, err
	}
	m.connectTook = time.Since(t0)
	m.rss1, m.heap1, m.gr1 = memNow()
	conn = load()
	if err := child.stop(); err != nil {
		return result{}, err
	}
	if round%2 == 0 {
		none = load()
	}
	b.mu.Lock()
	b.mems = append(b.mems, m)
	b.none = none
	b.mu.Unlock()
	return conn, nil
}

// memNow is the process's resident set size, Go heap and stacks in use and
// goroutines after a GC.
func memNow() (rss, heap int64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return vmRSS(), int64(ms.HeapInuse + ms.StackInuse), runtime.NumGoroutine()
}

func devFleetScenarios(ctx context.Context, c benchConfig, dir string, progress func(string, ...any)) ([]scenario, map[string]alsoMeasured, *devFleetBench, func(), error) {
	if !c.wants(scDevAddKey, scDevAddKeyNone) {
		return nil, nil, nil, func() {}, nil
	}
	b, err := newDevFleetBench(ctx, c, filepath.Join(dir, "devices-fleet"), progress)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	round := 0
	sc := scenario{scDevAddKey, func(ctx context.Context) (result, error) {
		round++
		return b.run(ctx, c, round)
	}}
	also := map[string]alsoMeasured{scDevAddKey: {names: []string{scDevAddKeyNone}, results: func() []result {
		b.mu.Lock()
		defer b.mu.Unlock()
		return []result{b.none}
	}}}
	return []scenario{sc}, also, b, b.close, nil
}

// devFleetReport prints the memory per device and the AddKey ratio.
func devFleetReport(w io.Writer, b *devFleetBench, meds map[string]med) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.mems) == 0 {
		return
	}
	var rss, heap []float64
	n := b.mems[0].devices
	for _, m := range b.mems {
		rss = append(rss, float64(m.rss1-m.rss0)/float64(n))
		heap = append(heap, float64(m.heap1-m.heap0)/float64(n))
		fmt.Fprintf(w, "  devices: %d connected in %s; server process RSS %s -> %s, Go heap+stacks %s -> %s, goroutines %d -> %d\n",
			n, m.connectTook.Round(time.Millisecond), mb(m.rss0), mb(m.rss1), mb(m.heap0), mb(m.heap1), m.goroutines0, m.gr1)
	}
	fmt.Fprintf(w, "  memory per connected device (median of %d round(s)): %.1f KiB RSS, %.1f KiB Go heap+stacks (server process; the devices are a child process)\n",
		len(b.mems), median(rss)/1024, median(heap)/1024)
	con, none := meds[scDevAddKey], meds[scDevAddKeyNone]
	if none.rate > 0 {
		fmt.Fprintf(w, "  %s/%s = %.3f   (AddKey/s with %d devices connected vs none; p99 %s vs %s)\n",
			scDevAddKey, scDevAddKeyNone, con.rate/none.rate, n, msf(con.p99), msf(none.p99))
	}
}
