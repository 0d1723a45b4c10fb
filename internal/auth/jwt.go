// Package auth verifies and mints the JWTs spkey accepts: tokens signed by
// the server's own key (the embedded default, for local use) and tokens of
// an outside OIDC issuer checked against its JWKS.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// LocalIssuer is the iss claim of tokens minted by this server.
const LocalIssuer = "urn:spkey:local"

// Config says which tokens to accept.
type Config struct {
	// KeyPath is the PEM file of the local ES256 signing key, created on
	// first use.
	KeyPath string
	// Issuer is an outside OIDC issuer URL whose tokens are accepted too.
	Issuer string
	// JWKSURL overrides discovery of the outside issuer's key set.
	JWKSURL string
	// Audience, when set, must be in the aud claim of outside tokens.
	Audience string
	// UserClaim names the claim that carries the user id ("sub").
	UserClaim string
}

// Claims is what spkey takes from a verified token.
type Claims struct {
	UserID string
	Email  string
	// EmailVerified: the issuer vouches for Email (always true for the
	// local issuer, whose tokens the operator mints).
	EmailVerified bool
	// Phone is the phone_number claim; PhoneVerified as EmailVerified,
	// from phone_number_verified.
	Phone         string
	PhoneVerified bool
}

// Verifier checks bearer tokens.
type Verifier struct {
	key    *ecdsa.PrivateKey
	kid    string
	cfg    Config
	remote keyfunc.Keyfunc
}

// ErrInvalid reports a token that must be refused; its text is safe to
// show to the client.
var ErrInvalid = errors.New("invalid token")

// NewVerifier loads (or creates) the local key and, when an outside issuer
// is configured, starts fetching its JWKS (refreshed in the background until
// ctx ends).
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	key, err := loadOrCreateKey(cfg.KeyPath)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	v := &Verifier{key: key, kid: hex.EncodeToString(sum[:8]), cfg: cfg}
	if cfg.JWKSURL != "" && cfg.Issuer == "" {
		// Keys alone do not say whose tokens they sign: without the
		// issuer, any token of any tenant of a shared provider would pass.
		return nil, errors.New("--jwt-jwks-url needs --jwt-issuer: outside tokens' iss must be checked")
	}
	if cfg.Issuer != "" || cfg.JWKSURL != "" {
		url := cfg.JWKSURL
		if url == "" {
			if url, err = discoverJWKS(ctx, cfg.Issuer); err != nil {
				return nil, err
			}
		}
		if v.remote, err = keyfunc.NewDefaultCtx(ctx, []string{url}); err != nil {
			return nil, fmt.Errorf("load JWKS %s: %w", url, err)
		}
	}
	return v, nil
}

func discoverJWKS(ctx context.Context, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	defer resp.Body.Close()
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oidc discovery: %s answered %d", issuer, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery: no jwks_uri from %s", issuer)
	}
	return doc.JWKSURI, nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("read signing key %s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read signing key %s: %w", path, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("read signing key %s: not an ECDSA key", path)
		}
		return ek, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key folder: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return k, nil
}

// Mint signs a token for sub with the local key.
func (v *Verifier) Mint(sub, email string, ttl time.Duration, now time.Time) (string, error) {
	return v.MintPhone(sub, email, "", ttl, now)
}

// MintPhone is Mint with a phone_number claim too (none when phone is "").
func (v *Verifier) MintPhone(sub, email, phone string, ttl time.Duration, now time.Time) (string, error) {
	claims := jwt.MapClaims{"iss": LocalIssuer, "sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if v.cfg.UserClaim != "sub" {
		claims[v.cfg.UserClaim] = sub
	}
	if email != "" {
		claims["email"] = email
	}
	if phone != "" {
		claims["phone_number"] = phone
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = v.kid
	return t.SignedString(v.key)
}

// Verify checks a token's signature, algorithm, expiry and issuer and
// returns its claims. Every failure wraps ErrInvalid.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	var unverified jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &unverified); err != nil {
		return Claims{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	iss, _ := unverified["iss"].(string)
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(30 * time.Second)}
	var kf jwt.Keyfunc
	switch {
	case iss == LocalIssuer:
		opts = append(opts, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(LocalIssuer))
		kf = func(*jwt.Token) (any, error) { return &v.key.PublicKey, nil }
	case v.remote != nil && iss == v.cfg.Issuer:
		opts = append(opts, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"}), jwt.WithIssuer(v.cfg.Issuer))
		if v.cfg.Audience != "" {
			opts = append(opts, jwt.WithAudience(v.cfg.Audience))
		}
		kf = v.remote.KeyfuncCtx(ctx)
	default:
		return Claims{}, fmt.Errorf("%w: unknown issuer", ErrInvalid)
	}
	var claims jwt.MapClaims
	if _, err := jwt.NewParser(opts...).ParseWithClaims(token, &claims, kf); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, fmt.Errorf("%w: expired", ErrInvalid)
		}
		return Claims{}, fmt.Errorf("%w: verification failed", ErrInvalid)
	}
	uid, _ := claims[v.cfg.UserClaim].(string)
	if uid == "" {
		return Claims{}, fmt.Errorf("%w: no %s claim", ErrInvalid, v.cfg.UserClaim)
	}
	email, _ := claims["email"].(string)
	verified := iss == LocalIssuer
	if b, ok := claims["email_verified"].(bool); ok && b {
		verified = true
	}
	phone, _ := claims["phone_number"].(string)
	phoneVerified := iss == LocalIssuer
	if b, ok := claims["phone_number_verified"].(bool); ok && b {
		phoneVerified = true
	}
	return Claims{UserID: uid, Email: strings.ToLower(email), EmailVerified: verified, Phone: phone, PhoneVerified: phoneVerified}, nil
}

// JWKS returns the public half of the local key as a JSON Web Key Set.
func (v *Verifier) JWKS() []byte {
	// Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
	pt, _ := v.key.PublicKey.Bytes()
	enc := base64.RawURLEncoding.EncodeToString
	set := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": v.kid,
		"x": enc(pt[1:33]), "y": enc(pt[33:65]),
	}}}
	b, _ := json.Marshal(set)
	return b
}
