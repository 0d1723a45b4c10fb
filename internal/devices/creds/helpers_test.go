package creds_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// validity is how long the test certificates are valid.
const validity = 24 * time.Hour

// env is a store on one backend, a device CA, and the Issuer and
// Authenticator over them.
type env struct {
	st     *store.Store
	ca     *ca.CA
	issuer *creds.Issuer
	auth   *creds.Authenticator
	// now is the wall clock: the TLS handshakes of the end-to-end test
	// check certificates against it.
	now time.Time
}

func newEnv(t *testing.T, b testenv.Backend) *env {
	t.Helper()
	now := time.Now()
	authority, err := ca.New(now, "spkey test device CA")
	if err != nil {
		t.Fatal(err)
	}
	st := testenv.OpenStore(t, b)
	return &env{
		st:     st,
		ca:     authority,
		issuer: creds.NewIssuer(st, authority),
		auth:   creds.NewAuthenticator(st, testenv.Logger(t)),
		now:    now,
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newCSR returns a PEM certificate signing request of a new key, as a
// device would make it.
func newCSR(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
