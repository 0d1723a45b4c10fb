package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestPortalLink: `spkey portal-link` prints a link that a running `spkey
// serve` with the same --data accepts once: it signs the partner in (to
// the onboarding form), and the same link is refused afterwards. Both
// commands agree on the portal secret they made in the data folder.
func TestPortalLink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	data := t.TempDir()
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data}, []string{"SPKEY_LOG_LEVEL=warn"}, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := waitForURL(t, pr)

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"portal-link", "--email", "Partner@Example.com", "--ttl", "10m", "--data", data, "--public-url", base},
		nil, &out, &errOut); err != nil {
		t.Fatalf("portal-link: %v (%s)", err, errOut.String())
	}
	link := strings.TrimSpace(out.String())
	if !strings.HasPrefix(link, base+"/portal/link?token=") {
		t.Fatalf("portal-link printed %q", link)
	}
	if !strings.Contains(errOut.String(), "partner@example.com") {
		t.Errorf("portal-link said %q", errOut.String())
	}
	fi, err := os.Stat(filepath.Join(data, "portal-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("portal secret file: %v %v", fi, err)
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	get := func(u string) string {
		t.Helper()
		res, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d\n%s", u, res.StatusCode, b)
		}
		return string(b)
	}
	token := strings.TrimPrefix(link, base+"/portal/link?token=")
	post := func(csrf string) (int, string) {
		t.Helper()
		res, err := hc.PostForm(base+"/portal/link", url.Values{"csrf": {csrf}, "token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	page := get(link)
	if !strings.Contains(page, "Sign in as partner@example.com") {
		t.Fatalf("link page:\n%s", page)
	}
	m := csrfFieldRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token:\n%s", page)
	}
	status, body := post(m[1])
	if status != 200 || !strings.Contains(body, `action="/portal/onboard"`) || !strings.Contains(body, "partner@example.com") {
		t.Fatalf("sign-in with the link: %d\n%s", status, body)
	}
	m = csrfFieldRE.FindStringSubmatch(body)
	if status, body := post(m[1]); status != http.StatusGone {
		t.Fatalf("the link used twice: %d\n%s", status, body)
	}
}

// TestPortalSecretShared: the secret is made once and read back by every
// later command, also when several processes race to make it.
func TestPortalSecretShared(t *testing.T) {
	data := t.TempDir()
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			c := &config{Data: data}
			s, err := c.portalSecret()
			if err != nil {
				t.Error(err)
			}
			got[i] = string(s)
		})
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] || len(s) != 64 {
			t.Fatalf("secrets differ or are short: %q", got)
		}
	}
	c := &config{Data: data, PortalSecret: "from-the-environment-0123456789abcdef"}
	if s, _ := c.portalSecret(); string(s) != c.PortalSecret {
		t.Errorf("--portal-secret not used: %q", s)
	}
	entries, _ := os.ReadDir(data)
	if len(entries) != 1 {
		t.Errorf("temporary files left in the data folder: %v", entries)
	}
}

// TestPortalSettings: bad portal settings stop the command with the
// setting's name (portal-link takes the secret; the OIDC settings are
// serve's).
func TestPortalSettings(t *testing.T) {
	portalLink := []string{"portal-link", "--email", "a@example.com", "--data", t.TempDir()}
	serve := []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{portalLink, []string{"SPKEY_PORTAL_SECRET=short"}, "--portal-secret"},
		{serve, []string{"SPKEY_PORTAL_SECRET=short"}, "--portal-secret"},
		{serve, []string{"SPKEY_PORTAL_OIDC_ISSUER=https://id.example"}, "--portal-oidc-client-id"},
		{serve, []string{"SPKEY_PORTAL_OIDC_CLIENT_ID=spkey"}, "--portal-oidc-issuer"},
		{serve, []string{"SPKEY_PORTAL_OIDC_ISSUER=id.example", "SPKEY_PORTAL_OIDC_CLIENT_ID=spkey"}, "--portal-oidc-issuer"},
	} {
		err := run(context.Background(), c.args, c.env, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want one naming %s", c.args[0], c.env, err, c.want)
		}
	}
	if err := run(context.Background(), []string{"portal-link", "--data", t.TempDir()}, nil, io.Discard, io.Discard); err == nil {
		t.Error("portal-link without --email worked")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"portal-link", "--email", "a@example.com", "--data", t.TempDir(), "--addr", "0.0.0.0:9000"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "http://127.0.0.1:9000/portal/link?token=") {
		t.Errorf("link without --public-url: %q", out.String())
	}
}
