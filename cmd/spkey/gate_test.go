package main

import (
	"context"
	"sync"
)

// requestGate lets a test receiver hold requests: from hold on, requests
// that pass it wait until release or until their sender goes away.
type requestGate struct {
	gateMu sync.Mutex
	gate   chan struct{} // non-nil: holding
	held   int           // requests being held now
}

// holdRequests makes later requests wait until release.
func (g *requestGate) holdRequests() {
	g.gateMu.Lock()
	g.gate = make(chan struct{})
	g.gateMu.Unlock()
}

// release answers held requests and stops holding.
func (g *requestGate) release() {
	g.gateMu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.gateMu.Unlock()
}

// holding returns how many requests are being held.
func (g *requestGate) holding() int {
	g.gateMu.Lock()
	defer g.gateMu.Unlock()
	return g.held
}

// pass holds a request while the gate holds and subject is true, calling
// held (if set) once it is counted as held. It returns false when the
// sender went away instead: nothing is to be answered.
func (g *requestGate) pass(ctx context.Context, subject bool, held func()) bool {
	g.gateMu.Lock()
	wait := g.gate
	if !subject {
		wait = nil
	}
	if wait != nil {
		g.held++
	}
	g.gateMu.Unlock()
	if wait == nil {
		return true
	}
	if held != nil {
		held()
	}
	var gone bool
	select {
	case <-wait:
	case <-ctx.Done():
		gone = true
	}
	g.gateMu.Lock()
	g.held--
	g.gateMu.Unlock()
	return !gone
}
