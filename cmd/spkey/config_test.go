package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
)

// TestConfigEnvironment: SPKEY_* twins set the flags, the command line
// wins over them, and a twin that does not parse or is out of range stops
// the server with a message naming it.
func TestConfigEnvironment(t *testing.T) {
	env := map[string]string{"SPKEY_ADDR": "127.0.0.1:1", "SPKEY_OUTBOX_LEASE": "90s", "SPKEY_NOTIFY_MAX_ATTEMPTS": "3", "SPKEY_TRUST_PROXY": "true"}
	c, _, err := parse(serveCommand, []string{"--addr", "127.0.0.1:2"}, env, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2" || c.OutboxLease != 90*time.Second || c.MaxAttempts != 3 || !c.TrustProxy || c.NodeID == "" {
		t.Fatalf("config: %+v", c)
	}
	for _, bad := range []struct{ env, want string }{
		{"SPKEY_OUTBOX_LEASE=abc", "SPKEY_OUTBOX_LEASE"},
		{"SPKEY_NOTIFY_MAX_ATTEMPTS=many", "SPKEY_NOTIFY_MAX_ATTEMPTS"},
		{"SPKEY_NOTIFY_MAX_ATTEMPTS=0", "--notify-max-attempts"},
		{"SPKEY_TRUST_PROXY=perhaps", "SPKEY_TRUST_PROXY"},
		{"SPKEY_SMTP_URL=smtp://127.0.0.1:25", "SPKEY_SMTP_FROM"},
		{"SPKEY_PUBLIC_URL=door.example", "--public-url"},
		{"SPKEY_ACCESS_LOG=sometimes", "--access-log"},
	} {
		err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, []string{bad.env}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want an error naming %s", bad.env, err, bad.want)
		}
	}
}

// TestConfigWebhookSafety: the notify hook's URL is held to the outbound
// URL policy at start-up: http needs SPKEY_WEBHOOK_ALLOW_HTTP, a loopback
// target SPKEY_WEBHOOK_ALLOW_PRIVATE, and with both it is accepted.
func TestConfigWebhookSafety(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"SPKEY_NOTIFY_HOOK_URL=http://hooks.example.com/ring", "SPKEY_WEBHOOK_ALLOW_PRIVATE=true"},
			"SPKEY_NOTIFY_HOOK_URL: url must use https (the operator can allow http with SPKEY_WEBHOOK_ALLOW_HTTP=true)"},
		{[]string{"SPKEY_NOTIFY_HOOK_URL=http://127.0.0.1:9/ring", "SPKEY_WEBHOOK_ALLOW_HTTP=true"},
			"SPKEY_NOTIFY_HOOK_URL: url host 127.0.0.1 is a loopback address (the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"},
		{[]string{"SPKEY_NOTIFY_HOOK_URL=https://[::1]:9/ring", "SPKEY_WEBHOOK_ALLOW_HTTP=true"}, "SPKEY_WEBHOOK_ALLOW_PRIVATE=true"},
	} {
		err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, c.env, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.env, err, c.want)
		}
	}

	env := map[string]string{"SPKEY_NOTIFY_HOOK_URL": "http://127.0.0.1:9/ring", "SPKEY_WEBHOOK_ALLOW_HTTP": "true", "SPKEY_WEBHOOK_ALLOW_PRIVATE": "true"}
	cfg, _, err := parse(serveCommand, nil, env, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.safety(); !p.AllowHTTP || !p.AllowPrivate {
		t.Errorf("safety() = %+v", p)
	}
	chans, err := cfg.channels(slog.New(slog.DiscardHandler))
	if err != nil || len(chans) != 1 || chans[0].Consumer() != es.ConsumerDoorbellHook {
		t.Errorf("channels: %d, hook %v, %v", len(chans), len(chans) == 1 && chans[0].Consumer() == es.ConsumerDoorbellHook, err)
	}
	// The flags set the same, and default to the strict policy.
	cfg, _, err = parse(serveCommand, []string{"--webhook-allow-http", "--webhook-allow-private=false"}, map[string]string{"SPKEY_WEBHOOK_ALLOW_PRIVATE": "true"}, io.Discard, io.Discard)
	if err != nil || cfg.safety() != (netsafe.Policy{AllowHTTP: true}) {
		t.Errorf("flags: %+v, %v", cfg.safety(), err)
	}
	if cfg, _, err = parse(serveCommand, nil, nil, io.Discard, io.Discard); err != nil || cfg.safety() != (netsafe.Policy{}) {
		t.Errorf("defaults: %+v, %v", cfg.safety(), err)
	}
}

// startErr returns the error `spkey serve` refuses to start with, given
// args and env (nil when its settings are good).
func startErr(t *testing.T, args, env []string) error {
	t.Helper()
	if _, _, err := parse(serveCommand, args, cmdline.Env(env), io.Discard, io.Discard); err == nil {
		return nil
	}
	return run(context.Background(), append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, args...), env, io.Discard, io.Discard)
}

// TestConfigOutboxLease: the outbox lease must exceed the longest delivery
// timeout (the partner webhook's, and the doorbell hook's and e-mail's
// when they are on) by 5 s; otherwise serve refuses to start, naming the
// flags.
func TestConfigOutboxLease(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want string // "" when it starts
	}{
		{nil, nil, ""}, // 1m lease, 15s webhook timeout
		{[]string{"--outbox-lease", "19s"}, nil, "--outbox-lease (19s) must be at least the longest delivery timeout, --webhook-timeout (15s), plus 5s: set --outbox-lease to 20s or more"},
		{[]string{"--outbox-lease", "20s"}, nil, ""},
		{[]string{"--webhook-timeout", "2m"}, nil, "--webhook-timeout (2m0s), plus 5s: set --outbox-lease to 2m5s or more, or lower --webhook-timeout"},
		{[]string{"--webhook-timeout", "2m", "--outbox-lease", "3m"}, nil, ""},
		{[]string{"--outbox-lease", "30s"}, []string{"SPKEY_SMTP_URL=smtp://127.0.0.1:25", "SPKEY_SMTP_FROM=door@example.com"},
			"the doorbell e-mail's timeout (30s, with --smtp-url), plus 5s: set --outbox-lease to 35s or more"},
		{nil, []string{"SPKEY_OUTBOX_LEASE=16s", "SPKEY_WEBHOOK_TIMEOUT=5s", "SPKEY_NOTIFY_HOOK_URL=https://hooks.example.com/ring"},
			"the doorbell hook's request timeout (15s, with --notify-hook-url), plus 5s: set --outbox-lease to 20s or more"},
		{[]string{"--webhook-timeout", "0s"}, nil, "--webhook-timeout must be positive"},
	} {
		err := startErr(t, c.args, c.env)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v %v: got %v, want %q", c.args, c.env, err, c.want)
		}
	}
}

// TestConfigJWTAudience: an outside issuer needs --jwt-audience, or
// --jwt-audience-any said outright; both at once are refused too.
func TestConfigJWTAudience(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwt-issuer", "https://issuer.example"}, "--jwt-issuer needs --jwt-audience (SPKEY_JWT_AUDIENCE)"},
		{[]string{"--jwt-issuer", "https://issuer.example", "--jwt-audience", "spkey", "--jwt-audience-any"}, "--jwt-audience and --jwt-audience-any exclude each other"},
	} {
		if err := startErr(t, c.args, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	for _, args := range [][]string{
		{"--jwt-issuer", "https://issuer.example", "--jwt-audience", "spkey"},
		{"--jwt-issuer", "https://issuer.example", "--jwt-audience-any"},
	} {
		if _, _, err := parse(serveCommand, args, nil, io.Discard, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, _, err := parse(serveCommand, nil, map[string]string{"SPKEY_JWT_ISSUER": "https://issuer.example", "SPKEY_JWT_AUDIENCE_ANY": "true"}, io.Discard, io.Discard); err != nil {
		t.Errorf("SPKEY_JWT_AUDIENCE_ANY: %v", err)
	}
}

// TestConfigBounds: the stream caps and the metrics settings are checked
// at start-up.
func TestConfigBounds(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-streams", "0"}, "--max-streams, --max-streams-per-user and --max-streams-per-key must be at least 1"},
		{[]string{"--max-streams-per-user", "0"}, "--max-streams, --max-streams-per-user and --max-streams-per-key must be at least 1"},
		{[]string{"--max-streams-per-key", "0"}, "--max-streams, --max-streams-per-user and --max-streams-per-key must be at least 1"},
		{[]string{"--max-streams", "3", "--max-streams-per-user", "4"}, "--max-streams-per-user (4) must not exceed --max-streams (3)"},
		{[]string{"--max-streams-per-key", "4", "--max-streams-per-user", "5"}, "--max-streams-per-user (5) must not exceed --max-streams-per-key (4)"},
		{[]string{"--metrics-addr", "", "--metrics-token", "0123456789abcdef"}, "--metrics-token needs --metrics-addr"},
		{[]string{"--metrics-addr", "9787"}, "--metrics-addr must be host:port"},
		{[]string{"--metrics-addr", "127.0.0.1:8787", "--addr", "127.0.0.1:8787"}, "--metrics-addr must differ from --addr"},
		{[]string{"--metrics-token", "short"}, "--metrics-token must be at least 16 characters"},
	} {
		if _, _, err := parse(serveCommand, c.args, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	c, _, err := parse(serveCommand, nil, map[string]string{"SPKEY_MAX_STREAMS": "50", "SPKEY_MAX_STREAMS_PER_USER": "2", "SPKEY_MAX_STREAMS_PER_KEY": "7", "SPKEY_METRICS_ADDR": ""}, io.Discard, io.Discard)
	if err != nil || c.MaxStreams != 50 || c.MaxStreamsPerUser != 2 || c.MaxStreamsPerKey != 7 || c.MetricsAddr != "" {
		t.Errorf("from the environment: %+v %v", c, err)
	}
	if c, _, err := parse(serveCommand, nil, nil, io.Discard, io.Discard); err != nil || c.MaxStreams != 1000 || c.MaxStreamsPerUser != 5 || c.MaxStreamsPerKey != 50 {
		t.Errorf("defaults: %+v %v", c, err)
	}
}
