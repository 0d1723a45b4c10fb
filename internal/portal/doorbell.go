// Package portal serves spkey's server-rendered web pages. The first is
// the visitor's doorbell page: a public, mobile-first page, reached by
// scanning a QR code at the door, from which a visitor rings the lock's
// residents. Pages are html/template with embedded templates and CSS and
// no JavaScript at all.
package portal

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
)

//go:embed templates
var templatesFS embed.FS

// Ringer is what the doorbell page needs from the application layer;
// *app.Service satisfies it.
type Ringer interface {
	// Residents lists lock lockID's residents; it returns a domain
	// NotFound error for an unknown lock.
	Residents(ctx context.Context, p app.Principal, lockID int64) ([]app.ResidentView, error)
	// RingFromVisitor records a ring from the public page.
	RingFromVisitor(ctx context.Context, lockID int64, residentUserID, visitorName, message string) (app.RingAnswer[doorbell.DoorbellRang], error)
}

// Default rate limits of the doorbell page.
var (
	// DefaultPerClient lets one client address ring one lock 3 times at
	// once, then once every 20 seconds (3 a minute).
	DefaultPerClient = Limit{Every: 20 * time.Second, Burst: 3}
	// DefaultPerLock lets a lock be rung 20 times at once, then once every
	// 3 seconds (20 a minute), whoever rings.
	DefaultPerLock = Limit{Every: 3 * time.Second, Burst: 20}
)

// DoorbellConfig tunes the doorbell page. The zero value is usable.
type DoorbellConfig struct {
	// PublicURL is the base URL the QR code points at, such as
	// "https://door.example.org" (a trailing slash is ignored). Empty:
	// derive it from each request's Host, with the scheme from TLS or,
	// only when TrustProxy is set, from X-Forwarded-Proto.
	PublicURL string
	// PerClient limits rings per lock and client address (default
	// DefaultPerClient); PerLock limits rings per lock (default
	// DefaultPerLock). A ring needs a token from both.
	PerClient, PerLock Limit
	// TrustProxy says a reverse proxy in front sets X-Forwarded-Proto and
	// appends the client's address to X-Forwarded-For. Leave it off when
	// clients reach spkey directly: they could forge both headers.
	TrustProxy bool
	// Now is the clock of the rate limiter (default time.Now).
	Now func() time.Time
}

// Doorbell serves the visitor's doorbell page; build it with NewDoorbell
// and mount it with Register.
type Doorbell struct {
	svc       Ringer
	cfg       DoorbellConfig
	log       *slog.Logger
	lim       *limiter
	cop       *http.CrossOriginProtection
	publicURL string // cfg.PublicURL without the trailing slash
	pubHost   string // its host, also accepted in Origin and Referer
}

// Input limits, the same as the domain's (doorbell.MaxVisitorName and
// doorbell.MaxMessage); the page checks them before ringing.
const (
	maxVisitorName = 80
	maxMessage     = 280
	// maxBody bounds a form post: the two fields fully percent-encoded
	// with 4-byte runes fit easily.
	maxBody = 16 << 10
)

var (
	pageTmpl = template.Must(template.ParseFS(templatesFS, "templates/doorbell.html"))
	pageCSS  = mustRead("templates/doorbell.css")
	// csp allows exactly the one inline style sheet, by hash; no script
	// may run, the form may post only here, and no site may frame us.
	csp = "default-src 'none'; style-src '" + cssHash(pageCSS) + "'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

func mustRead(name string) string {
	b, err := templatesFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func cssHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// NewDoorbell builds the doorbell page over svc; zero fields of cfg get
// their defaults and a nil log discards.
func NewDoorbell(svc Ringer, cfg DoorbellConfig, log *slog.Logger) *Doorbell {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.PerClient.valid() {
		cfg.PerClient = DefaultPerClient
	}
	if !cfg.PerLock.valid() {
		cfg.PerLock = DefaultPerLock
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Doorbell{svc: svc, cfg: cfg, log: log, cop: http.NewCrossOriginProtection()}
	d.lim = newLimiter(cfg.Now, cfg.PerClient, cfg.PerLock)
	if cfg.PublicURL != "" {
		d.publicURL = strings.TrimRight(cfg.PublicURL, "/")
		u, err := url.Parse(d.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			log.Warn("doorbell: PublicURL is not an absolute http(s) URL; QR codes will carry it as is", "public_url", cfg.PublicURL)
		} else {
			d.pubHost = u.Host
			if err := d.cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
				log.Warn("doorbell: PublicURL origin not trusted for form posts", "public_url", cfg.PublicURL, "err", err)
			}
		}
	}
	return d
}

// Register mounts the doorbell's routes on mux:
//
//	GET  /doorbell/{lockId}         the page (404 page for an unknown lock)
//	POST /doorbell/{lockId}         ring: 200 confirmation, 400, 403, 404, 429
//	GET  /doorbell/{lockId}/qr.png  the page's URL as a PNG QR code (?size=128..1024)
func (d *Doorbell) Register(mux *http.ServeMux) {
	mux.Handle("GET /doorbell/{lockId}", secure(http.HandlerFunc(d.page)))
	mux.Handle("POST /doorbell/{lockId}", secure(http.HandlerFunc(d.ring)))
	mux.Handle("GET /doorbell/{lockId}/qr.png", secure(http.HandlerFunc(d.qr)))
}

// secure sets the security headers every doorbell answer carries.
func secure(next http.Handler) http.Handler { return withHeaders(next, csp, false) }

// withHeaders sets the security headers of every page: the page's CSP,
// no sniffing, no referrer (a link page's URL carries its token), no
// framing and, with noStore, no caching.
func withHeaders(next http.Handler, policy string, noStore bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if noStore {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// lockID reads the {lockId} path segment; only the canonical decimal
// form of a positive id names a lock ("007" and "+7" do not).
func lockID(r *http.Request) (int64, bool) {
	s := r.PathValue("lockId")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, false
	}
	return id, true
}

// pageURL is the absolute URL of lock id's page, as the QR code carries it.
func (d *Doorbell) pageURL(r *http.Request, id int64) string {
	path := "/doorbell/" + strconv.FormatInt(id, 10)
	if d.publicURL != "" {
		return d.publicURL + path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if d.cfg.TrustProxy {
		p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		if p = strings.ToLower(strings.TrimSpace(p)); p == "http" || p == "https" {
			scheme = p
		}
	}
	return scheme + "://" + r.Host + path
}
