package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/ca"
)

// now is the fixed time of the tests that do not handshake.
var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// newCA makes a CA at now or fails the test.
func newCA(t *testing.T, name string) *ca.CA {
	t.Helper()
	c, err := ca.New(now, name)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return c
}

// parseCert reads one PEM certificate or fails the test.
func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return cert
}

func TestNew(t *testing.T) {
	c := newCA(t, "spkey device CA")
	cert := c.Certificate()
	type props struct {
		CN                  string
		SelfSigned          bool
		IsCA, BasicValid    bool
		MaxPathLen          int
		MaxPathLenZero      bool
		KeyUsage            x509.KeyUsage
		NotBefore, NotAfter time.Time
		Curve               string
		SerialBits          bool
	}
	pub, _ := cert.PublicKey.(*ecdsa.PublicKey)
	curve := ""
	if pub != nil {
		curve = pub.Curve.Params().Name
	}
	got := props{
		CN:             cert.Subject.CommonName,
		SelfSigned:     cert.CheckSignatureFrom(cert) == nil && cert.Issuer.String() == cert.Subject.String(),
		IsCA:           cert.IsCA,
		BasicValid:     cert.BasicConstraintsValid,
		MaxPathLen:     cert.MaxPathLen,
		MaxPathLenZero: cert.MaxPathLenZero,
		KeyUsage:       cert.KeyUsage,
		NotBefore:      cert.NotBefore,
		NotAfter:       cert.NotAfter,
		Curve:          curve,
		SerialBits:     cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() <= 128,
	}
	want := props{
		CN: "spkey device CA", SelfSigned: true, IsCA: true, BasicValid: true,
		MaxPathLen: 0, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: now.Add(-time.Minute), NotAfter: time.Date(2036, 12, 3, 12, 0, 0, 0, time.UTC),
		Curve: "P-256", SerialBits: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CA certificate (-want +got):\n%s", diff)
	}
}

func TestNewRefusesBadName(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("x", 65)} {
		if _, err := ca.New(now, name); !errors.Is(err, ca.ErrInvalidCA) {
			t.Errorf("New(%q) = %v, want ErrInvalidCA", name, err)
		}
	}
}

func TestPEMParseRoundTrip(t *testing.T) {
	c := newCA(t, "round trip CA")
	certPEM, keyPEM, err := c.PEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ca.Parse(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("Parse(PEM()): %v", err)
	}
	if diff := cmp.Diff(ca.Fingerprint(c.Certificate()), ca.Fingerprint(back.Certificate())); diff != "" {
		t.Errorf("fingerprint after round trip (-want +got):\n%s", diff)
	}
	// The parsed CA holds the same key: what it issues verifies against
	// the original's pool.
	clientPEM, _, _, err := back.IssueClient("lock-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, clientPEM).Verify(clientOpts(c)); err != nil {
		t.Errorf("certificate of the parsed CA does not verify against the original: %v", err)
	}
	certPEM2, keyPEM2, err := back.PEM()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(certPEM)+string(keyPEM), string(certPEM2)+string(keyPEM2)); diff != "" {
		t.Errorf("PEM after round trip (-want +got):\n%s", diff)
	}
}

func TestParseAcceptsSEC1Key(t *testing.T) {
	c := newCA(t, "sec1 CA")
	certPEM, keyPEM, err := c.PEM()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	// As `openssl ecparam -genkey` writes it: the curve, then the key.
	p256OID := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	withParams := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: p256OID}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	back, err := ca.Parse(certPEM, withParams)
	if err != nil {
		t.Fatalf("Parse with a SEC 1 key: %v", err)
	}
	if got, want := ca.Fingerprint(back.Certificate()), ca.Fingerprint(c.Certificate()); got != want {
		t.Errorf("fingerprint = %s, want %s", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	c := newCA(t, "CA one")
	other := newCA(t, "CA two")
	certPEM, keyPEM, err := c.PEM()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := other.PEM()
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKey, _, err := c.IssueClient("lock-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})
	tests := []struct {
		name      string
		cert, key []byte
		want      error
	}{
		{"garbage certificate", []byte("not a certificate"), keyPEM, ca.ErrInvalidCA},
		{"key as certificate", keyPEM, keyPEM, ca.ErrInvalidCA},
		{"two certificates", append(append([]byte{}, certPEM...), leafPEM...), keyPEM, ca.ErrInvalidCA},
		{"garbage key", certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ca.ErrInvalidCA},
		{"certificate as key", certPEM, certPEM, ca.ErrInvalidCA},
		{"RSA key", certPEM, rsaPEM, ca.ErrInvalidCA},
		{"not a CA certificate", leafPEM, leafKey, ca.ErrInvalidCA},
		{"key of another CA", certPEM, otherKey, ca.ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ca.Parse(tt.cert, tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %v, %v; want error %v", got, err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestValidateThing(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lock-1", true},
		{"a", true},
		{"Lock_01:front-door", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"lock 1", false},
		{"lock/1", false},
		{"lock.1", false},
		{"lock+1", false},
		{"#", false},
		{"lock\x00", false},
		{"löck", false},
	}
	for _, tt := range tests {
		err := ca.ValidateThing(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidateThing(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ca.ErrInvalidThing) {
			t.Errorf("ValidateThing(%q) = %v, want ErrInvalidThing", tt.name, err)
		}
	}
}

func TestFingerprintAndThing(t *testing.T) {
	c := newCA(t, "fingerprint CA")
	certPEM, _, fp, err := c.IssueClient("lock-7", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, certPEM)
	sum := sha256.Sum256(cert.Raw)
	want := hex.EncodeToString(sum[:])
	if diff := cmp.Diff([]string{want, want, "lock-7"}, []string{fp, ca.Fingerprint(cert), ca.Thing(cert)}); diff != "" {
		t.Errorf("fingerprint from IssueClient, Fingerprint, Thing (-want +got):\n%s", diff)
	}
	if fp != strings.ToLower(fp) || len(fp) != 64 {
		t.Errorf("fingerprint %q is not 64 lowercase hex digits", fp)
	}
}

// clientOpts verifies a client certificate against c's pool at now.
func clientOpts(c *ca.CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// newCSR makes a PEM CSR for a new P-256 key with tmpl (nil: empty).
func newCSR(t *testing.T, tmpl *x509.CertificateRequest) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}
