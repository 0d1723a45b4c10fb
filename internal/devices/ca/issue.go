package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"
)

// minRSABits is the smallest RSA key SignCSR accepts.
const minRSABits = 2048

// IssueClient makes a client certificate for thing, with a new ECDSA
// P-256 key: common name thing, for client authentication only, a random
// 128-bit serial, valid from a minute before now for validity (but not
// past the CA's own end). It returns the certificate and the key as PEM
// (CERTIFICATE, PKCS #8 PRIVATE KEY) and the certificate's Fingerprint.
// The key is the thing's secret: hand it to the device, do not keep it.
// It returns an error wrapping ErrInvalidThing for a bad thing name, one
// wrapping ErrCAExpired if the CA is not valid at now, and an error if
// validity is not positive.
func (c *CA) IssueClient(thing string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, fingerprint string, err error) {
	if err := ValidateThing(thing); err != nil {
		return nil, nil, "", fmt.Errorf("issue client certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue client certificate for %q: generate key: %w", thing, err)
	}
	cert, err := c.sign(clientTemplate(thing), &key.PublicKey, now, validity)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue client certificate for %q: %w", thing, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue client certificate for %q: %w", thing, err)
	}
	return encodeCert(cert.Raw), keyPEM, Fingerprint(cert), nil
}

// SignCSR makes a client certificate for thing from a device's PEM
// certificate signing request, which keeps its private key to itself.
// Only the CSR's public key is taken: the certificate is the one
// IssueClient would make (common name thing, client authentication
// only), whatever subject, names or extensions the CSR asks for. It
// returns the certificate as PEM and its Fingerprint. It returns an
// error wrapping ErrInvalidThing for a bad thing name, one wrapping
// ErrInvalidCSR if the CSR is not PEM, does not parse, is not signed by
// its key, or has a key that is not ECDSA P-256/P-384/P-521, RSA of at
// least 2048 bits or Ed25519, one wrapping ErrCAExpired if the CA is not
// valid at now, and an error if validity is not positive.
func (c *CA) SignCSR(csrPEM []byte, thing string, now time.Time, validity time.Duration) (certPEM []byte, fingerprint string, err error) {
	if err := ValidateThing(thing); err != nil {
		return nil, "", fmt.Errorf("sign CSR: %w", err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, "", fmt.Errorf("sign CSR for %q: %w: %w", thing, ErrInvalidCSR, err)
	}
	cert, err := c.sign(clientTemplate(thing), csr.PublicKey, now, validity)
	if err != nil {
		return nil, "", fmt.Errorf("sign CSR for %q: %w", thing, err)
	}
	return encodeCert(cert.Raw), Fingerprint(cert), nil
}

// ServerCert makes the broker's TLS certificate with a new ECDSA P-256
// key, for server authentication, naming every host: IP addresses as IP
// names, the others as DNS names. Its common name is the first host. It
// is valid from a minute before now for validity (but not past the CA's
// own end). It returns an error wrapping ErrInvalidHost if hosts is empty
// or one is neither an IP address nor a DNS name, one wrapping
// ErrCAExpired if the CA is not valid at now, and an error if validity
// is not positive.
func (c *CA) ServerCert(hosts []string, now time.Time, validity time.Duration) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, fmt.Errorf("broker certificate: %w: no host given", ErrInvalidHost)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if err := validateDNSName(h); err != nil {
			return tls.Certificate{}, fmt.Errorf("broker certificate: %w", err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("broker certificate: generate key: %w", err)
	}
	cert, err := c.sign(tmpl, &key.PublicKey, now, validity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("broker certificate for %v: %w", hosts, err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// clientTemplate is the template of every client certificate for thing.
func clientTemplate(thing string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: thing},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// sign completes tmpl (serial, validity, not a CA) and signs it for pub.
func (c *CA) sign(tmpl *x509.Certificate, pub any, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("validity %v: must be positive", validity)
	}
	if now.Before(c.cert.NotBefore) || now.After(c.cert.NotAfter) {
		return nil, fmt.Errorf("%w: at %v (valid %v to %v)", ErrCAExpired, now.UTC(), c.cert.NotBefore, c.cert.NotAfter)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew).UTC()
	tmpl.NotAfter = now.Add(validity).UTC()
	// A certificate that outlives its CA would not verify past the CA's
	// end anyway; saying so in the certificate keeps the two in step.
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse created certificate: %w", err)
	}
	return cert, nil
}

// parseCSR reads a PEM CSR, checks its signature and its key.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("PEM block %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if c := k.Curve; c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			return nil, fmt.Errorf("ECDSA curve %s not accepted", c.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, at least %d needed", n, minRSABits)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("public key %T not accepted", k)
	}
	return csr, nil
}

// validateDNSName accepts a DNS name (or a wildcard one): 1-253 bytes of
// labels of letters, digits, '-' and '_', the first label possibly '*'.
func validateDNSName(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%w: %q: a host must be an IP address or a DNS name of 1-253 bytes", ErrInvalidHost, h)
	}
	label := 0
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case b == '.':
			if label == 0 {
				return fmt.Errorf("%w: %q has an empty label", ErrInvalidHost, h)
			}
			label = 0
			continue
		case b == '*' && i == 0 && len(h) > 2 && h[1] == '.':
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return fmt.Errorf("%w: %q has %q at byte %d; not an IP address or a DNS name", ErrInvalidHost, h, b, i)
		}
		label++
	}
	if label == 0 {
		return fmt.Errorf("%w: %q ends with an empty label", ErrInvalidHost, h)
	}
	return nil
}
