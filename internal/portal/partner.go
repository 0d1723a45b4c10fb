package portal

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/spkey-dev/spkey/internal/app"
)

// Partners is what the Partner Portal needs from the application layer;
// *app.Service satisfies it. The portal calls the webhook methods with
// the principal {Kind: TenantCaller, OrgID, Email} of the signed-in
// partner, whose OrgID it found with PortalAccount on the same request.
type Partners interface {
	// PortalAccount returns the org whose owner e-mail is email.
	PortalAccount(ctx context.Context, email string) (orgID string, found bool, err error)
	// Onboard registers an org owned by email and issues its first key;
	// Invalid or Conflict errors carry a message for the form.
	Onboard(ctx context.Context, email, orgID, orgName string) (app.IssuedKey, error)
	// PortalOrg returns the org with its active key, masked.
	PortalOrg(ctx context.Context, p app.Principal) (app.TenantView, error)
	// RotateOwnKey replaces the active key, which must be currentKeyID
	// (Conflict otherwise).
	RotateOwnKey(ctx context.Context, p app.Principal, currentKeyID string) (app.IssuedKey, error)
	// UsePortalNonce spends a sign-in link's nonce; fresh only once.
	UsePortalNonce(ctx context.Context, nonce string, maxTTL time.Duration) (fresh bool, err error)
	// EndPortalSession records that session id signed out, on every node.
	EndPortalSession(ctx context.Context, id string, maxTTL time.Duration) error
	// PortalSessionEnded reports whether session id signed out.
	PortalSessionEnded(ctx context.Context, id string) (bool, error)
	// Webhooks lists the org's webhooks (a tenant sees only its own).
	Webhooks(ctx context.Context, p app.Principal, orgID string, limit, offset int) ([]app.WebhookView, int, error)
	// PortalSetWebhookURL creates the org's webhook or changes its URL;
	// a bad URL is a domain error whose message the form shows.
	PortalSetWebhookURL(ctx context.Context, p app.Principal, url string) (app.WebhookView, error)
	// Deliveries lists a webhook's deliveries, newest first.
	Deliveries(ctx context.Context, p app.Principal, orgID, webhookID string, before int64, limit int) ([]app.DeliveryView, int64, error)
}

// OIDCConfig is an OpenID Connect provider partners sign in with (the
// authorization-code flow with PKCE, state and nonce). The provider must
// assert the e-mail address: the ID token needs an email claim and
// email_verified true.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; its discovery document is
	// fetched at the first sign-in (and again after a failure).
	Issuer string
	// ClientID and ClientSecret identify spkey at the provider, where
	// <public URL>/portal/callback must be registered as redirect URI.
	ClientID, ClientSecret string
	// Name is shown on the sign-in button (default: the issuer's host).
	Name string
}

// PartnerConfig configures the Partner Portal.
type PartnerConfig struct {
	// Secret signs session cookies and sign-in links: at least MinSecret
	// random bytes, the same on every node.
	Secret []byte
	// PublicURL is the server's base URL ("https://spkey.example.org"),
	// which the OIDC redirect URI is built from; an https URL makes the
	// cookies Secure. Empty: taken from each request's Host (plain
	// http unless the request came over TLS).
	PublicURL string
	// OIDC, if set, offers sign-in with that provider; without it the
	// only way in is a one-time link from `spkey portal-link`.
	OIDC *OIDCConfig
	// SessionTTL is how long a sign-in lasts (default DefaultSessionTTL,
	// at most MaxLinkTTL).
	SessionTTL time.Duration
	// HTTPClient talks to the OIDC provider (default: 10 s timeout).
	HTTPClient *http.Client
	// Now is the clock of sessions and links (default time.Now).
	Now func() time.Time
}

// Partner serves the Partner Portal at /portal/; build it with NewPartner
// and mount it with Register.
type Partner struct {
	svc       Partners
	cfg       PartnerConfig
	log       *slog.Logger
	cop       *http.CrossOriginProtection
	publicURL string
	sessions  signer
	flows     signer
	links     signer
	oidc      *oidcClient // nil without OIDC
}

// NewPartner builds the portal over svc. It returns an error for a secret
// shorter than MinSecret, a public URL that is not absolute http(s), or
// an OIDC setting without issuer or client id.
func NewPartner(svc Partners, cfg PartnerConfig, log *slog.Logger) (*Partner, error) {
	if len(cfg.Secret) < MinSecret {
		return nil, fmt.Errorf("partner portal: the secret must be at least %d bytes", MinSecret)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SessionTTL > MaxLinkTTL {
		// Signed-out sessions are remembered as long as spent links.
		return nil, fmt.Errorf("partner portal: a session lasts at most %s", MaxLinkTTL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	p := &Partner{svc: svc, cfg: cfg, log: log, cop: http.NewCrossOriginProtection(),
		sessions: newSigner(cfg.Secret, "session"), flows: newSigner(cfg.Secret, "oidc-flow"), links: newSigner(cfg.Secret, "link")}
	if cfg.PublicURL != "" {
		p.publicURL = strings.TrimRight(cfg.PublicURL, "/")
		u, err := url.Parse(p.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("partner portal: public URL %q is not an absolute http(s) URL", cfg.PublicURL)
		}
		if err := p.cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			return nil, fmt.Errorf("partner portal: %w", err)
		}
	}
	if o := cfg.OIDC; o != nil {
		if o.Issuer == "" || o.ClientID == "" {
			return nil, errors.New("partner portal: OIDC needs an issuer URL and a client id")
		}
		if o.Name == "" {
			o2 := *o
			if u, err := url.Parse(o.Issuer); err == nil && u.Host != "" {
				o2.Name = u.Host
			} else {
				o2.Name = o.Issuer
			}
			o = &o2
		}
		p.oidc = &oidcClient{cfg: *o, http: cfg.HTTPClient}
	}
	return p, nil
}

// Register mounts the portal's routes on mux:
//
//	GET  /portal/              landing page, onboarding form or dashboard
//	GET  /portal/login         start OIDC sign-in (redirect to the provider)
//	GET  /portal/callback      OIDC redirect back: session, then /portal/
//	GET  /portal/link          one-time link: a "Sign in as E" button
//	POST /portal/link          spend the link: session, then /portal/
//	POST /portal/onboard       register the org and issue its first key (200, key shown once)
//	POST /portal/key/rotate    new key, old one refused at once (200, key shown once)
//	POST /portal/webhook       set the webhook URL, then /portal/
//	POST /portal/logout        end the session
//
// Every POST needs the session's CSRF token and a same-origin request.
func (p *Partner) Register(mux *http.ServeMux) {
	h := func(pattern string, fn http.HandlerFunc) { mux.Handle(pattern, partnerHeaders(fn)) }
	h("GET /portal/{$}", p.home)
	h("GET /portal/login", p.login)
	h("GET /portal/callback", p.callback)
	h("GET /portal/link", p.linkPage)
	h("POST /portal/link", p.useLink)
	h("POST /portal/onboard", p.onboard)
	h("POST /portal/key/rotate", p.rotate)
	h("POST /portal/webhook", p.setWebhook)
	h("POST /portal/logout", p.logout)
	// The POST-only addresses stay in the address bar after a post; going
	// there again leads home.
	for _, path := range []string{"/portal/onboard", "/portal/key/rotate", "/portal/webhook", "/portal/logout"} {
		h("GET "+path, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/portal/", http.StatusSeeOther) })
	}
	h("GET /portal/", p.notFound)
}

var (
	partnerTmpl = template.Must(template.New("partner").Funcs(template.FuncMap{"when": when}).ParseFS(templatesFS, "templates/partner/*.html"))
	partnerCSS  = mustRead("templates/partner/partner.css")
	// partnerCSP allows the one inline style sheet and nothing else: no
	// script, forms post only here, no site may frame the portal.
	partnerCSP = "default-src 'none'; style-src '" + cssHash(partnerCSS) + "'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

// when shows a stored timestamp ("2026-03-04T05:06:07.000Z") to people:
// "2026-03-04 05:06:07 UTC"; anything else as it is.
func when(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// partnerHeaders sets the security headers every portal answer carries.
// No page may be cached: they hold keys, tokens and CSRF tokens.
func partnerHeaders(next http.Handler) http.Handler { return withHeaders(next, partnerCSP, true) }

// base is the public URL, or the request's scheme and host without one.
func (p *Partner) base(r *http.Request) string {
	if p.publicURL != "" {
		return p.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// oidcClient talks to the OIDC provider; discovery happens at the first
// sign-in, so the server starts while the provider is down.
type oidcClient struct {
	cfg  OIDCConfig
	http *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

func (o *oidcClient) ctx(ctx context.Context) context.Context { return oidc.ClientContext(ctx, o.http) }

// discover returns the provider, fetching its discovery document once.
func (o *oidcClient) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		pr, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("OIDC discovery of %s: %w", o.cfg.Issuer, err)
		}
		o.provider = pr
		o.verifier = pr.VerifierContext(o.ctx(context.Background()), &oidc.Config{ClientID: o.cfg.ClientID})
	}
	return o.provider, o.verifier, nil
}

// oauth is the code-flow configuration with the redirect URI under base.
func (o *oidcClient) oauth(pr *oidc.Provider, base string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: pr.Endpoint(),
		RedirectURL: base + "/portal/callback", Scopes: []string{oidc.ScopeOpenID, "email"}}
}
