package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/httpapi"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// config is every setting of the server, from flags and SPKEY_* variables
// (a flag given on the command line wins).
type config struct {
	Addr             string
	Data             string
	DB               string
	Sync             string
	AdminAPIKey      string
	AdminEmailDomain string
	JWTIssuer        string
	JWKSURL          string
	JWTAudience      string
	JWTAudienceAny   bool
	JWTUserClaim     string
	CORSOrigins      string
	LogLevel         string
	AccessLog        string
	ShutdownTimeout  time.Duration
	// Doorbell notifications.
	PublicURL   string
	SMTPURL     string
	SMTPFrom    string
	HookURL     string
	HookSecret  string
	NodeID      string
	OutboxLease time.Duration
	RetryBase   time.Duration
	MaxAttempts int
	TrustProxy  bool
	// AllowUserLockCreate lets user tokens provision locks (CreateLock).
	AllowUserLockCreate bool
	// ActionTimeout and KeyActionTimeout: how long a device action waits
	// for the lock's result (opens and card writes; keys).
	ActionTimeout, KeyActionTimeout time.Duration
	// Workflow runs (BulkAddKeys, the canary): the lease a node holds a
	// run under and the pause between two keys of a BulkAddKeys.
	WorkflowLease, BulkStepInterval time.Duration
	// Outbound URL policy of the notify hook and partner webhooks.
	WebhookAllowHTTP                                 bool
	WebhookAllowPrivate                              bool
	WebhookRegion, WebhookAccount                    string
	WebhookTimeout, WebhookRetryBase, WebhookHorizon time.Duration
	// Bounds: replays and redeliveries per tenant and hour; retention of
	// finished rows.
	ReplaysPerHour, RedeliveriesPerHour                 int
	RetainIdempotency, RetainDeliveries, RetainLiveFeed time.Duration
	PruneInterval                                       time.Duration
	// Partner Portal (cmd/spkey/portal.go).
	PortalSecret                                                 string
	PortalOIDCIssuer, PortalOIDCClientID, PortalOIDCClientSecret string
	// Live stream bounds and the metrics listener.
	MaxStreams, MaxStreamsPerUser, MaxStreamsPerKey int
	MetricsAddr, MetricsToken                       string
	// The device layer (cmd/spkey/device.go): the broker's listeners
	// ("off" disables one), the device CA's folder, the names in the
	// broker's certificate.
	MQTTAddr, MQTTSAddr, DeviceCADir string
	MQTTHosts                        hostList
	MQTTTLSCert, MQTTTLSKey          string
	// An external broker instead (cmd/spkey/device.go, externalBroker).
	MQTTURL, MQTTClientID, MQTTShareGroup, MQTTCAFile string
	// from says where each setting that is not its default came from:
	// "--flag" or "SPKEY_FLAG".
	from map[string]string
}

// defaultMetricsAddr is where `spkey serve` serves /metrics unless told
// otherwise: loopback only (tests run every server on a free port).
var defaultMetricsAddr = "127.0.0.1:9787"

// defaultMQTTAddr and defaultMQTTSAddr are the broker's listeners unless
// told otherwise: loopback, and not MQTT's 1883/8883, which a Mosquitto
// of the machine may hold (tests use free ports).
var defaultMQTTAddr, defaultMQTTSAddr = "127.0.0.1:1884", "127.0.0.1:8884"

// leaseMargin is how much longer than the longest delivery attempt the
// outbox lease must be, so that no node takes over a delivery still in
// flight.
const leaseMargin = 5 * time.Second

// register registers every flag of c on fs, with its default.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8787", "listen address")
	fs.StringVar(&c.Data, "data", "./spkey-data", "data folder: the SQLite file and the local JWT signing key")
	fs.StringVar(&c.DB, "db", "", "database: empty for SQLite in --data, or postgres://...")
	fs.StringVar(&c.Sync, "sqlite-synchronous", "FULL", "SQLite synchronous pragma: FULL (survives power loss) or NORMAL")
	fs.StringVar(&c.AdminAPIKey, "admin-api-key", "", "X-Admin-API-Key for admin routes; empty disables them (401)")
	fs.StringVar(&c.AdminEmailDomain, "admin-email-domain", "", "admin routes also need a JWT whose email ends in @DOMAIN; empty: the admin key alone")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "outside OIDC issuer URL whose tokens are accepted (JWKS by discovery)")
	fs.StringVar(&c.JWKSURL, "jwt-jwks-url", "", "JWKS URL of the outside issuer (skips discovery)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "the aud outside tokens must carry (required with --jwt-issuer, unless --jwt-audience-any)")
	fs.BoolVar(&c.JWTAudienceAny, "jwt-audience-any", false, "accept outside tokens whatever their aud (only for an issuer that mints tokens for spkey alone)")
	fs.StringVar(&c.JWTUserClaim, "jwt-user-claim", "sub", "JWT claim that carries the user UUID")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "comma-separated origins allowed to call the API from a browser")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.AccessLog, "access-log", httpapi.DefaultAccessLog, "which requests get an info line: all, errors (answered 4xx/5xx), off, or a sample rate such as 0.01 (the errors and 1% of the rest)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.StringVar(&c.PublicURL, "public-url", "", "the server's public base URL, for doorbell QR codes and e-mails (default: from each request)")
	fs.StringVar(&c.SMTPURL, "smtp-url", "", "SMTP relay for doorbell e-mails: smtp://user:pass@host:587?starttls=true, smtps://..., empty disables e-mail")
	fs.StringVar(&c.SMTPFrom, "smtp-from", "", "From address of doorbell e-mails (needed with --smtp-url)")
	fs.StringVar(&c.HookURL, "notify-hook-url", "", "URL that receives a signed POST per ring and resident (SMS/push gateway); empty disables it")
	fs.StringVar(&c.HookSecret, "notify-hook-secret", "", "Standard Webhooks secret (whsec_...) signing the notify hook's requests")
	fs.StringVar(&c.NodeID, "node-id", "", "this node's name in outbox leases and delivery attempts (default: host name and a random suffix)")
	fs.DurationVar(&c.OutboxLease, "outbox-lease", time.Minute, "how long a node keeps a claimed delivery before another node may take it over")
	fs.DurationVar(&c.WorkflowLease, "workflow-lease", app.DefaultWorkflowLease, "how long a node holds a workflow run (BulkAddKeys, canary) between two steps; a run whose node died is taken over by another node, or this one restarted, once it ends")
	fs.DurationVar(&c.BulkStepInterval, "bulk-step-interval", 0, "pause between two keys of a BulkAddKeys run (0: none), to spare the locks; less than --workflow-lease")
	fs.DurationVar(&c.RetryBase, "notify-retry-base", 2*time.Second, "first retry delay of a failed notification; doubles per attempt (with jitter), at most 10m")
	fs.IntVar(&c.MaxAttempts, "notify-max-attempts", 8, "attempts per notification before it is marked failed")
	fs.BoolVar(&c.AllowUserLockCreate, "allow-user-lock-create", false, "let user tokens (JWT) create locks; off: locks are provisioned with a tenant's API key")
	fs.DurationVar(&c.ActionTimeout, "action-timeout", app.DefaultActionTimeout, "how long an OpenLock or WriteKey waits for the lock's result before it expires (and leaves the lock's desired state)")
	fs.DurationVar(&c.KeyActionTimeout, "key-action-timeout", app.DefaultKeyActionTimeout, "how long an AddKey or RemoveKey action waits for the lock (the key stays desired after)")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", false, "take client addresses and scheme from X-Forwarded-For/-Proto (only behind a reverse proxy)")
	fs.BoolVar(&c.WebhookAllowHTTP, "webhook-allow-http", false, "allow http:// (not only https://) URLs for the notify hook and partner webhooks (local development)")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", false, "allow the notify hook and partner webhooks to call loopback, private and link-local addresses")
	fs.StringVar(&c.WebhookRegion, "webhook-region", "local", "region field of the partner webhook envelope")
	fs.StringVar(&c.WebhookAccount, "webhook-account", "spkey", "account field of the partner webhook envelope")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", webhook.DefaultTimeout, "how long one partner webhook request may take")
	fs.DurationVar(&c.WebhookRetryBase, "webhook-retry-base", webhook.DefaultRetryBase, "first retry delay of a failed partner delivery; doubles per attempt (with jitter), at most 1h")
	fs.DurationVar(&c.WebhookHorizon, "webhook-retry-horizon", webhook.DefaultHorizon, "how long a partner delivery is retried before it is marked failed")
	fs.IntVar(&c.ReplaysPerHour, "webhook-replays-per-hour", app.DefaultReplaysPerHour, "webhook replays one tenant may start per hour (429 with Retry-After beyond); 0: no limit")
	fs.IntVar(&c.RedeliveriesPerHour, "webhook-redeliveries-per-hour", app.DefaultRedeliveriesPerHour, "webhook redeliveries one tenant may ask for per hour (429 with Retry-After beyond); 0: no limit")
	fs.DurationVar(&c.RetainIdempotency, "retain-idempotency", app.DefaultRetention.Idempotency, "how long Idempotency-Key records are kept (0: for ever)")
	fs.DurationVar(&c.RetainDeliveries, "retain-deliveries", app.DefaultRetention.Deliveries, "how long finished deliveries (delivered, failed, skipped) and their attempts are kept (0: for ever)")
	fs.DurationVar(&c.RetainLiveFeed, "retain-live-feed", app.DefaultRetention.LiveFeed, "how long live-stream feed entries are kept (0: for ever)")
	fs.DurationVar(&c.PruneInterval, "prune-interval", 10*time.Minute, "how often the retention job prunes old rows (0: never)")
	fs.StringVar(&c.PortalSecret, "portal-secret", "", "secret (32+ characters) signing Partner Portal sessions and sign-in links; empty: one made in --data/portal-secret (set it on every node of a cluster)")
	fs.StringVar(&c.PortalOIDCIssuer, "portal-oidc-issuer", "", "OIDC issuer URL partners sign in to the portal with; empty: one-time links only (spkey portal-link)")
	fs.StringVar(&c.PortalOIDCClientID, "portal-oidc-client-id", "", "the portal's OIDC client id (redirect URI: <public URL>/portal/callback)")
	fs.StringVar(&c.PortalOIDCClientSecret, "portal-oidc-client-secret", "", "the portal's OIDC client secret")
	fs.IntVar(&c.MaxStreams, "max-streams", httpapi.DefaultMaxStreams, "live notification streams this node keeps open at most; more are refused with 429")
	fs.IntVar(&c.MaxStreamsPerUser, "max-streams-per-user", httpapi.DefaultMaxStreamsPerUser, "live streams one credential may keep open for one user; more are refused with 429")
	fs.IntVar(&c.MaxStreamsPerKey, "max-streams-per-key", httpapi.DefaultMaxStreamsPerKey, "live streams one credential (a tenant's API key, or a user's token) may keep open whatever the users; more are refused with 429")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", defaultMetricsAddr, "listen address of the Prometheus metrics (GET /metrics), apart from the API; empty disables them")
	fs.StringVar(&c.MetricsToken, "metrics-token", "", "bearer token a scrape of --metrics-addr must send; empty: none (keep the address private)")
	fs.StringVar(&c.MQTTAddr, "mqtt-addr", defaultMQTTAddr, "listen address of the device broker for password logins (plain MQTT); off disables it")
	fs.StringVar(&c.MQTTSAddr, "mqtts-addr", defaultMQTTSAddr, "listen address of the device broker for client-certificate logins (MQTT over TLS); off disables it")
	fs.StringVar(&c.DeviceCADir, "device-ca-dir", "", "folder of the device CA (created on first use); empty: --data on SQLite, the database itself with --db (shared by every node)")
	c.MQTTHosts = hostList{hosts: server.DefaultDeviceHosts()}
	fs.StringVar(&c.MQTTTLSCert, "mqtt-tls-cert", "", "PEM file of the broker's own TLS certificate (with --mqtt-tls-key); empty: one signed by the device CA for --mqtt-host")
	fs.StringVar(&c.MQTTTLSKey, "mqtt-tls-key", "", "PEM file of the private key of --mqtt-tls-cert")
	fs.Var(&c.MQTTHosts, "mqtt-host", "a name (DNS name or IP address) devices reach the broker by, in its TLS certificate; repeat it or give a comma list")
	fs.StringVar(&c.MQTTURL, "mqtt-url", "", "external MQTT broker (Mosquitto, EMQX) the gateway joins instead of the embedded broker: mqtt://[user:password@]host:port or mqtts://...; the embedded listeners are then off")
	fs.StringVar(&c.MQTTClientID, "mqtt-client-id", "", "client id at the --mqtt-url broker (default: spkey- and a random suffix)")
	fs.StringVar(&c.MQTTShareGroup, "mqtt-share-group", mqttclient.DefaultShareGroup, "shared-subscription group of the spkey nodes at the --mqtt-url broker; off: a plain subscription, for brokers that do not share $ topics (Mosquitto 2.0), with ONE spkey node only")
	fs.StringVar(&c.MQTTCAFile, "mqtt-ca-file", "", "PEM CA certificates trusted for an mqtts:// --mqtt-url, besides the system's")
}

// envName is the SPKEY_* twin of a flag.
func envName(flagName string) string {
	return "SPKEY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (c *config) validate() error {
	switch strings.ToUpper(c.Sync) {
	case "FULL", "NORMAL", "EXTRA":
		c.Sync = strings.ToUpper(c.Sync)
	default:
		return fmt.Errorf("--sqlite-synchronous must be FULL, NORMAL or EXTRA")
	}
	if _, err := httpapi.ParseAccessLog(c.AccessLog); err != nil {
		return fmt.Errorf("--access-log: %w", err)
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return fmt.Errorf("--db must be a postgres:// URL (leave it empty for SQLite)")
	}
	if c.AdminAPIKey != "" && len(c.AdminAPIKey) < 16 {
		return fmt.Errorf("--admin-api-key must be at least 16 characters")
	}
	if c.SMTPURL != "" && c.SMTPFrom == "" {
		return fmt.Errorf("--smtp-from (SPKEY_SMTP_FROM) is required with --smtp-url")
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		return fmt.Errorf("--notify-max-attempts must be between 1 and 100")
	}
	if c.RetryBase <= 0 {
		return fmt.Errorf("--notify-retry-base must be positive")
	}
	if c.WorkflowLease < time.Second || c.WorkflowLease > time.Hour {
		return fmt.Errorf("--workflow-lease must be between 1s and 1h")
	}
	if c.BulkStepInterval < 0 || c.BulkStepInterval >= c.WorkflowLease {
		return fmt.Errorf("--bulk-step-interval must be at least 0 and less than --workflow-lease (%s)", c.WorkflowLease)
	}
	if err := c.validateLease(); err != nil {
		return err
	}
	if err := c.validateBounds(); err != nil {
		return err
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--public-url must be an absolute http(s) URL")
		}
		c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	}
	if c.ReplaysPerHour < 0 || c.RedeliveriesPerHour < 0 || c.RetainIdempotency < 0 || c.RetainDeliveries < 0 || c.RetainLiveFeed < 0 || c.PruneInterval < 0 {
		return fmt.Errorf("--webhook-replays-per-hour, --webhook-redeliveries-per-hour, --retain-* and --prune-interval must not be negative")
	}
	if c.RetainIdempotency > 0 && c.RetainIdempotency < time.Hour {
		return fmt.Errorf("--retain-idempotency must be at least 1h (a client retries with the same key within that)")
	}
	if err := c.validatePortal(); err != nil {
		return err
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.NodeID = fmt.Sprintf("%s-%x", host, b)
	}
	return nil
}

// safety is the outbound URL policy of the notify hook and partner
// webhooks.
func (c *config) safety() netsafe.Policy {
	return netsafe.Policy{AllowHTTP: c.WebhookAllowHTTP, AllowPrivate: c.WebhookAllowPrivate}
}

func (c *config) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func (c *config) keyPath() string { return filepath.Join(c.Data, "jwt-signing-key.pem") }

// openStore opens and migrates the configured database, its appends
// queueing the outbox rows a server's would (serve installs its engine
// instead).
func (c *config) openStore(ctx context.Context, log *slog.Logger) (*store.Store, error) {
	return server.OpenStore(ctx, server.StoreConfig{DB: c.DB, SQLite: filepath.Join(c.Data, "spkey.db"), SQLiteOptions: store.SQLiteOptions{Synchronous: c.Sync}}, log)
}

// command is a subcommand's command line.
type command struct {
	name  string   // "tenant create"
	usage string   // what follows "spkey " in its usage line
	flags []string // the settings it takes (nil: all)
	args  int      // how many positional arguments it takes
	extra func(fs *flag.FlagSet)
}

// parse parses a subcommand's command line: flags (its own and the
// settings it takes, each set, when not given, from its SPKEY_* twin) and
// positional arguments, in any order ("--" ends the flags). -h prints the
// command's usage on stdout and returns flag.ErrHelp (run exits 0).
// Nothing else happens before the command line is known to be good.
func parse(cmd command, args []string, env map[string]string, stdout, stderr io.Writer) (*config, []string, error) {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	c := &config{from: map[string]string{}}
	c.register(all)
	fs := flag.NewFlagSet("spkey "+cmd.name, flag.ContinueOnError)
	settings := map[string]bool{}
	add := func(f *flag.Flag) {
		fs.Var(f.Value, f.Name, f.Usage+" (env "+envName(f.Name)+")")
		settings[f.Name] = true
	}
	if cmd.flags == nil {
		all.VisitAll(add)
	}
	for _, name := range cmd.flags {
		add(all.Lookup(name))
	}
	if cmd.extra != nil {
		cmd.extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: spkey %s\n\nFlags:\n", cmd.usage)
		fs.PrintDefaults()
	}
	pos, err := cmdline.Parse(fs, args, stdout, stderr)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case len(pos) > cmd.args:
		return nil, nil, fmt.Errorf("%s: unexpected argument %q (usage: spkey %s)", cmd.name, pos[cmd.args], cmd.usage)
	case len(pos) < cmd.args:
		return nil, nil, fmt.Errorf("%s: missing argument (usage: spkey %s)", cmd.name, cmd.usage)
	}
	fs.Visit(func(f *flag.Flag) { c.from[f.Name] = "--" + f.Name })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v, ok := env[name]
		if !settings[f.Name] || c.from[f.Name] != "" || !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
		}
		c.from[f.Name] = name
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	return c, pos, nil
}
