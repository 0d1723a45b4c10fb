package broker

// OpenConns returns how many connections the broker's listeners still
// serve; a connection leaves only after its presence has been reported.
func OpenConns(b *Broker) int {
	n := 0
	for _, l := range []*listener{b.plain, b.tls} {
		if l == nil {
			continue
		}
		l.mu.Lock()
		n += len(l.conns)
		l.mu.Unlock()
	}
	return n
}
