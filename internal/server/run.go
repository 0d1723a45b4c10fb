package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spkey-dev/spkey/internal/httpapi"
)

// Start starts the node's background work: with Config.Devices, the
// device layer (the device CA loaded or created, the MQTT broker bound,
// the shadow gateway on it); then the outbox engine and, with
// Config.PruneInterval, the retention job. They keep ctx's values but not
// its end: they run until Stop, so that requests still in flight at
// shutdown are served first. Start is called once. It returns the device
// layer's error (see DevicesConfig: no CA folder, a CA that cannot be
// read or written, a listener that cannot be bound), and then starts
// nothing.
func (n *Node) Start(ctx context.Context) error {
	dev, err := startDevices(ctx, n.cfg, n.shadows, n.Svc, n.log)
	if err != nil {
		return err
	}
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan struct{})
	go func() { defer close(engineDone); _ = n.Engine.Run(ectx) }()
	expiryDone, workflowsDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(expiryDone); n.Svc.RunActionExpiry(ectx, actionSweep) }()
	go func() { defer close(workflowsDone); n.Svc.RunWorkflows(ectx) }()
	var pruneDone chan struct{}
	if n.cfg.PruneInterval > 0 {
		pruneDone = make(chan struct{})
		go func() {
			defer close(pruneDone)
			n.Svc.RunRetention(ectx, n.cfg.PruneInterval, n.cfg.Retention, func(table string, rows int64) { n.pruned.WithLabelValues(table).Add(float64(rows)) }, n.log)
		}()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.devices = dev
	n.Svc.SetDeviceAccess(dev.deviceAccess())
	n.stop = func() {
		n.Svc.SetDeviceAccess(nil)
		// Devices first: no device request starts a write once the
		// engine and the store are going away.
		dev.close()
		cancel()
		<-expiryDone
		<-workflowsDone
		if pruneDone != nil {
			<-pruneDone
		}
		<-engineDone
	}
	return nil
}

// actionSweep is how often a node expires the device actions due.
const actionSweep = time.Second

// Stop stops what Start started (the broker, which disconnects every
// device, then the retention job, then the engine, which lets its
// attempts in flight finish within its grace) and waits for it. Without Start, or a second time, it does nothing.
func (n *Node) Stop() {
	n.mu.Lock()
	stop := n.stop
	n.stop = nil
	n.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Serve serves the API on ln until Shutdown or Close, which make it
// return http.ErrServerClosed; any other error is the listener's.
func (n *Node) Serve(ln net.Listener) error { return n.srv.Serve(ln) }

// ServeOn listens on addr (e.g. 127.0.0.1:0) and serves the API there in
// the background until Shutdown or Close. It returns the base URL,
// http://host:port, or the error of the listen.
func (n *Node) ServeOn(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	go func() { _ = n.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Shutdown stops the API gracefully: it stops listening, ends the live
// streams (which never end by themselves) and waits, within ctx, for the
// requests in flight. It returns ctx's error if they did not finish.
func (n *Node) Shutdown(ctx context.Context) error { return n.srv.Shutdown(ctx) }

// Close stops the API at once: the live streams end and every connection
// is closed, requests in flight or not.
func (n *Node) Close() error {
	n.endStreams()
	return n.srv.Close()
}

// ServeMetrics serves the node's metrics (GET /metrics, behind token
// unless it is "") on ln, apart from the API, in the background. It
// returns the func that shuts that listener down within its context.
func (n *Node) ServeMetrics(ln net.Listener, token string) func(ctx context.Context) {
	srv := HTTPServer(httpapi.MetricsHandler(n.Registry, token), DefaultTimeouts)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return func(ctx context.Context) { _ = srv.Shutdown(ctx) }
}
