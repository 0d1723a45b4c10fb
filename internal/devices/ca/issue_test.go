package ca_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/ca"
)

// leafProps is what the tests check of an issued certificate.
type leafProps struct {
	CN                  string
	IsCA                bool
	KeyUsage            x509.KeyUsage
	ExtKeyUsage         []x509.ExtKeyUsage
	NotBefore, NotAfter time.Time
	DNSNames            []string
	IPs                 []string
	Emails              []string
	URIs                int
	Serial128           bool
}

func propsOf(cert *x509.Certificate) leafProps {
	p := leafProps{
		CN: cert.Subject.CommonName, IsCA: cert.IsCA, KeyUsage: cert.KeyUsage, ExtKeyUsage: cert.ExtKeyUsage,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DNSNames: cert.DNSNames, Emails: cert.EmailAddresses,
		URIs: len(cert.URIs), Serial128: cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() <= 128,
	}
	for _, ip := range cert.IPAddresses {
		p.IPs = append(p.IPs, ip.String())
	}
	return p
}

func clientProps(thing string, validity time.Duration) leafProps {
	return leafProps{
		CN: thing, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity), Serial128: true,
	}
}

func TestIssueClient(t *testing.T) {
	c := newCA(t, "issuing CA")
	other := newCA(t, "another CA")
	tests := []struct {
		thing    string
		validity time.Duration
	}{
		{"lock-1", 24 * time.Hour},
		{"Lock_01:front-door", 365 * 24 * time.Hour},
		{strings.Repeat("z", 128), time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.thing[:min(len(tt.thing), 20)], func(t *testing.T) {
			certPEM, keyPEM, fp, err := c.IssueClient(tt.thing, now, tt.validity)
			if err != nil {
				t.Fatalf("IssueClient: %v", err)
			}
			cert := parseCert(t, certPEM)
			if diff := cmp.Diff(clientProps(tt.thing, tt.validity), propsOf(cert)); diff != "" {
				t.Errorf("certificate (-want +got):\n%s", diff)
			}
			if fp != ca.Fingerprint(cert) {
				t.Errorf("fingerprint %s, want %s", fp, ca.Fingerprint(cert))
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Errorf("certificate and key do not pair: %v", err)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
				t.Errorf("key PEM is not a PKCS #8 PRIVATE KEY block")
			}
			if _, err := cert.Verify(clientOpts(c)); err != nil {
				t.Errorf("does not verify for client auth against its CA: %v", err)
			}
			if _, err := cert.Verify(clientOpts(other)); err == nil {
				t.Errorf("verifies against another CA")
			}
			serverOpts := clientOpts(c)
			serverOpts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if _, err := cert.Verify(serverOpts); err == nil {
				t.Errorf("verifies for server auth")
			}
		})
	}
}

func TestIssueClientFreshKeysAndSerials(t *testing.T) {
	c := newCA(t, "issuing CA")
	a, _, fpA, err := c.IssueClient("lock-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _, fpB, err := c.IssueClient("lock-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certA, certB := parseCert(t, a), parseCert(t, b)
	if fpA == fpB || certA.SerialNumber.Cmp(certB.SerialNumber) == 0 || certA.PublicKey.(*ecdsa.PublicKey).Equal(certB.PublicKey) {
		t.Errorf("two issues for one thing share a fingerprint, serial or key")
	}
}

func TestIssueClientRefuses(t *testing.T) {
	c := newCA(t, "issuing CA")
	caEnd := c.Certificate().NotAfter
	tests := []struct {
		name     string
		thing    string
		now      time.Time
		validity time.Duration
		want     error // nil: any error
	}{
		{"empty thing", "", now, time.Hour, ca.ErrInvalidThing},
		{"space", "lock 1", now, time.Hour, ca.ErrInvalidThing},
		{"slash", "org/lock", now, time.Hour, ca.ErrInvalidThing},
		{"too long", strings.Repeat("a", 129), now, time.Hour, ca.ErrInvalidThing},
		{"zero validity", "lock-1", now, 0, nil},
		{"negative validity", "lock-1", now, -time.Hour, nil},
		{"CA expired", "lock-1", caEnd.Add(time.Second), time.Hour, ca.ErrCAExpired},
		{"CA not yet valid", "lock-1", now.Add(-time.Hour), time.Hour, ca.ErrCAExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, fp, err := c.IssueClient(tt.thing, tt.now, tt.validity)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("IssueClient = %q, %d key bytes, %q, %v; want error %v", certPEM, len(keyPEM), fp, err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestIssueClientStopsAtCAEnd(t *testing.T) {
	c := newCA(t, "issuing CA")
	caEnd := c.Certificate().NotAfter
	at := caEnd.Add(-time.Hour)
	certPEM, _, _, err := c.IssueClient("lock-1", at, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCert(t, certPEM).NotAfter; !got.Equal(caEnd) {
		t.Errorf("NotAfter = %v, want the CA's end %v", got, caEnd)
	}
}

func TestSignCSRTakesOnlyThePublicKey(t *testing.T) {
	c := newCA(t, "issuing CA")
	csrPEM, key := newCSR(t, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"evil"}},
		DNSNames:       []string{"broker.example.com"},
		EmailAddresses: []string{"x@example.com"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "example.com"}},
		IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
		ExtraExtensions: []pkix.Extension{{ // basicConstraints: CA true
			Id: []int{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff},
		}},
	})
	certPEM, fp, err := c.SignCSR(csrPEM, "lock-9", now, 30*24*time.Hour)
	if err != nil {
		t.Fatalf("SignCSR: %v", err)
	}
	cert := parseCert(t, certPEM)
	if diff := cmp.Diff(clientProps("lock-9", 30*24*time.Hour), propsOf(cert)); diff != "" {
		t.Errorf("certificate (-want +got):\n%s", diff)
	}
	if cert.Subject.String() != "CN=lock-9" {
		t.Errorf("subject %q, want CN=lock-9 only", cert.Subject.String())
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("certificate is not for the CSR's key")
	}
	if fp != ca.Fingerprint(cert) {
		t.Errorf("fingerprint %s, want %s", fp, ca.Fingerprint(cert))
	}
	if _, err := cert.Verify(clientOpts(c)); err != nil {
		t.Errorf("does not verify for client auth: %v", err)
	}
}

func TestSignCSRRefuses(t *testing.T) {
	c := newCA(t, "issuing CA")
	good, _ := newCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "lock-1"}})
	block, _ := pem.Decode(good)
	der := append([]byte{}, block.Bytes...)
	der[len(der)-1] ^= 0x01 // the last byte of the signature
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, weak)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: weakDER})
	caPEM, _, err := c.PEM()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		csr   []byte
		thing string
		want  error
	}{
		{"bad signature", badSig, "lock-1", ca.ErrInvalidCSR},
		{"garbage", []byte("garbage"), "lock-1", ca.ErrInvalidCSR},
		{"empty", nil, "lock-1", ca.ErrInvalidCSR},
		{"garbage in a PEM block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("junk")}), "lock-1", ca.ErrInvalidCSR},
		{"a certificate", caPEM, "lock-1", ca.ErrInvalidCSR},
		{"two CSRs", append(append([]byte{}, good...), good...), "lock-1", ca.ErrInvalidCSR},
		{"RSA 1024", weakPEM, "lock-1", ca.ErrInvalidCSR},
		{"bad thing", good, "lock 1", ca.ErrInvalidThing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, fp, err := c.SignCSR(tt.csr, tt.thing, now, time.Hour)
			if !errors.Is(err, tt.want) {
				t.Fatalf("SignCSR = %q, %q, %v; want error %v", certPEM, fp, err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestServerCert(t *testing.T) {
	c := newCA(t, "issuing CA")
	got, err := c.ServerCert([]string{"mqtt.example.com", "127.0.0.1", "localhost", "::1", "*.spkey.test"}, now, 90*24*time.Hour)
	if err != nil {
		t.Fatalf("ServerCert: %v", err)
	}
	want := leafProps{
		CN: "mqtt.example.com", KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(90 * 24 * time.Hour),
		DNSNames: []string{"mqtt.example.com", "localhost", "*.spkey.test"}, IPs: []string{"127.0.0.1", "::1"}, Serial128: true,
	}
	if diff := cmp.Diff(want, propsOf(got.Leaf)); diff != "" {
		t.Errorf("certificate (-want +got):\n%s", diff)
	}
	if len(got.Certificate) != 1 || string(got.Certificate[0]) != string(got.Leaf.Raw) {
		t.Errorf("chain is not the leaf alone")
	}
	if !got.PrivateKey.(*ecdsa.PrivateKey).PublicKey.Equal(got.Leaf.PublicKey) {
		t.Errorf("key does not match the certificate")
	}
	for _, host := range []string{"mqtt.example.com", "127.0.0.1", "::1", "a.spkey.test"} {
		opts := x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, DNSName: host}
		if _, err := got.Leaf.Verify(opts); err != nil {
			t.Errorf("does not verify for %s: %v", host, err)
		}
	}
	opts := x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := got.Leaf.Verify(opts); err == nil {
		t.Errorf("verifies for client auth")
	}
}

func TestServerCertRefuses(t *testing.T) {
	c := newCA(t, "issuing CA")
	tests := []struct {
		name  string
		hosts []string
		want  error // nil: any error
	}{
		{"no host", nil, ca.ErrInvalidHost},
		{"empty host", []string{"localhost", ""}, ca.ErrInvalidHost},
		{"space", []string{"my host"}, ca.ErrInvalidHost},
		{"URL", []string{"mqtts://broker:8883"}, ca.ErrInvalidHost},
		{"empty label", []string{"a..b"}, ca.ErrInvalidHost},
		{"trailing dot", []string{"a.b."}, ca.ErrInvalidHost},
		{"lone star", []string{"*"}, ca.ErrInvalidHost},
		{"inner star", []string{"a.*.b"}, ca.ErrInvalidHost},
		{"IPv6 zone", []string{"fe80::1%eth0"}, ca.ErrInvalidHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.ServerCert(tt.hosts, now, time.Hour)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ServerCert = %v, %v; want error %v", got.Leaf, err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
	if _, err := c.ServerCert([]string{"localhost"}, now, 0); err == nil {
		t.Errorf("ServerCert with zero validity: no error")
	}
}

// foreignClient makes a client certificate for thing, valid now, that
// another CA, named caName, signed.
func foreignClient(t *testing.T, caName, thing string) tls.Certificate {
	t.Helper()
	other, err := ca.New(time.Now(), caName)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := other.IssueClient(thing, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
