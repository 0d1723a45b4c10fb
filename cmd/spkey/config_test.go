package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
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
