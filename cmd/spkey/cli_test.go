package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spkey-dev/spkey/internal/auth"
)

// runIn runs spkey with args and env in a fresh working folder (where the
// default --data, ./spkey-data, would go) and returns its stdout, stderr,
// that folder and its error.
func runIn(t *testing.T, env []string, args ...string) (stdout, stderr, dir string, err error) {
	t.Helper()
	dir = t.TempDir()
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, env, &out, &errOut)
	return out.String(), errOut.String(), dir, err
}

var flagRE = regexp.MustCompile(`(?m)^  -([a-z-]+)`)

// TestCLIHelp: every command's -h (and --help) succeeds, prints on stdout
// a usage listing exactly that command's flags, and does nothing else: no
// data folder appears.
func TestCLIHelp(t *testing.T) {
	store := []string{"data", "db", "log-level", "sqlite-synchronous"}
	for _, c := range []struct {
		args  []string
		usage string
		flags []string // nil: not checked (serve lists every setting)
	}{
		{[]string{"migrate", "-h"}, "Usage: spkey migrate", store},
		{[]string{"tenant", "create", "-h"}, "Usage: spkey tenant create ORG_ID", append([]string{"name", "owner-email", "super"}, store...)},
		{[]string{"tenant", "create", "acme", "--help"}, "Usage: spkey tenant create ORG_ID", append([]string{"name", "owner-email", "super"}, store...)},
		{[]string{"tenant", "-h"}, "Usage: spkey tenant create ORG_ID", nil},
		{[]string{"token", "-h"}, "Usage: spkey token --sub USER_UUID", []string{"data", "email", "jwt-user-claim", "phone", "sub", "ttl"}},
		{[]string{"portal-link", "-h"}, "Usage: spkey portal-link --email E", []string{"addr", "data", "email", "portal-secret", "public-url", "ttl"}},
		{[]string{"device", "credentials", "-h"}, "Usage: spkey device credentials lock LOCK_ID --out DIR",
			append([]string{"csr", "device-ca-dir", "mqtt-addr", "mqtts-addr", "out"}, store...)},
		{[]string{"device", "revoke", "lock", "1", "--help"}, "Usage: spkey device revoke lock LOCK_ID", store},
		{[]string{"serve", "-h"}, "Usage: spkey serve", nil},
		{[]string{"-h"}, "Usage:\n  spkey serve", nil},
		{[]string{"help"}, "Usage:\n  spkey serve", nil},
	} {
		out, errOut, dir, err := runIn(t, nil, c.args...)
		if err != nil || !strings.Contains(out, c.usage) || errOut != "" {
			t.Errorf("%v: err %v, stdout %q, stderr %q; want nil and the usage on stdout", c.args, err, out, errOut)
			continue
		}
		if c.flags != nil {
			var got []string
			for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != strings.Join(sorted(c.flags), " ") {
				t.Errorf("%v lists flags %v, want %v", c.args, got, sorted(c.flags))
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%v created %s in the working folder", c.args, entries[0].Name())
		}
	}
	// serve lists its own settings, the new ones among them.
	out, _, _, _ := runIn(t, nil, "serve", "-h")
	for _, f := range []string{"-max-streams ", "-max-streams-per-user ", "-max-streams-per-key ", "-metrics-addr ", "-metrics-token ", "-jwt-audience-any", "(env SPKEY_METRICS_ADDR)",
		"-mqtt-addr ", "-mqtts-addr ", "-device-ca-dir ", "-mqtt-host ", "(env SPKEY_MQTT_HOST)"} {
		if !strings.Contains(out, f) {
			t.Errorf("serve -h lacks %q", f)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestCLIErrors: a bad command line fails with a message (and the usage
// on stderr for an unknown flag) and creates nothing.
func TestCLIErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"tenant"}, "usage: spkey tenant create ORG_ID"},
		{[]string{"tenant", "delete", "acme"}, "usage: spkey tenant create ORG_ID"},
		{[]string{"tenant", "create", "--name", "Acme"}, "tenant create: missing argument"},
		{[]string{"tenant", "create", "acme", "beta", "--name", "Acme"}, `tenant create: unexpected argument "beta"`},
		{[]string{"tenant", "create", "acme", "--smtp-url", "smtp://x"}, "flag provided but not defined: -smtp-url"},
		{[]string{"migrate", "now"}, `migrate: unexpected argument "now"`},
		{[]string{"token", "--sub", "0f8fad5b-d9cb-469f-a165-70867728950e", "--ttl", "0s"}, "--ttl must be positive"},
		{[]string{"token", "--sub", "0f8fad5b-d9cb-469f-a165-70867728950e", "--ttl", "-1h"}, "--ttl must be positive"},
		{[]string{"portal-link", "--email", "p@example.com", "--ttl", "-5m"}, "--ttl must be positive"},
		{[]string{"token", "--sub", "0f8fad5b-d9cb-469f-a165-70867728950e", "--phone", "123"}, "--phone:"},
	} {
		_, _, dir, err := runIn(t, nil, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%v created %s in the working folder", c.args, entries[0].Name())
		}
	}
}

// TestCLITenantArgsOrder: `tenant create` takes its flags before or after
// ORG_ID, and "--" ends them.
func TestCLITenantArgsOrder(t *testing.T) {
	data := t.TempDir()
	for i, args := range [][]string{
		{"tenant", "create", "acme", "--name", "Acme", "--data", data},
		{"tenant", "create", "--name", "Beta", "--data", data, "beta"},
		{"tenant", "create", "--data", data, "--owner-email", "ops@gamma.example", "gamma", "--name", "Gamma"},
		{"tenant", "create", "--name", "Delta", "--data", data, "--", "delta"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, nil, &out, &errOut); err != nil {
			t.Fatalf("%v: %v (%s)", args, err, errOut.String())
		}
		org := []string{"acme", "beta", "gamma", "delta"}[i]
		if key := strings.TrimSpace(out.String()); !regexp.MustCompile(`^[0-9A-Za-z]{40}$`).MatchString(key) || !strings.Contains(errOut.String(), "tenant "+org+" registered") {
			t.Errorf("%v: stdout %q, stderr %q", args, out.String(), errOut.String())
		}
	}
	if _, err := os.Stat(filepath.Join(data, "spkey.db")); err != nil {
		t.Errorf("the tenants were not stored in --data: %v", err)
	}
}

// TestCLIVersion: -version, --version and version print the version.
func TestCLIVersion(t *testing.T) {
	for _, a := range []string{"version", "-version", "--version", "-v"} {
		out, _, _, err := runIn(t, nil, a)
		if err != nil || out != "spkey "+version+"\n" {
			t.Errorf("%s: %v %q", a, err, out)
		}
	}
}

// TestCLIPortalLinkPublicURL: portal-link takes the public URL from
// --public-url or SPKEY_PUBLIC_URL (the flag wins), as serve does, else
// from the listen address, and says which it used.
func TestCLIPortalLinkPublicURL(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args         []string
		env          []string
		link, source string
	}{
		{[]string{"--public-url", "https://door.example/"}, []string{"SPKEY_PUBLIC_URL=https://env.example"}, "https://door.example/portal/link?token=", "public URL: https://door.example (from --public-url)"},
		{nil, []string{"SPKEY_PUBLIC_URL=https://env.example"}, "https://env.example/portal/link?token=", "public URL: https://env.example (from SPKEY_PUBLIC_URL)"},
		{nil, []string{"SPKEY_ADDR=0.0.0.0:9000"}, "http://127.0.0.1:9000/portal/link?token=", "public URL: http://127.0.0.1:9000 (no --public-url or SPKEY_PUBLIC_URL: made from SPKEY_ADDR 0.0.0.0:9000"},
		{nil, nil, "http://127.0.0.1:8787/portal/link?token=", "made from the default --addr 127.0.0.1:8787"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"portal-link", "--email", "p@example.com", "--data", data}, c.args...)
		if err := run(context.Background(), args, c.env, &out, &errOut); err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if !strings.HasPrefix(out.String(), c.link) || !strings.Contains(errOut.String(), c.source) {
			t.Errorf("%v %v: stdout %q, stderr %q; want %q and %q", c.args, c.env, out.String(), errOut.String(), c.link, c.source)
		}
	}
}

// TestCLITokenPhone: `spkey token --phone` mints a phone_number claim (in
// international form) that the server takes as the user's own verified
// number.
func TestCLITokenPhone(t *testing.T) {
	data := t.TempDir()
	var out bytes.Buffer
	sub := "0f8fad5b-d9cb-469f-a165-70867728950e"
	if err := run(context.Background(), []string{"token", "--data", data, "--sub", sub, "--phone", "0048 600 700 800"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{KeyPath: filepath.Join(data, "jwt-signing-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != sub || c.Phone != "+48600700800" || !c.PhoneVerified {
		t.Fatalf("claims %+v", c)
	}
}
