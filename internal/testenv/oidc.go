package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is an OIDC issuer we cannot run for real (an identity provider):
// discovery and JWKS over real HTTP, one RS256 key with kid "k1", and the
// authorization-code flow with PKCE for clients added with AddClient:
// /authorize approves at once as the Login set with SetLogin and redirects
// back with a one-time code; /token checks the code, the client secret,
// the redirect URI and the PKCE verifier and answers an ID token carrying
// the nonce, email and email_verified.
type Issuer struct {
	URL string
	key *rsa.PrivateKey

	mu       sync.Mutex
	clients  map[string]oidcClient
	login    Login
	codes    map[string]authCode
	exchange int // successful /token answers
}

// Login is who the issuer's /authorize signs in.
type Login struct {
	Subject       string
	Email         string
	EmailVerified bool
	// OmitEmailVerified leaves email_verified out of the ID token.
	OmitEmailVerified bool
}

type oidcClient struct{ secret, redirectURI string }

type authCode struct {
	clientID, redirectURI, nonce, challenge string
	login                                   Login
	expires                                 time.Time
}

// OIDCIssuer starts an Issuer, stopped when the test ends.
func OIDCIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	i := &Issuer{key: key, clients: map[string]oidcClient{}, codes: map[string]authCode{},
		login: Login{Subject: "user-1", Email: "partner@example.com", EmailVerified: true}}
	srv := httptest.NewServer(http.HandlerFunc(i.serve))
	t.Cleanup(srv.Close)
	i.URL = srv.URL
	return i
}

// AddClient registers an OAuth client allowed to use the code flow with
// the one redirect URI redirectURI.
func (i *Issuer) AddClient(id, secret, redirectURI string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.clients[id] = oidcClient{secret: secret, redirectURI: redirectURI}
}

// SetLogin sets who /authorize signs in from now on.
func (i *Issuer) SetLogin(l Login) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.login = l
}

// Exchanges returns how many codes /token has exchanged for tokens.
func (i *Issuer) Exchanges() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.exchange
}

func (i *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		issuerJSON(w, http.StatusOK, map[string]any{
			"issuer": i.URL, "jwks_uri": i.URL + "/jwks",
			"authorization_endpoint": i.URL + "/authorize", "token_endpoint": i.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "code_challenge_methods_supported": []string{"S256"},
			"scopes_supported": []string{"openid", "email", "profile"},
		})
	case "/jwks":
		n := base64.RawURLEncoding.EncodeToString(i.key.N.Bytes())
		e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(i.key.E)).Bytes())
		issuerJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": n, "e": e}}})
	case "/authorize":
		i.authorize(w, r)
	case "/token":
		i.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

// authorize approves a code-flow request at once, as a user who has
// already consented would be.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	i.mu.Lock()
	defer i.mu.Unlock()
	c, ok := i.clients[q.Get("client_id")]
	switch {
	case !ok:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case q.Get("redirect_uri") != c.redirectURI:
		http.Error(w, "redirect_uri not registered", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(c.redirectURI)
	v := back.Query()
	v.Set("state", q.Get("state"))
	switch {
	case q.Get("response_type") != "code":
		v.Set("error", "unsupported_response_type")
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		v.Set("error", "invalid_request")
		v.Set("error_description", "PKCE with S256 is required")
	default:
		var b [16]byte
		_, _ = rand.Read(b[:])
		code := hex.EncodeToString(b[:])
		i.codes[code] = authCode{clientID: q.Get("client_id"), redirectURI: c.redirectURI, nonce: q.Get("nonce"),
			challenge: q.Get("code_challenge"), login: i.login, expires: time.Now().Add(time.Minute)}
		v.Set("code", code)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token exchanges a code once; client authentication by HTTP Basic or by
// client_secret in the form.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		issuerJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: form-encoded before Basic encoding.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	c, ok := i.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		issuerJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	code := r.PostForm.Get("code")
	ac, ok := i.codes[code]
	delete(i.codes, code) // a code is good for one try
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case r.PostForm.Get("grant_type") != "authorization_code":
		issuerJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	case !ok || ac.clientID != id || ac.redirectURI != r.PostForm.Get("redirect_uri") || time.Now().After(ac.expires):
		issuerJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != ac.challenge:
		issuerJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verifier does not match"})
		return
	}
	now := time.Now()
	claims := jwt.MapClaims{"iss": i.URL, "aud": id, "sub": ac.login.Subject, "email": ac.login.Email,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if ac.nonce != "" {
		claims["nonce"] = ac.nonce
	}
	if !ac.login.OmitEmailVerified {
		claims["email_verified"] = ac.login.EmailVerified
	}
	tk := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tk.Header["kid"] = "k1"
	idToken, err := tk.SignedString(i.key)
	if err != nil {
		issuerJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	i.exchange++
	w.Header().Set("Cache-Control", "no-store")
	issuerJSON(w, http.StatusOK, map[string]any{"access_token": "at-" + code, "token_type": "Bearer", "expires_in": 300, "id_token": idToken})
}

func issuerJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Sign returns claims as a token signed by the issuer's key.
func (i *Issuer) Sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tk.Header["kid"] = "k1"
	s, err := tk.SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
