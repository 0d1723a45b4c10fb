package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// The portal keeps no session table: what it must remember between
// requests travels in HMAC-SHA256-signed values, each signed under its own
// key derived from the portal secret, so a value made for one purpose (a
// sign-in link) is never accepted for another (a session cookie).
//
//	session cookie  spkey_portal       {i: id, e: e-mail ("" before sign-in), x: expiry, c: CSRF token}
//
// Signing out records the session's id as spent (the nonce table every
// node shares), so a copy of the cookie is refused afterwards too.
//	OIDC flow       spkey_portal_oidc  {s: state, n: nonce, v: PKCE verifier, x: expiry}
//	sign-in link    ?token=            {e: e-mail, x: expiry, n: nonce spent once}

// Cookie names and lifetimes.
const (
	SessionCookie = "spkey_portal"
	flowCookie    = "spkey_portal_oidc"
	cookiePath    = "/portal"
	// DefaultSessionTTL is how long a sign-in lasts.
	DefaultSessionTTL = 12 * time.Hour
	// anonTTL is the life of a session before sign-in: it only carries the
	// CSRF token of the sign-in link's form.
	anonTTL = time.Hour
	flowTTL = 10 * time.Minute
	// MaxLinkTTL is the longest a one-time sign-in link may live.
	MaxLinkTTL = 7 * 24 * time.Hour
	// MinSecret is the shortest portal secret accepted, in bytes.
	MinSecret = 32
)

// Errors of reading a signed value.
var (
	errBadSignature = errors.New("bad signature or format")
	errExpired      = errors.New("expired")
)

// signer signs and checks values of one purpose.
type signer struct{ key []byte }

func newSigner(secret []byte, purpose string) signer {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("spkey portal v1 " + purpose))
	return signer{key: m.Sum(nil)}
}

func (s signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// sign returns base64url(JSON(v)) + "." + base64url(HMAC).
func (s signer) sign(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p)), nil
}

// open checks the signature of a sign result and decodes it into v.
func (s signer) open(value string, v any) error {
	p, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 4096 {
		return errBadSignature
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return errBadSignature
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return errBadSignature
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errBadSignature
	}
	return nil
}

// session is the content of the session cookie.
type session struct {
	ID      string `json:"i"`
	Email   string `json:"e,omitempty"`
	Expires int64  `json:"x"`
	CSRF    string `json:"c"`
}

func (s session) signedIn() bool { return s.Email != "" }

// flow is the content of the OIDC flow cookie, set when sign-in starts and
// read back at the callback.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"x"`
}

// link is the content of a one-time sign-in link's token.
type link struct {
	Email   string `json:"e"`
	Expires int64  `json:"x"`
	Nonce   string `json:"n"`
}

// randomToken returns n random bytes, hex-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// LinkToken returns the token of a one-time sign-in link for email, good
// until expires and for one use. secret is the portal secret. It returns
// an error for a malformed address, a secret shorter than MinSecret, or a
// lifetime over MaxLinkTTL (links that long are refused when used).
func LinkToken(secret []byte, email string, now, expires time.Time) (string, error) {
	if len(secret) < MinSecret {
		return "", fmt.Errorf("portal secret must be at least %d bytes", MinSecret)
	}
	e, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return "", err
	}
	if !expires.After(now) || expires.Sub(now) > MaxLinkTTL {
		return "", fmt.Errorf("a sign-in link lives more than 0 and at most %s", MaxLinkTTL)
	}
	return newSigner(secret, "link").sign(link{Email: e, Expires: expires.Unix(), Nonce: randomToken(16)})
}

// LinkURL is the sign-in link of token on a server at publicURL.
func LinkURL(publicURL, token string) string {
	return strings.TrimRight(publicURL, "/") + "/portal/link?token=" + token
}

// readLink checks a link token's signature and expiry (not its nonce).
func (p *Partner) readLink(token string) (link, error) {
	var l link
	if err := p.links.open(token, &l); err != nil || l.Email == "" || l.Nonce == "" {
		return link{}, errBadSignature
	}
	now := p.cfg.Now()
	if now.Unix() >= l.Expires {
		return link{}, errExpired
	}
	if time.Unix(l.Expires, 0).Sub(now) > MaxLinkTTL {
		// Only a leaked secret makes these; the nonce table forgets after
		// MaxLinkTTL, so such a link could be used again later.
		return link{}, errBadSignature
	}
	return l, nil
}

// session returns the request's valid session; ok is false when there is
// none, or it is expired, signed out or its signature does not match.
func (p *Partner) session(r *http.Request) (s session, ok bool, err error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return session{}, false, nil
	}
	if err := p.sessions.open(c.Value, &s); err != nil || s.ID == "" || s.CSRF == "" || p.cfg.Now().Unix() >= s.Expires {
		return session{}, false, nil
	}
	ended, err := p.svc.PortalSessionEnded(r.Context(), s.ID)
	if err != nil || ended {
		return session{}, false, err
	}
	return s, true, nil
}

// startSession sets a new session cookie for email ("" before sign-in)
// with a fresh CSRF token, and returns the session.
func (p *Partner) startSession(w http.ResponseWriter, r *http.Request, email string) (session, error) {
	ttl := p.cfg.SessionTTL
	if email == "" {
		ttl = anonTTL
	}
	s := session{ID: randomToken(16), Email: email, Expires: p.cfg.Now().Add(ttl).Unix(), CSRF: randomToken(32)}
	v, err := p.sessions.sign(s)
	if err != nil {
		return session{}, err
	}
	p.setCookie(w, r, SessionCookie, v, ttl)
	return s, nil
}

// csrfOK compares the form's CSRF token with the session's in constant
// time.
func csrfOK(s session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) == 1
}

func (p *Partner) setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: cookiePath, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode})
}

func (p *Partner) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: cookiePath, MaxAge: -1,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode})
}

// secure says whether cookies get the Secure flag: when the public URL is
// https, or (without one) when the request came over TLS.
func (p *Partner) secure(r *http.Request) bool {
	if p.publicURL != "" {
		return strings.HasPrefix(p.publicURL, "https://")
	}
	return r.TLS != nil
}
