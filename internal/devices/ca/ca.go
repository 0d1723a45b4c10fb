// Package ca is spkey's own device certificate authority: the CA that
// signs the X.509 client certificates locks present to spkey's MQTT
// broker (as things do to AWS IoT), and the broker's own TLS certificate.
//
// A CA is an ECDSA P-256 key and its self-signed certificate. New makes
// one, Parse and PEM move it in and out of wherever the caller keeps it
// (a data folder on SQLite, the database on PostgreSQL), and
// LoadOrCreateDir keeps it as two files in a folder. IssueClient and
// SignCSR make a thing's client certificate (with a new key, or for the
// public key of a device's CSR), ServerCert the broker's certificate, and
// ServerTLS/ClientTLS the tls.Config of either end.
//
// What the store keeps of a client certificate is its Fingerprint (the
// SHA-256 of its DER), never a private key. The thing a certificate names
// is its common name (Thing).
//
// Nothing here reads the clock: every function that needs the time takes
// it. A CA is immutable once built and safe for concurrent use.
package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// DefaultName is the common name of the CA that LoadOrCreateDir creates.
const DefaultName = "spkey device CA"

// caValidityYears is how long a new CA is valid, in calendar years.
const caValidityYears = 10

// clockSkew is how far before now every certificate starts, so that a
// peer whose clock is a little behind accepts it at once.
const clockSkew = time.Minute

// Errors matched with errors.Is; each error returned wraps one of them
// (or is a plain I/O error) with the details.
var (
	// ErrInvalidCA: a CA's certificate or key cannot be used (not PEM,
	// not a CA certificate, not an ECDSA key).
	ErrInvalidCA = errors.New("invalid device CA")
	// ErrKeyMismatch: the private key is not the key of the certificate.
	ErrKeyMismatch = errors.New("the device CA key does not match its certificate")
	// ErrIncompletePair: only one of the CA's two files is present.
	ErrIncompletePair = errors.New("incomplete device CA: certificate and key must both be present or both absent")
	// ErrCAExpired: the CA is not valid at the given time (expired, or
	// not yet valid), so it does not sign.
	ErrCAExpired = errors.New("the device CA is not valid at this time")
	// ErrInvalidThing: a thing name is not 1-128 of [a-zA-Z0-9:_-].
	ErrInvalidThing = errors.New("invalid thing name")
	// ErrInvalidCSR: a certificate signing request is not PEM, does not
	// parse, has a bad signature or an unacceptable public key.
	ErrInvalidCSR = errors.New("invalid certificate signing request")
	// ErrInvalidHost: a host of the broker's certificate is neither an
	// IP address nor a DNS name.
	ErrInvalidHost = errors.New("invalid host name")
)

// CA is a device certificate authority: its certificate and its key.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New makes a new self-signed CA with a new ECDSA P-256 key, named name
// (its common name, e.g. DefaultName), valid from a minute before now
// for ten years, able to sign certificates that are not CAs themselves
// (MaxPathLen 0). It returns an error wrapping ErrInvalidCA if name is
// empty or longer than 64 bytes, or the error of making the key or the
// certificate.
func New(now time.Time, name string) (*CA, error) {
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("new device CA %q: %w: the name must be 1-64 bytes", name, ErrInvalidCA)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new device CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new device CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew).UTC(),
		NotAfter:              now.AddDate(caValidityYears, 0, 0).UTC(),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new device CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new device CA: parse certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// Parse reads a CA from its PEM certificate (one CERTIFICATE block) and
// its PEM ECDSA key (PKCS #8 "PRIVATE KEY", or SEC 1 "EC PRIVATE KEY",
// optionally after an "EC PARAMETERS" block as openssl writes it). It
// returns an error wrapping ErrInvalidCA if either does not parse or the
// certificate is not a CA that may sign certificates, and one wrapping
// ErrKeyMismatch if the key is not the certificate's. The certificate
// need not be self-signed: an operator's intermediate CA is then the
// anchor of Pool. Parse does not check the time: signing does.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse device CA certificate: %w: %w", ErrInvalidCA, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("parse device CA certificate %q: %w: not a CA certificate", cert.Subject.CommonName, ErrInvalidCA)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("parse device CA certificate %q: %w: its key usage does not allow signing certificates", cert.Subject.CommonName, ErrInvalidCA)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse device CA key: %w: %w", ErrInvalidCA, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("parse device CA %q: %w", cert.Subject.CommonName, ErrKeyMismatch)
	}
	return &CA{cert: cert, key: key}, nil
}

// PEM returns the CA's certificate (a CERTIFICATE block) and its key (a
// PKCS #8 PRIVATE KEY block), as Parse reads them. The key is the CA's
// secret: keep it where only spkey reads it. It returns the error of
// encoding the key, which does not happen for a CA made by New or Parse.
func (c *CA) PEM() (certPEM, keyPEM []byte, err error) {
	keyPEM, err = encodeKey(c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("device CA %q: %w", c.cert.Subject.CommonName, err)
	}
	return encodeCert(c.cert.Raw), keyPEM, nil
}

// Certificate returns the CA's certificate. The caller must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Pool returns a new pool holding only the CA's certificate, to verify
// the certificates it signed.
func (c *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.cert)
	return pool
}

// ServerTLS returns the broker's TLS configuration: it presents server
// (from ServerCert), requires every client to present a certificate that
// this CA signed for client authentication, and speaks TLS 1.2 or later.
func (c *CA) ServerTLS(server tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLS returns a thing's TLS configuration for the broker: it
// presents client (e.g. tls.X509KeyPair of what IssueClient returned),
// trusts only a server certificate this CA signed, and speaks TLS 1.2 or
// later.
func (c *CA) ClientTLS(client tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{client},
		RootCAs:      c.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// Fingerprint returns the lowercase hex SHA-256 of cert's DER encoding:
// what the store keeps to recognise a thing's certificate.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Thing returns the thing a client certificate was issued to: its
// common name.
func Thing(cert *x509.Certificate) string { return cert.Subject.CommonName }

// ValidateThing returns nil if name is a valid thing name (1-128 of
// [a-zA-Z0-9:_-], as AWS IoT), else an error wrapping ErrInvalidThing
// that says why.
func ValidateThing(name string) error {
	if !shadow.ValidThingName(name) {
		return fmt.Errorf("%w: %q: 1-128 of letters, digits, ':', '_' and '-'", ErrInvalidThing, name)
	}
	return nil
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		// RFC 5280 wants a positive serial; zero comes once in 2^128.
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// parseCertPEM reads exactly one PEM CERTIFICATE block.
func parseCertPEM(certPEM []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseKeyPEM reads an ECDSA private key: PKCS #8 or SEC 1, after an
// optional EC PARAMETERS block.
func parseKeyPEM(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(keyPEM)
	if block != nil && block.Type == "EC PARAMETERS" {
		block, rest = pem.Decode(rest)
	}
	if block == nil {
		return nil, errors.New("no PEM key block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after the %s block", block.Type)
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T key, want ECDSA", k)
		}
		return ek, nil
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
}

// encodeCert returns a certificate's DER as a PEM CERTIFICATE block.
func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// encodeKey returns key as a PEM PKCS #8 PRIVATE KEY block.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
