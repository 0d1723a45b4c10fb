package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The live streams of the doorbell scenarios (f, g) and the tracker that
// matches their events to the rings.

// sseEvent is one Server-Sent Event of a live notification stream.
type sseEvent struct {
	ID, Event string
	Data      []byte
}

// readSSE parses the text/event-stream r until it ends: connected is
// called at the server's ": connected" comment, fn for every event (with
// its data) as soon as its closing blank line has been read.
func readSSE(r io.Reader, connected func(), fn func(sseEvent)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if ev.Data != nil {
				fn(ev)
			}
			ev = sseEvent{}
		case string(line) == ": connected":
			if connected != nil {
				connected()
				connected = nil
			}
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.ID = string(line[len("id: "):])
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.Event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")):
			ev.Data = append([]byte(nil), line[len("data: "):]...)
		}
	}
	return sc.Err()
}

// openLiveStream connects to url (a user's notification stream) with
// header and returns the open response, or an error unless the server
// answered 200 with an event stream.
func openLiveStream(ctx context.Context, client *http.Client, url string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s %s", req.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp, nil
}

// newStreamClient is the HTTP client of long-lived streams: one connection
// each, no overall timeout.
func newStreamClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
	}}
}

// ringIDOf returns the ringId of an event's data. The load generator
// shares the server's cores, so it looks for the field instead of decoding
// the whole event (which lists every resident of the lock).
func ringIDOf(data []byte) string {
	const key = `"ringId":"`
	if i := bytes.Index(data, []byte(key)); i >= 0 {
		rest := data[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
	}
	var d struct {
		RingID string `json:"ringId"`
	}
	_ = json.Unmarshal(data, &d)
	return d.RingID
}

// ringTrack is what a tracker knows of one ring.
type ringTrack struct {
	answered time.Time // when the RingDoorbell answer was read (zero: not yet)
	receipts []time.Time
	full     chan struct{} // closed when every receipt is in
}

// ringTracker collects the DoorbellRang receipts of a set of streams for
// one measurement: every ring is expected on want streams.
type ringTracker struct {
	mu       sync.Mutex
	want     int
	rings    map[string]*ringTrack
	answered int       // rings whose answer was read
	complete int       // answered rings with every receipt
	last     time.Time // when the latest ring became complete
	changed  chan struct{}
}

func newRingTracker(want int) *ringTracker {
	return &ringTracker{want: want, rings: map[string]*ringTrack{}, changed: make(chan struct{}, 1)}
}

// track returns the entry of ring id; t.mu is held.
func (t *ringTracker) track(id string) *ringTrack {
	r := t.rings[id]
	if r == nil {
		r = &ringTrack{full: make(chan struct{})}
		t.rings[id] = r
	}
	return r
}

// check counts r as complete once answered and fully received; t.mu is held.
func (t *ringTracker) check(r *ringTrack, at time.Time) {
	if r.answered.IsZero() || len(r.receipts) != t.want {
		return
	}
	t.complete++
	for _, x := range []time.Time{at, r.receipts[len(r.receipts)-1]} {
		if x.After(t.last) {
			t.last = x
		}
	}
	close(r.full)
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// answer records that ring id was answered at.
func (t *ringTracker) answer(id string, at time.Time) *ringTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.track(id)
	r.answered = at
	t.answered++
	t.check(r, at)
	return r
}

// receipt records that a stream received ring id at.
func (t *ringTracker) receipt(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.track(id)
	if len(r.receipts) >= t.want {
		return // a duplicate: the stream protocol never sends one
	}
	r.receipts = append(r.receipts, at)
	t.check(r, at)
}

// drain waits until every answered ring is complete or timeout passes.
func (t *ringTracker) drain(ctx context.Context, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		done := t.complete >= t.answered
		t.mu.Unlock()
		if done {
			return
		}
		select {
		case <-t.changed:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// streamSet is one open live stream per user, feeding DoorbellRang
// receipts to the current tracker.
type streamSet struct {
	sink   atomic.Pointer[ringTracker]
	cancel context.CancelFunc
	wg     sync.WaitGroup
	failed atomic.Pointer[error] // the first stream that ended early
}

// openStreams opens the live stream of every user (with the user's own
// token) and returns once all of them are connected.
func (s *ringServer) openStreams(ctx context.Context, users []string) (*streamSet, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	set := &streamSet{cancel: cancel}
	ready := make(chan struct{}, len(users))
	errc := make(chan error, len(users))
	for _, u := range users {
		tok, err := s.jwt.Mint(u, "", 24*time.Hour, time.Now())
		if err != nil {
			set.close()
			return nil, err
		}
		set.wg.Go(func() {
			resp, err := openLiveStream(sctx, s.streams, s.base+"/users/"+u+"/notifications/stream", http.Header{"Authorization": {"Bearer " + tok}})
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			err = readSSE(resp.Body, func() { ready <- struct{}{} }, func(ev sseEvent) {
				at := time.Now()
				if ev.Event != "DoorbellRang" {
					return
				}
				if t := set.sink.Load(); t != nil {
					t.receipt(ringIDOf(ev.Data), at)
				}
			})
			if sctx.Err() == nil {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				err = fmt.Errorf("stream of %s ended: %w", u, err)
				set.failed.CompareAndSwap(nil, &err)
			}
		})
	}
	timeout := time.After(30 * time.Second)
	for range users {
		select {
		case <-ready:
		case err := <-errc:
			set.close()
			return nil, fmt.Errorf("bench: open stream: %w", err)
		case <-timeout:
			set.close()
			return nil, errors.New("bench: live streams did not connect within 30s")
		}
	}
	return set, nil
}

func (set *streamSet) close() {
	set.cancel()
	set.wg.Wait()
}

func (set *streamSet) err() error {
	if p := set.failed.Load(); p != nil {
		return *p
	}
	return nil
}
