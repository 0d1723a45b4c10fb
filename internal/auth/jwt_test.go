package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const uid = "6f1c2a9e-0b7e-4d3e-9a55-2f0c5e4b1a11"

func newLocal(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.Config{KeyPath: filepath.Join(t.TempDir(), "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLocalTokens(t *testing.T) {
	ctx := context.Background()
	v := newLocal(t)
	tok, err := v.Mint(uid, "A@Example.com", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(ctx, tok)
	if err != nil || c.UserID != uid || c.Email != "a@example.com" {
		t.Fatalf("verify: %+v %v", c, err)
	}
	expired, _ := v.Mint(uid, "", time.Minute, time.Now().Add(-time.Hour))
	other, _ := newLocal(t).Mint(uid, "", time.Hour, time.Now())
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + auth.LocalIssuer + `","sub":"` + uid + `","exp":9999999999}`))
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + "."
	for name, bad := range map[string]string{"expired": expired, "other key": other, "alg none": none, "garbage": "not.a.jwt", "empty": ""} {
		if _, err := v.Verify(ctx, bad); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
	// The key survives a restart: a second verifier on the same file accepts the token.
	dir := t.TempDir()
	v1, _ := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(dir, "k.pem")})
	tok1, _ := v1.Mint(uid, "", time.Hour, time.Now())
	v2, err := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(dir, "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(ctx, tok1); err != nil {
		t.Fatalf("reloaded key refused its own token: %v", err)
	}
}

func TestOutsideIssuer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	iss := testenv.OIDCIssuer(t)
	v, err := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(t.TempDir(), "k.pem"), Issuer: iss.URL, Audience: "spkey", UserClaim: "https://spkey/uid"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims) string { return iss.Sign(t, claims) }
	now := time.Now()
	good := jwt.MapClaims{"iss": iss.URL, "aud": "spkey", "sub": "auth0|x", "https://spkey/uid": uid, "email": "u@example.com", "exp": now.Add(time.Hour).Unix()}
	c, err := v.Verify(ctx, sign(good))
	if err != nil || c.UserID != uid || c.Email != "u@example.com" || c.EmailVerified {
		t.Fatalf("outside token: %+v %v", c, err)
	}
	good["email_verified"] = true
	if c, err := v.Verify(ctx, sign(good)); err != nil || !c.EmailVerified {
		t.Fatalf("outside token with a verified e-mail: %+v %v", c, err)
	}
	good["aud"] = []string{"other-app", "spkey"}
	if _, err := v.Verify(ctx, sign(good)); err != nil {
		t.Fatalf("outside token whose audiences include ours: %v", err)
	}
	good["aud"] = "spkey"
	if _, err := auth.NewVerifier(ctx, auth.Config{KeyPath: filepath.Join(t.TempDir(), "k2.pem"), JWKSURL: iss.URL + "/jwks"}); err == nil {
		t.Fatal("a JWKS URL without an issuer was accepted")
	}
	cases := map[string]jwt.MapClaims{}
	for name, mutate := range map[string]func(jwt.MapClaims){
		"wrong audience":        func(m jwt.MapClaims) { m["aud"] = "other" },
		"no audience":           func(m jwt.MapClaims) { delete(m, "aud") },
		"other apps' audiences": func(m jwt.MapClaims) { m["aud"] = []string{"other-app", "spkey-admin"} },
		"wrong issuer":          func(m jwt.MapClaims) { m["iss"] = "https://evil.example" },
		"expired":               func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Hour).Unix() },
		"no user claim":         func(m jwt.MapClaims) { delete(m, "https://spkey/uid") },
	} {
		m := jwt.MapClaims{}
		for k, val := range good {
			m[k] = val
		}
		mutate(m)
		cases[name] = m
	}
	for name, m := range cases {
		if _, err := v.Verify(ctx, sign(m)); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}
