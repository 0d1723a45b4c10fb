package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// serveCommand is `spkey serve`: it takes every setting.
var serveCommand = command{name: "serve", usage: "serve [flags]"}

func cmdServe(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	env := envMap(environ)
	c, _, err := parse(serveCommand, args, env, stdout, stderr)
	if err != nil {
		return err
	}
	log := c.logger(stderr)
	if c.DB == "" {
		if err := os.MkdirAll(c.Data, 0o700); err != nil {
			return fmt.Errorf("create data folder: %w", err)
		}
		unlock, err := lockData(filepath.Join(c.Data, "serve.lock"))
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := c.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	verifier, err := auth.NewVerifier(ctx, auth.Config{KeyPath: c.keyPath(), Issuer: c.JWTIssuer, JWKSURL: c.JWKSURL, Audience: c.JWTAudience, UserClaim: c.JWTUserClaim})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	appends := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_appends_total", Help: "Events appended to the event store."})
	conflicts := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_conflicts_total", Help: "Appends refused with a version conflict (retried)."})
	batches := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spkey_store_batch_size", Help: "Commands committed together by the SQLite writer (group commit).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}})
	reg.MustRegister(appends, conflicts, batches)
	st.SetHooks(store.Hooks{Appended: func(n int) { appends.Add(float64(n)) }, Conflict: conflicts.Inc, Batch: func(n int) { batches.Observe(float64(n)) }})

	if c.DB == "" {
		// This process owns the SQLite folder (serve.lock): deliveries
		// leased by a process that died are free again at once.
		if err := st.ReleaseClaims(ctx); err != nil {
			return err
		}
	}
	hub := notify.NewHub()
	chans, appChans, err := c.channels(log)
	if err != nil {
		return err
	}
	engine := notify.New(st, hub, notify.Config{Node: c.NodeID, Lease: c.OutboxLease, RetryBase: c.RetryBase, MaxAttempts: c.MaxAttempts,
		Observe: notifyMetrics(reg)}, log, chans...)
	replays, redeliveries := c.ReplaysPerHour, c.RedeliveriesPerHour
	if replays == 0 {
		replays = -1 // app.Options: no limit
	}
	if redeliveries == 0 {
		redeliveries = -1
	}
	svc := app.New(st, app.Options{Channels: appChans, Queued: engine.Queued, Safety: c.safety(), ReplaysPerHour: replays, RedeliveriesPerHour: redeliveries,
		AllowUserLockCreate: c.AllowUserLockCreate, Waker: app.WakerOf(hub.Subscribe)}, log)
	webhook.New(st, svc, webhook.Config{Region: c.WebhookRegion, Account: c.WebhookAccount, Safety: c.safety(), Timeout: c.WebhookTimeout,
		RetryBase: c.WebhookRetryBase, Horizon: c.WebhookHorizon}, log).Register(engine)
	origins := map[string]bool{}
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins[strings.TrimSuffix(o, "/")] = true
		}
	}
	streamStop := make(chan struct{})
	h := httpapi.New(httpapi.Config{Version: version, AdminAPIKey: c.AdminAPIKey, AdminEmailDomain: c.AdminEmailDomain, CORSOrigins: origins,
		StreamStop: streamStop, MaxStreams: c.MaxStreams, MaxStreamsPerUser: c.MaxStreamsPerUser, MaxStreamsPerKey: c.MaxStreamsPerKey, Mount: c.pages(svc, log)}, svc, verifier, st, reg, log)

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	metricsAt, stopMetrics, err := c.serveMetrics(reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopMetrics(sctx)
	}()
	metricsHint := "off (--metrics-addr is empty)"
	if metricsAt != "" {
		metricsHint = "http://" + metricsAt + "/metrics"
		if c.MetricsToken != "" {
			metricsHint += " (Authorization: Bearer <--metrics-token>)"
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	srv.RegisterOnShutdown(func() { close(streamStop) })
	ectx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan struct{})
	go func() { defer close(engineDone); _ = engine.Run(ectx) }()
	defer func() { stopEngine(); <-engineDone }()
	if c.PruneInterval > 0 {
		pruned := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spkey_pruned_rows_total", Help: "Rows deleted by the retention job, by table."}, []string{"table"})
		reg.MustRegister(pruned)
		retention := store.Retention{Idempotency: c.RetainIdempotency, Deliveries: c.RetainDeliveries, LiveFeed: c.RetainLiveFeed, Nonces: portal.MaxLinkTTL}
		pruneDone := make(chan struct{})
		go func() {
			defer close(pruneDone)
			svc.RunRetention(ectx, c.PruneInterval, retention, func(table string, n int64) { pruned.WithLabelValues(table).Add(float64(n)) }, log)
		}()
		defer func() { stopEngine(); <-pruneDone }()
	}
	backend := "sqlite " + c.Data
	if c.DB != "" {
		backend = "postgres"
	}
	base := "http://" + ln.Addr().String()
	log.Info("spkey listening", "addr", ln.Addr().String(), "backend", backend, "version", version)
	fmt.Fprintf(stdout, `spkey %s listening on %s (%s)
  a user token:  spkey token --sub <USER_UUID> --email <E>%s
  an API key:    spkey tenant create <ORG_ID> --name <NAME>%s
  admin routes:  %s
  OpenAPI:       %s/openapi.json
  metrics:       %s
`, version, base, backend, dataFlag(c), dataFlag(c), adminHint(c), base, metricsHint)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func dataFlag(c *config) string {
	if c.DB != "" {
		return " --db $SPKEY_DB"
	}
	if c.Data != "./spkey-data" {
		return " --data " + c.Data
	}
	return ""
}

func adminHint(c *config) string {
	if c.AdminAPIKey == "" {
		return "disabled (set SPKEY_ADMIN_API_KEY to enable)"
	}
	return "enabled: send X-Admin-API-Key"
}

// notifyMetrics registers the notification metrics in reg and returns the
// engine's Observe hook that feeds them.
func notifyMetrics(reg *prometheus.Registry) func(consumer, outcome string, d time.Duration) {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spkey_notify_attempts_total", Help: "Doorbell notification attempts by channel and outcome."}, []string{"consumer", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "spkey_notify_attempt_seconds", Help: "Doorbell notification attempt latency by channel.",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15}}, []string{"consumer"})
	reg.MustRegister(attempts, latency)
	return func(consumer, outcome string, d time.Duration) {
		attempts.WithLabelValues(consumer, outcome).Inc()
		latency.WithLabelValues(consumer).Observe(d.Seconds())
	}
}
