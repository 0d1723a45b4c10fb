// Package server builds a whole spkey node from a Config: the metrics,
// the outbox engine with its consumers (the doorbell channels and the
// partner webhooks), the app service, the HTTP API with its pages, the
// retention job, the device layer (the MQTT broker and the shadow gateway)
// and the HTTP server. `spkey serve`, the tests
// (internal/testenv) and the bench (cmd/spkey-bench) all build their nodes
// here; this is the one place that wires the packages together.
package server

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/devices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// Config is what a node is built from. Zero fields take the defaults of
// the package they go to.
type Config struct {
	// Store is the node's database, opened and migrated (OpenStore); the
	// node never closes it.
	Store *store.Store
	// Verifier checks the JWTs of user calls.
	Verifier *auth.Verifier
	// Log receives the node's logs.
	Log *slog.Logger
	// Registry receives the node's metrics (nil: a new one, in
	// Node.Registry).
	Registry *prometheus.Registry
	// StoreMetrics counts Store's appends, conflicts and group-commit
	// batches in the registry. It sets the store's hooks: only one node of
	// several sharing a store may set it.
	StoreMetrics bool
	// Notify tunes the outbox engine; its Observe is the node's metrics.
	Notify outbox.Config
	// Channels are the doorbell channels besides the live stream (e-mail,
	// hook); App.Channels is set from them.
	Channels []notify.Channel
	// App tunes the service; Channels and Waker are set by New.
	App app.Options
	// Webhooks tunes partner deliveries; its Safety is App.Safety.
	Webhooks webhook.Config
	// HTTP tunes the API; StreamStop and Mount are set by
	// New.
	HTTP httpapi.Config
	// Pages, if set, adds the HTML routes (the visitor's doorbell page,
	// the Partner Portal) to the API's mux.
	Pages func(mux *http.ServeMux, svc *app.Service)
	// PruneInterval is how often the retention job prunes what Retention
	// no longer keeps (0: never).
	PruneInterval time.Duration
	Retention     store.Retention
	// Timeouts are the HTTP server's (zero: none; `spkey serve` uses
	// DefaultTimeouts).
	Timeouts Timeouts
	// Devices is the device layer (devices.go): the MQTT broker and the
	// shadow gateway, started by Start (zero: none).
	Devices DevicesConfig
}

// Timeouts are an http.Server's timeouts.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts are `spkey serve`'s, for the API and the metrics
// listener alike.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second}

// HTTPServer returns an http.Server of h with the timeouts t.
func HTTPServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}

// Node is one spkey server, built and not yet running: Start starts its
// background work (the device layer, the outbox engine, the retention
// job), Serve or
// ServeOn its API; Shutdown or Close stops the API, Stop the background
// work.
type Node struct {
	Store    *store.Store
	Svc      *app.Service
	Verifier *auth.Verifier
	Registry *prometheus.Registry
	// Handler is the API with its pages.
	Handler http.Handler
	// Engine delivers the outbox rows (doorbell notifications, partner
	// webhooks); Hub wakes the live streams.
	Engine *outbox.Engine
	Hub    *notify.Hub

	cfg        Config
	log        *slog.Logger
	srv        *http.Server
	streamStop chan struct{}
	endStreams func() // closes streamStop, once
	pruned     *prometheus.CounterVec

	// shadows is the node's device gateway: it writes the device commands'
	// desired states from New on, and is started on the broker by Start.
	shadows *devices.Gateway

	mu      sync.Mutex
	stop    func()       // set by Start
	devices *deviceLayer // set by Start, nil without a broker
}

// New builds a node from cfg. It registers the node's metrics in
// cfg.Registry (which must not hold them yet) and, with StoreMetrics, sets
// the store's hooks.
func New(cfg Config) *Node {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	registerProcessMetrics(reg)
	if cfg.StoreMetrics {
		countStore(cfg.Store, reg)
	}
	n := &Node{Store: cfg.Store, Verifier: cfg.Verifier, Registry: reg, cfg: cfg, log: log, streamStop: make(chan struct{})}
	n.endStreams = sync.OnceFunc(func() { close(n.streamStop) })

	n.Hub = notify.NewHub()
	n.Engine = newEngine(cfg, n.Hub, reg, log)
	opt := cfg.App
	opt.Channels = appChannels(cfg.Channels)
	opt.Waker = app.WakerOf(n.Hub.Subscribe)
	if opt.Region == "" && opt.Account == "" {
		opt.Region, opt.Account = cfg.Webhooks.Region, cfg.Webhooks.Account
	}
	n.shadows = devices.New(cfg.Store, devices.Config{Now: cfg.App.Now}, log.With("component", "gateway"))
	opt.Devices = n.shadows
	n.Svc = app.New(cfg.Store, opt, log)
	n.shadows.Observe(n.Svc)
	registerConsumers(n.Engine, cfg, n.Svc, log)

	hcfg := cfg.HTTP
	hcfg.StreamStop = n.streamStop
	hcfg.Mount = nil
	if cfg.Pages != nil {
		hcfg.Mount = func(mux *http.ServeMux) { cfg.Pages(mux, n.Svc) }
	}
	n.Handler = httpapi.New(hcfg, n.Svc, cfg.Verifier, cfg.Store, reg, log)
	n.srv = HTTPServer(n.Handler, cfg.Timeouts)
	n.srv.RegisterOnShutdown(n.endStreams)
	if cfg.PruneInterval > 0 {
		n.pruned = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spkey_pruned_rows_total", Help: "Rows deleted by the retention job, by table."}, []string{"table"})
		reg.MustRegister(n.pruned)
	}
	return n
}
