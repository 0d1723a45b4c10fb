// Package testenv gives tests real backends: a fresh SQLite file and, when
// SPKEY_TEST_POSTGRES_URL is set (scripts/test.sh sets it), a fresh
// PostgreSQL schema; and a real spkey HTTP server on 127.0.0.1:0.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// Backend names a database to run a test on.
type Backend string

// The backends.
const (
	SQLite   Backend = "sqlite"
	Postgres Backend = "postgres"
)

// Backends returns the backends available here: SQLite always, PostgreSQL
// when SPKEY_TEST_POSTGRES_URL is set. With SPKEY_TEST_REQUIRE_POSTGRES=1
// and no URL the test fails instead of quietly skipping PostgreSQL.
func Backends(t testing.TB) []Backend {
	if os.Getenv("SPKEY_TEST_POSTGRES_URL") != "" {
		return []Backend{SQLite, Postgres}
	}
	if os.Getenv("SPKEY_TEST_REQUIRE_POSTGRES") == "1" {
		t.Fatal("SPKEY_TEST_REQUIRE_POSTGRES=1 but SPKEY_TEST_POSTGRES_URL is empty: run the suite with scripts/test.sh")
	}
	t.Log("PostgreSQL not configured (SPKEY_TEST_POSTGRES_URL): running on SQLite only; scripts/test.sh runs both")
	return []Backend{SQLite}
}

// Logger returns a logger that writes into the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t_" + hex.EncodeToString(b[:])
}

// PostgresURL creates a fresh schema in the test database and returns a URL
// whose connections use it; the schema is dropped when the test ends.
func PostgresURL(t testing.TB) string {
	base := os.Getenv("SPKEY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SPKEY_TEST_POSTGRES_URL not set")
	}
	schema := randomName()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// OpenStore opens a fresh, migrated store on backend b, closed at the end
// of the test.
func OpenStore(t testing.TB, b Backend) *store.Store {
	t.Helper()
	var cfg server.StoreConfig
	switch b {
	case SQLite:
		cfg.SQLite = filepath.Join(t.TempDir(), "spkey.db")
	case Postgres:
		cfg.DB = PostgresURL(t)
	}
	st, err := server.OpenStore(context.Background(), cfg, Discard())
	if err != nil {
		t.Fatalf("open %s store: %v", b, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// AdminKey is the X-Admin-API-Key of every test server.
const AdminKey = "test-admin-key-0123456789"

// Server is a real spkey HTTP server on a loopback port.
type Server struct {
	URL   string
	Store *store.Store
	Svc   *app.Service
	JWT   *auth.Verifier
	Reg   *prometheus.Registry
	// MetricsURL is the base URL of the server's metrics listener
	// (GET /metrics), apart from URL as in `spkey serve`.
	MetricsURL string
	// Engine is this server's outbox engine (doorbell and partner
	// consumers); Hub wakes its
	// live streams.
	Engine *outbox.Engine
	Hub    *notify.Hub
	// MQTTAddr and MQTTSAddr are the broker's bound plain (password) and
	// TLS (client certificate) listeners, and CADir the folder of its
	// device CA; all "" unless Options.Devices.
	MQTTAddr, MQTTSAddr, CADir string
	// Gateway is the node's shadow gateway (nil unless Options.Devices):
	// tests write desired state through it (UpdateDesired).
	Gateway *devices.Gateway
	// Stop stops the node before the test ends (a restart): its HTTP
	// listener, its broker (every device disconnected) and its background
	// work. The store stays open. Calling it again does nothing.
	Stop func()
}

// Options tunes NewServer.
type Options struct {
	CORSOrigins      []string
	AdminEmailDomain string
	Now              func() time.Time
	Log              *slog.Logger
	JWT              *auth.Config // nil: local issuer only
	NoAdminKey       bool         // run without an admin key configured
	// Channels are the doorbell channels besides the live stream (e-mail,
	// hook) the server's notification engine delivers.
	Channels []notify.Channel
	// Notify tunes the outbox engine (zero: fast test defaults).
	Notify outbox.Config
	// Mount adds HTML routes (pages) to the server's mux.
	Mount func(mux *http.ServeMux, svc *app.Service)
	// Store, if set, is used instead of a fresh one (several nodes on one
	// database).
	Store *store.Store
	// Timeouts, if set, is the server's read and write timeout (as
	// `spkey serve` sets them).
	Timeouts time.Duration
	// Safety is the outbound URL policy of webhooks (nil: http and
	// loopback allowed, as tests need).
	Safety *netsafe.Policy
	// Webhooks tunes partner deliveries (zero: fast test retries); its
	// Safety is Options.Safety.
	Webhooks webhook.Config
	// AllowUserLockCreate lets user tokens call CreateLock
	// (spkey serve --allow-user-lock-create).
	AllowUserLockCreate bool
	// ReplaysPerHour is app.Options.ReplaysPerHour (0: the default).
	ReplaysPerHour int
	// RedeliveriesPerHour is app.Options.RedeliveriesPerHour (0: the
	// default).
	RedeliveriesPerHour int
	// MaxStreams, MaxStreamsPerUser and MaxStreamsPerKey bound the live
	// streams (zero: the defaults of httpapi.Config).
	MaxStreams, MaxStreamsPerUser, MaxStreamsPerKey int
	// MetricsToken, if set, is the bearer token of the metrics listener.
	MetricsToken string
	// Devices starts the device layer: the MQTT broker with both
	// listeners on 127.0.0.1:0, its device CA in a temporary folder, and
	// the shadow gateway (off: no broker).
	Devices bool
	// MQTTURL, if set, is an external MQTT broker the node's gateway
	// joins (server.DevicesConfig.MQTTURL, default share group) instead
	// of running the embedded broker; it excludes Devices.
	MQTTURL string
	// ActionTimeout and KeyActionTimeout are app.Options' (0: the
	// defaults): how long a device action waits for its result.
	ActionTimeout, KeyActionTimeout time.Duration
	// WorkflowLease and BulkStepInterval are app.Options' (0: the
	// defaults): how long a node holds a workflow run between two steps,
	// and the pause between two keys of a BulkAddKeys.
	WorkflowLease, BulkStepInterval time.Duration
}

// NewServer starts spkey's handler on 127.0.0.1:0 over a fresh store.
func NewServer(t testing.TB, b Backend, opt Options) *Server {
	t.Helper()
	st := opt.Store
	if st == nil {
		st = OpenStore(t, b)
	}
	log := opt.Log
	if log == nil {
		log = Logger(t)
	}
	cfg := auth.Config{KeyPath: filepath.Join(t.TempDir(), "key.pem")}
	if opt.JWT != nil {
		cfg = *opt.JWT
		if cfg.KeyPath == "" {
			cfg.KeyPath = filepath.Join(t.TempDir(), "key.pem")
		}
	}
	v, err := auth.NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ncfg := opt.Notify
	if ncfg.PollInterval == 0 {
		ncfg.PollInterval = 200 * time.Millisecond
	}
	if ncfg.RetryBase == 0 {
		ncfg.RetryBase, ncfg.RetryMax = 50*time.Millisecond, time.Second
	}
	safety := netsafe.Policy{AllowHTTP: true, AllowPrivate: true}
	if opt.Safety != nil {
		safety = *opt.Safety
	}
	wcfg := opt.Webhooks
	if wcfg.RetryBase == 0 {
		wcfg.RetryBase, wcfg.RetryMax = 50*time.Millisecond, time.Second
	}
	if wcfg.Hold == 0 {
		wcfg.Hold = 500 * time.Millisecond
	}
	if wcfg.Timeout == 0 {
		wcfg.Timeout = 5 * time.Second
	}
	origins := map[string]bool{}
	for _, o := range opt.CORSOrigins {
		origins[o] = true
	}
	adminKey := AdminKey
	if opt.NoAdminKey {
		adminKey = ""
	}
	var dcfg server.DevicesConfig
	if opt.Devices {
		dcfg = server.DevicesConfig{MQTTAddr: "127.0.0.1:0", MQTTSAddr: "127.0.0.1:0", CADir: t.TempDir()}
	}
	if opt.MQTTURL != "" {
		if opt.Devices {
			t.Fatal("testenv: Options.MQTTURL excludes Options.Devices")
		}
		dcfg = server.DevicesConfig{MQTTURL: opt.MQTTURL}
	}
	node := server.New(server.Config{Store: st, Verifier: v, Log: log,
		// A store shared with another node has that node's hooks.
		StoreMetrics: opt.Store == nil,
		Notify:       ncfg, Channels: opt.Channels,
		App: app.Options{Now: opt.Now, Safety: safety, ReplaysPerHour: opt.ReplaysPerHour, RedeliveriesPerHour: opt.RedeliveriesPerHour,
			AllowUserLockCreate: opt.AllowUserLockCreate, ActionTimeout: opt.ActionTimeout, KeyActionTimeout: opt.KeyActionTimeout,
			WorkflowLease: opt.WorkflowLease, BulkStepInterval: opt.BulkStepInterval},
		Webhooks: wcfg,
		HTTP: httpapi.Config{Version: "test", AdminAPIKey: adminKey, AdminEmailDomain: opt.AdminEmailDomain, CORSOrigins: origins,
			StreamRecheck: 200 * time.Millisecond, MaxStreams: opt.MaxStreams, MaxStreamsPerUser: opt.MaxStreamsPerUser, MaxStreamsPerKey: opt.MaxStreamsPerKey},
		Pages:    opt.Mount,
		Timeouts: server.Timeouts{Read: opt.Timeouts, Write: opt.Timeouts},
		Devices:  dcfg,
	})
	if err := node.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(node.Stop)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopMetrics := node.ServeMetrics(mln, opt.MetricsToken)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopMetrics(ctx)
	})
	url, err := node.ServeOn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Live streams never end by themselves: Close cuts them.
	t.Cleanup(func() { _ = node.Close() })
	return &Server{URL: url, MetricsURL: "http://" + mln.Addr().String(), Store: st, Svc: node.Svc, JWT: v, Reg: node.Registry, Engine: node.Engine, Hub: node.Hub,
		MQTTAddr: node.MQTTAddr(), MQTTSAddr: node.MQTTSAddr(), CADir: dcfg.CADir, Gateway: node.Gateway(),
		Stop: func() { _ = node.Close(); node.Stop() }}
}

// Token mints a local JWT for sub valid for an hour.
func (s *Server) Token(t testing.TB, sub, email string) string {
	tok, err := s.JWT.Mint(sub, email, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Tenant registers orgID and returns its new API key.
func (s *Server) Tenant(t testing.TB, orgID string, super bool) string {
	t.Helper()
	ctx := context.Background()
	admin := app.Principal{Admin: true, Email: "test"}
	if _, err := s.Svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register " + orgID}, orgID, orgID+" Inc", ""); err != nil {
		t.Fatalf("register tenant: %v", err)
	}
	k, err := s.Svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: orgID, Super: super}, false)
	if err != nil {
		t.Fatalf("issue key: %v", err)
	}
	return k.APIKey
}

// SubscribeWebhook gives tenant org a partner webhook in st (a
// *store.Store) by appending its WebhookCreated to a tenant stream of its
// own, as estest.Subscribe asks: from then on the tenant's events get
// partner rows. The record has no org of its own, so it queues none.
func SubscribeWebhook(t *testing.T, st es.Store, org string) {
	t.Helper()
	data, err := json.Marshal(tenant.WebhookCreated{OrgID: org, WebhookID: "estest-" + org, URL: "https://hooks.example/" + org,
		Events: []string{"*"}, AuthType: "none", CreatedAt: "2026-01-02T03:04:05.000Z"})
	if err != nil {
		t.Fatal(err)
	}
	// A bare store projects nothing until the app registers its
	// aggregates' projections: these are the tenant's (app/registry.go).
	if s, ok := st.(*store.Store); ok {
		s.Register(tenant.AggregateType, store.APIKeysProjection(), store.WebhooksProjection())
	}
	id := "estest-webhook-" + org
	rec := es.Record{AggregateType: tenant.AggregateType, AggregateID: id, Version: 1, Type: tenant.TypeWebhookCreated,
		Timestamp: "2026-01-02T03:04:05.000Z", Data: data}
	err = st.Update(context.Background(), func(ctx context.Context, tx es.Appender) error {
		return tx.Append(ctx, 0, es.Snapshot{AggregateType: tenant.AggregateType, AggregateID: id, State: []byte(`{}`)}, []es.Record{rec})
	})
	if err != nil {
		t.Fatalf("subscribe %s: %v", org, err)
	}
}
