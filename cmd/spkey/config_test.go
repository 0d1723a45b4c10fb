package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/netsafe"
)

// TestConfigEnvironment: SPKEY_* twins set the flags, the command line
// wins over them, and a twin that does not parse or is out of range stops
// the server with a message naming it.
func TestConfigEnvironment(t *testing.T) {
	env := map[string]string{"SPKEY_ADDR": "127.0.0.1:1", "SPKEY_OUTBOX_LEASE": "90s", "SPKEY_NOTIFY_MAX_ATTEMPTS": "3", "SPKEY_TRUST_PROXY": "true"}
	c, _, err := parse("serve", []string{"--addr", "127.0.0.1:2"}, env, io.Discard, nil)
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
	cfg, _, err := parse("serve", nil, env, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.safety(); !p.AllowHTTP || !p.AllowPrivate {
		t.Errorf("safety() = %+v", p)
	}
	chans, on, err := cfg.channels(slog.New(slog.DiscardHandler))
	if err != nil || len(chans) != 1 || !on.Hook {
		t.Errorf("channels: %d, hook %v, %v", len(chans), on.Hook, err)
	}
	// The flags set the same, and default to the strict policy.
	cfg, _, err = parse("serve", []string{"--webhook-allow-http", "--webhook-allow-private=false"}, map[string]string{"SPKEY_WEBHOOK_ALLOW_PRIVATE": "true"}, io.Discard, nil)
	if err != nil || cfg.safety() != (netsafe.Policy{AllowHTTP: true}) {
		t.Errorf("flags: %+v, %v", cfg.safety(), err)
	}
	if cfg, _, err = parse("serve", nil, nil, io.Discard, nil); err != nil || cfg.safety() != (netsafe.Policy{}) {
		t.Errorf("defaults: %+v, %v", cfg.safety(), err)
	}
}
