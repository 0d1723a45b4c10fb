package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Listener ids: they tell the authentication hook which credential a
// connection must present.
const (
	listenerPlain = "plain"
	listenerTLS   = "tls"
)

// deviceConn is a device's connection as mochi sees it (Client.Net.Conn).
// It carries the thing the connection authenticated as, set once by the
// authentication hook before the client is registered with the broker,
// so the identity lives exactly as long as the connection.
type deviceConn struct {
	net.Conn
	listener string
	thing    string
}

// listener is a mochi TCP listener (optionally TLS) that gives every
// connection a deadline for its CONNECT (mochi sets none before the
// first packet, and refreshes it by keep-alive after), closes the
// connections that never got that far when it closes, and lets Close wait
// for every connection's goroutine.
type listener struct {
	id       string
	ln       net.Listener
	tls      *tls.Config
	deadline time.Duration
	presence *presence
	log      *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[*deviceConn]struct{}
	wg     sync.WaitGroup
}

var _ listeners.Listener = (*listener)(nil)

// listen binds addr. It returns an error when the address cannot be bound.
func listen(ctx context.Context, id, addr string, tlsConfig *tls.Config, deadline time.Duration, p *presence) (*listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen %s on %s: %w", id, addr, err)
	}
	return &listener{id: id, ln: ln, tls: tlsConfig, deadline: deadline, presence: p, conns: map[*deviceConn]struct{}{}}, nil
}

// Init implements listeners.Listener: the address is already bound.
func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// ID implements listeners.Listener.
func (l *listener) ID() string { return l.id }

// Protocol implements listeners.Listener.
func (l *listener) Protocol() string { return "tcp" }

// Address returns the bound address; "" for a nil listener.
func (l *listener) Address() string {
	if l == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// Serve implements listeners.Listener: it accepts until closed and runs
// establish (mochi's whole connection) for each connection.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() {
				return
			}
			// Out of file descriptors and the like: wait and go on,
			// rather than stop serving (as mochi's own listener would).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if l.log != nil {
				l.log.Warn("mqtt: accept failed", "listener", l.id, "err", err, "retry_in", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		_ = raw.SetDeadline(time.Now().Add(l.deadline))
		dc := &deviceConn{Conn: raw, listener: l.id}
		if l.tls != nil {
			dc.Conn = tls.Server(raw, l.tls)
		}
		if !l.track(dc) {
			_ = raw.Close()
			return
		}
		go func() {
			defer l.wg.Done()
			err := establish(l.id, dc)
			_ = dc.Close()
			// A connection that ended between taking over its thing and
			// its CONNACK gets no OnDisconnect from mochi.
			l.presence.down(dc)
			l.untrack(dc)
			if err != nil && l.log != nil {
				l.log.Debug("mqtt: connection ended", "remote", raw.RemoteAddr().String(), "thing", dc.thing, "err", err)
			}
		}()
	}
}

func (l *listener) track(dc *deviceConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[dc] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *listener) untrack(dc *deviceConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, dc)
}

// Close implements listeners.Listener: it stops accepting and closes
// every connection, which ends each client's session as a dropped
// connection would. It does not call closeClients: mochi v2.7.9's
// Clients.GetByListener takes its read lock twice and deadlocks against a
// client being deleted at the same time.
func (l *listener) Close(_ listeners.CloseFn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	_ = l.ln.Close()
	for dc := range l.conns {
		_ = dc.Close()
	}
}

// abort closes a listener that was never served.
func (l *listener) abort() {
	if l != nil {
		_ = l.ln.Close()
	}
}

// wait returns once every connection's goroutine has ended.
func (l *listener) wait() {
	if l != nil {
		l.wg.Wait()
	}
}

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
