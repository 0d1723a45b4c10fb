package broker

import (
	"sync"
	"time"
)

// presence decides what OnPresence is told. Each thing has at most one
// current connection: the last one that began its session. A connection
// that is no longer current (taken over) says nothing when it ends, so a
// takeover never reports offline after the new connection's online, in
// whatever order mochi finishes the two.
type presence struct {
	mu        sync.Mutex
	current   map[string]*deviceConn // thing -> the connection that speaks for it
	announced map[string]bool        // thing -> the last report was online
	notify    func(thing string, online bool, at time.Time)
	now       func() time.Time
}

// claim makes dc the thing's current connection (mochi's
// OnSessionEstablish, before it disconnects a connection it takes over).
func (p *presence) claim(dc *deviceConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current[dc.thing] = dc
}

// up reports dc's thing online if dc is still its current connection
// (mochi's OnSessionEstablished, after the CONNACK).
func (p *presence) up(dc *deviceConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current[dc.thing] != dc {
		return
	}
	p.announced[dc.thing] = true
	p.report(dc.thing, true)
}

// down reports dc's thing offline if dc was its current connection and
// the last report was online. It is called when mochi disconnects the
// client and again when the connection's goroutine ends; the second call
// finds nothing to do.
func (p *presence) down(dc *deviceConn) {
	if dc.thing == "" {
		return // never authenticated
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current[dc.thing] != dc {
		return
	}
	delete(p.current, dc.thing)
	if p.announced[dc.thing] {
		delete(p.announced, dc.thing)
		p.report(dc.thing, false)
	}
}

// report calls notify under p.mu, so reports are ordered.
func (p *presence) report(thing string, online bool) {
	if p.notify != nil {
		p.notify(thing, online, p.now())
	}
}
