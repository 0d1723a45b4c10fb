package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// result is what one measurement saw.
type result struct {
	n        int             // operations finished (including failed ones)
	errs     int             // failed operations
	elapsed  time.Duration   // wall time from the first start to the last end
	lat      []time.Duration // latencies of the successful operations, sorted
	firstErr error
}

// rate is successful operations per second.
func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n-r.errs) / r.elapsed.Seconds()
}

// pct returns the q-quantile (nearest rank) of the successful latencies.
func (r result) pct(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.999999) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func (r *result) fail(err error) {
	r.errs++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// merge folds per-worker results into one and sorts the latencies.
func merge(parts []result, elapsed time.Duration) result {
	out := result{elapsed: elapsed}
	size := 0
	for _, p := range parts {
		size += len(p.lat)
	}
	out.lat = make([]time.Duration, 0, size)
	for _, p := range parts {
		out.n += p.n
		out.errs += p.errs
		out.lat = append(out.lat, p.lat...)
		if out.firstErr == nil {
			out.firstErr = p.firstErr
		}
	}
	slices.Sort(out.lat)
	return out
}

// closedLoop runs op in workers goroutines back to back for d: each worker
// starts its next operation as soon as the previous one ends, so the
// figure is a throughput ceiling at that concurrency. op receives the
// worker's index.
func closedLoop(ctx context.Context, workers int, d time.Duration, op func(w int) error) result {
	parts := make([]result, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := &parts[w]
			r.lat = make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				err := op(w)
				lat := time.Since(t0)
				r.n++
				if err != nil {
					r.fail(err)
					continue
				}
				r.lat = append(r.lat, lat)
			}
		})
	}
	wg.Wait()
	return merge(parts, time.Since(start))
}

// newLoadClient is the HTTP client of the closed-loop generator: plain
// HTTP/1.1 keep-alive, one connection per worker, no proxy, no gzip.
func newLoadClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// httpDo sends req, drains the answer and returns an error for a transport
// failure or a non-2xx status (with the start of the body).
func httpDo(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// constantRate offers rate requests per second for d with vegeta (open
// loop: a slow answer does not delay the next request) and records every
// answer.
func constantRate(ctx context.Context, rate int, d time.Duration, conns int, tr vegeta.Targeter) result {
	atk := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Connections(conns), vegeta.HTTP2(false), vegeta.Timeout(30*time.Second), vegeta.Redirects(vegeta.NoFollow))
	r := result{lat: make([]time.Duration, 0, int(float64(rate)*d.Seconds())+16)}
	start := time.Now()
	for res := range atk.Attack(tr, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, d, "c") {
		if ctx.Err() != nil {
			atk.Stop()
		}
		r.n++
		switch {
		case res.Error != "":
			r.fail(fmt.Errorf("%s %s: %s %s", res.Method, res.URL, res.Error, truncate(res.Body, 300)))
		case res.Code < 200 || res.Code > 299:
			r.fail(fmt.Errorf("%s %s: %d %s", res.Method, res.URL, res.Code, truncate(res.Body, 300)))
		default:
			r.lat = append(r.lat, res.Latency)
		}
	}
	r.elapsed = time.Since(start)
	slices.Sort(r.lat)
	return r
}

// newRequest builds a request to one of the bench's own servers; the
// method and URL are ours, so a failure is a bug.
func newRequest(method, url string, body []byte, header http.Header) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		panic(fmt.Sprintf("bench: bad request %s %s: %v", method, url, err))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// openLoop starts op rate times a second for d, each in a goroutine of its
// own (at most maxInFlight at once; an op that finds none free counts as an
// error), whatever the previous ones are doing: the latency of a storage
// operation at a realistic rate, as vegeta gives it for HTTP.
func openLoop(ctx context.Context, rate int, d time.Duration, op func() error) result {
	const maxInFlight = 256
	slots := make(chan struct{}, maxInFlight)
	var mu sync.Mutex
	res := result{}
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			mu.Lock()
			res.n++
			res.fail(fmt.Errorf("more than %d operations in flight", maxInFlight))
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			t0 := time.Now()
			err := op()
			lat := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			res.n++
			if err != nil {
				res.fail(err)
				return
			}
			res.lat = append(res.lat, lat)
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}
