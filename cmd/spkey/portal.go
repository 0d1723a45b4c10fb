package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/portal"
)

// portalSecretFile holds the portal secret a single node makes for itself
// when --portal-secret is empty.
const portalSecretFile = "portal-secret"

// validatePortal checks the Partner Portal settings.
func (c *config) validatePortal() error {
	if c.PortalSecret != "" && len(c.PortalSecret) < portal.MinSecret {
		return fmt.Errorf("--portal-secret must be at least %d characters (for example: openssl rand -hex 32)", portal.MinSecret)
	}
	set := 0
	for _, v := range []string{c.PortalOIDCIssuer, c.PortalOIDCClientID} {
		if v != "" {
			set++
		}
	}
	if set == 1 {
		return fmt.Errorf("--portal-oidc-issuer and --portal-oidc-client-id go together")
	}
	if c.PortalOIDCIssuer != "" {
		u, err := url.Parse(c.PortalOIDCIssuer)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--portal-oidc-issuer must be an absolute http(s) URL")
		}
	}
	return nil
}

// portalSecret returns --portal-secret or, without one, the secret in the
// data folder, made on first use. `spkey serve` and `spkey portal-link`
// with the same --data agree on it; several nodes need --portal-secret.
func (c *config) portalSecret() ([]byte, error) {
	if c.PortalSecret != "" {
		return []byte(c.PortalSecret), nil
	}
	path := filepath.Join(c.Data, portalSecretFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			s := strings.TrimSpace(string(b))
			if len(s) < portal.MinSecret {
				return nil, fmt.Errorf("%s holds fewer than %d characters: delete it to make a new one (this signs everybody out and voids sign-in links)", path, portal.MinSecret)
			}
			return []byte(s), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read the portal secret: %w", err)
		}
		if err := createSecret(c.Data, path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create the portal secret: %w", err)
		}
		// Made now, or by a process that won the race: read it.
	}
	return nil, fmt.Errorf("read the portal secret %s: it keeps disappearing", path)
}

// createSecret writes 32 random bytes (hex) to path, only if it does not
// exist: written in full under a temporary name, then linked into place,
// so a reader never sees half a secret.
func createSecret(dir, path string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, portalSecretFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(hex.EncodeToString(b) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}

// partnerPortal builds the Partner Portal from the settings.
func (c *config) partnerPortal(svc *app.Service, log *slog.Logger) (*portal.Partner, error) {
	secret, err := c.portalSecret()
	if err != nil {
		return nil, err
	}
	cfg := portal.PartnerConfig{Secret: secret, PublicURL: c.PublicURL}
	if c.PortalOIDCIssuer != "" {
		cfg.OIDC = &portal.OIDCConfig{Issuer: c.PortalOIDCIssuer, ClientID: c.PortalOIDCClientID, ClientSecret: c.PortalOIDCClientSecret}
		log.Info("partner portal: OIDC sign-in enabled", "issuer", c.PortalOIDCIssuer, "redirect_uri", c.publicBase()+"/portal/callback")
	}
	return portal.NewPartner(svc, cfg, log)
}

// mountPortal registers the Partner Portal on mux. A portal that cannot be
// built (its secret file unreadable) is logged and answers 503, while the
// API serves on.
func (c *config) mountPortal(mux *http.ServeMux, svc *app.Service, log *slog.Logger) {
	p, err := c.partnerPortal(svc, log)
	if err != nil {
		log.Error("partner portal unavailable", "err", err)
		mux.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "The Partner Portal is unavailable: see the server log.", http.StatusServiceUnavailable)
		})
		return
	}
	p.Register(mux)
}

// publicBase is --public-url or, without one, http:// and the listen
// address (loopback for a wildcard host).
func (c *config) publicBase() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "http://" + c.Addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// publicSource says which public URL publicBase gives and which setting
// it came from, as `spkey serve` reads the same settings.
func (c *config) publicSource() string {
	if from := c.from["public-url"]; from != "" {
		return fmt.Sprintf("%s (from %s)", c.publicBase(), from)
	}
	addr := "the default --addr"
	if from := c.from["addr"]; from != "" {
		addr = from
	}
	return fmt.Sprintf("%s (no --public-url or SPKEY_PUBLIC_URL: made from %s %s; set the public URL your server is reached at)", c.publicBase(), addr, c.Addr)
}

// cmdPortalLink prints a one-time sign-in link to the Partner Portal.
func cmdPortalLink(_ context.Context, args, environ []string, stdout, stderr io.Writer) error {
	var email string
	var ttl time.Duration
	const usage = "portal-link --email E [--ttl 15m] [flags]"
	c, _, err := parse(command{name: "portal-link", usage: usage, flags: []string{"data", "public-url", "addr", "portal-secret"}, extra: func(fs *flag.FlagSet) {
		fs.StringVar(&email, "email", "", "the partner's e-mail address (required): the link signs them in as its owner")
		fs.DurationVar(&ttl, "ttl", 15*time.Minute, "how long the link works (at most 168h); it works once")
	}}, args, cmdline.Env(environ), stdout, stderr)
	if err != nil {
		return err
	}
	if email == "" {
		return fmt.Errorf("usage: spkey %s", usage)
	}
	if ttl <= 0 {
		return fmt.Errorf("--ttl must be positive (e.g. 15m), got %s", ttl)
	}
	secret, err := c.portalSecret()
	if err != nil {
		return err
	}
	now := time.Now()
	token, err := portal.LinkToken(secret, email, now, now.Add(ttl))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "public URL: %s\n", c.publicSource())
	fmt.Fprintf(stderr, "one-time sign-in link for %s, valid until %s:\n", strings.ToLower(strings.TrimSpace(email)), now.Add(ttl).UTC().Format(time.RFC3339))
	fmt.Fprintln(stdout, portal.LinkURL(c.publicBase(), token))
	return nil
}
