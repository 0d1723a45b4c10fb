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

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// serveCommand is `spkey serve`: it takes every setting.
var serveCommand = command{name: "serve", usage: "serve [flags]"}

func cmdServe(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	env := cmdline.Env(environ)
	c, _, err := parse(serveCommand, args, env, stdout, stderr)
	if err != nil {
		return err
	}
	log := c.logger(stderr)
	dcfg, err := c.devices()
	if err != nil {
		return err
	}
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
	if c.DB == "" {
		// This process owns the SQLite folder (serve.lock): deliveries
		// leased by a process that died are free again at once.
		if err := st.ReleaseClaims(ctx); err != nil {
			return err
		}
	}
	chans, err := c.channels(log)
	if err != nil {
		return err
	}
	replays, redeliveries := c.ReplaysPerHour, c.RedeliveriesPerHour
	if replays == 0 {
		replays = -1 // app.Options: no limit
	}
	if redeliveries == 0 {
		redeliveries = -1
	}
	origins := map[string]bool{}
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins[strings.TrimSuffix(o, "/")] = true
		}
	}
	node := server.New(server.Config{Store: st, Verifier: verifier, Log: log, StoreMetrics: true,
		Notify:   outbox.Config{Node: c.NodeID, Lease: c.OutboxLease, RetryBase: c.RetryBase, MaxAttempts: c.MaxAttempts},
		Channels: chans,
		App: app.Options{Safety: c.safety(), ReplaysPerHour: replays, RedeliveriesPerHour: redeliveries,
			AllowUserLockCreate: c.AllowUserLockCreate, ActionTimeout: c.ActionTimeout, KeyActionTimeout: c.KeyActionTimeout,
			WorkflowLease: c.WorkflowLease, BulkStepInterval: c.BulkStepInterval},
		Webhooks: webhook.Config{Region: c.WebhookRegion, Account: c.WebhookAccount, Timeout: c.WebhookTimeout,
			RetryBase: c.WebhookRetryBase, Horizon: c.WebhookHorizon},
		HTTP: httpapi.Config{Version: version, AccessLog: c.AccessLog, AdminAPIKey: c.AdminAPIKey, AdminEmailDomain: c.AdminEmailDomain, CORSOrigins: origins,
			MaxStreams: c.MaxStreams, MaxStreamsPerUser: c.MaxStreamsPerUser, MaxStreamsPerKey: c.MaxStreamsPerKey},
		Pages:         c.pages(log),
		PruneInterval: c.PruneInterval,
		Retention:     store.Retention{Idempotency: c.RetainIdempotency, Deliveries: c.RetainDeliveries, LiveFeed: c.RetainLiveFeed, Nonces: portal.MaxLinkTTL},
		Timeouts:      server.DefaultTimeouts,
		Devices:       dcfg,
	})

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	metricsAt, stopMetrics, err := c.serveMetrics(node, log)
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
	if err := node.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("start the device broker (%s): %w", deviceSettings(dcfg), err)
	}
	defer node.Stop()
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
  devices:       %s
`, version, base, backend, dataFlag(c), dataFlag(c), adminHint(c), base, metricsHint, c.deviceEndpoints(node.MQTTAddr(), node.MQTTSAddr()))

	errc := make(chan error, 1)
	go func() { errc <- node.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := node.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// deviceSettings names the settings of the device layer dcfg, for an
// error that stopped it from starting.
func deviceSettings(dcfg server.DevicesConfig) string {
	if dcfg.MQTTURL != "" {
		return "--mqtt-url " + mqttclient.Redacted(dcfg.MQTTURL)
	}
	var on []string
	if dcfg.MQTTAddr != "" {
		on = append(on, "--mqtt-addr "+dcfg.MQTTAddr)
	}
	if dcfg.MQTTSAddr != "" {
		on = append(on, "--mqtts-addr "+dcfg.MQTTSAddr)
	}
	on = append(on, "--device-ca-dir "+dcfg.CADir)
	return strings.Join(on, ", ") + "; off disables a listener"
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
