package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// Scenario (r), issue 12: a full rebuild of every read model from the
// event log (app.Service.Rebuild: the snapshots of every aggregate and
// the tables of every projection), timed on a history built through the
// app's commands.
func scR(backend string) string { return "r-rebuild-" + backend }

// targetRebuild is issue 12's target for scenario (r) on SQLite, in
// events/s.
const targetRebuild = 40000

// rebuildPerLock is how many users each lock of the history has; the
// history adds and removes them as residents in turn.
const rebuildPerLock = 10

// rebuildRingEvery: every so many commands on a lock ring its doorbell
// (a ring aggregate and the ring projection's rows).
const rebuildRingEvery = 50

// rebuildScenarios builds, per backend that -only selects, a history of
// about c.rebuildEvents events: min(1,000, events/100) locks with 10 users
// each, then AddResident/RemoveResident of those users in turn with a
// ring now and then. Each round times one full rebuild; req/s is events
// folded per second.
func rebuildScenarios(ctx context.Context, c benchConfig, dir string, progress func(string, ...any)) (out []scenario, closeAll func(), err error) {
	var nodes []*appNode
	closeAll = func() {
		for _, n := range nodes {
			n.close()
		}
	}
	for _, b := range c.backends() {
		if !c.wants(scR(b)) {
			continue
		}
		n, err := openAppNode(ctx, c, b, filepath.Join(dir, "rebuild-"+b))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		nodes = append(nodes, n)
		locks := min(benchLocks, max(4, c.rebuildEvents/100))
		began := time.Now()
		ls, err := n.createLocks(ctx, locks, rebuildPerLock, c.conns)
		if err == nil {
			cmds := max(0, c.rebuildEvents-int(n.events.Load()))
			err = ls.commands(ctx, cmds, 0, rebuildPerLock, rebuildRingEvery, c.conns)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		events := n.events.Load()
		progress("%s: history of %d events (%d locks, %d users) built in %s", scR(b), events, locks, locks*rebuildPerLock, time.Since(began).Round(time.Millisecond))
		out = append(out, scenario{scR(b), func(ctx context.Context) (result, error) {
			t0 := time.Now()
			if err := n.svc.Rebuild(ctx); err != nil {
				return result{}, fmt.Errorf("rebuild: %w", err)
			}
			el := time.Since(t0)
			return result{n: int(events), elapsed: el, lat: []time.Duration{el}}, nil
		}})
	}
	return out, closeAll, nil
}

// rebuildReport prints scenario (r) against its target.
func rebuildReport(w io.Writer, meds map[string]med) {
	for _, b := range []string{"sqlite", "postgres"} {
		m := meds[scR(b)]
		if m.rate == 0 {
			continue
		}
		events := m.rate * m.p50
		perCore := 0.0
		if m.cores > 0 {
			perCore = m.rate / m.cores
		}
		verdict := "(no target)"
		if b == "sqlite" {
			verdict = fmt.Sprintf("target >= %d   %s", targetRebuild, passFail(m.rate >= targetRebuild))
		}
		fmt.Fprintf(w, "  rebuild-%s = %.0f events/s   %s   (%.0f events, one rebuild %s; %.2f cores busy: %.0f events per CPU-second)\n", b, m.rate, verdict, events, msf(m.p50), m.cores, perCore)
	}
}
