// Package netsafetest provides a real DNS server for tests of code that
// resolves names under a netsafe.Policy, to play DNS rebinding.
package netsafetest

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// DNS is a DNS server on 127.0.0.1 (UDP) that answers every A and AAAA
// question, whatever the name, with the address last given to Set (an A
// question gets no answer while the address is IPv6, and the other way
// round).
type DNS struct {
	conn *net.UDPConn
	mu   sync.Mutex
	addr netip.Addr
	n    int
}

// NewDNS starts a server answering with addr; it stops when tb ends.
func NewDNS(tb testing.TB, addr netip.Addr) *DNS {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	d := &DNS{conn: conn, addr: addr}
	done := make(chan struct{})
	go func() { defer close(done); d.serve() }()
	tb.Cleanup(func() { conn.Close(); <-done })
	return d
}

// Set changes the address given in later answers.
func (d *DNS) Set(addr netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addr = addr
}

// Queries returns how many questions the server has answered.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// Resolver returns a resolver that sends every DNS question to this
// server (names in the hosts file, such as localhost, still resolve from
// it).
func (d *DNS) Resolver() *net.Resolver {
	addr := d.conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", addr)
	}}
}

func (d *DNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		resp, err := d.answer(buf[:n])
		if err != nil {
			continue
		}
		_, _ = d.conn.WriteToUDP(resp, from)
	}
}

const (
	typeA    = 1
	typeAAAA = 28
)

// answer builds the reply to one query: its header and question, then at
// most one answer record pointing back at the question's name.
func (d *DNS) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errors.New("not a query with one question")
	}
	end := 12
	for end < len(q) && q[end] != 0 {
		end += 1 + int(q[end])
	}
	end += 5 // the root label, QTYPE, QCLASS
	if end > len(q) {
		return nil, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[end-4 : end-2])
	d.mu.Lock()
	addr := d.addr
	d.n++
	d.mu.Unlock()
	var rdata []byte
	switch {
	case qtype == typeA && addr.Is4():
		b := addr.As4()
		rdata = b[:]
	case qtype == typeAAAA && addr.Is6():
		b := addr.As16()
		rdata = b[:]
	}
	r := make([]byte, 0, end+16+len(rdata))
	r = append(r, q[0], q[1])               // ID
	r = append(r, 0x84|(q[2]&0x01), 0x80)   // QR, AA, RD as asked; RA; NOERROR
	r = binary.BigEndian.AppendUint16(r, 1) // QDCOUNT
	r = binary.BigEndian.AppendUint16(r, 0) // ANCOUNT, set below
	r = binary.BigEndian.AppendUint32(r, 0) // NSCOUNT, ARCOUNT
	r = append(r, q[12:end]...)             // the question
	if rdata != nil {
		binary.BigEndian.PutUint16(r[6:8], 1)
		r = append(r, 0xc0, 12)                                  // the question's name
		r = binary.BigEndian.AppendUint16(r, qtype)              // TYPE
		r = binary.BigEndian.AppendUint16(r, 1)                  // CLASS IN
		r = binary.BigEndian.AppendUint32(r, 0)                  // TTL
		r = binary.BigEndian.AppendUint16(r, uint16(len(rdata))) // RDLENGTH
		r = append(r, rdata...)
	}
	return r, nil
}
