// Package creds issues, checks and revokes the credentials with which
// things (locks) connect to spkey's MQTT broker: a password (plain
// listener) or a client certificate of spkey's device CA (TLS listener).
//
// The store keeps no secret: a password is kept as its SHA-256, a
// certificate as its fingerprint (the SHA-256 of its DER); the password
// and the certificate's private key are handed to the caller once and
// never stored. A thing name alone grants nothing: a connection needs a
// credential issued for that thing and not revoked since. Revoke refuses
// every new connection of a thing; connections already authenticated are
// the broker's to close.
package creds

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// passwordBytes is how many random bytes a password carries (256 bits).
const passwordBytes = 32

// IssuerStore is what an Issuer needs of the store; *store.Store has it.
type IssuerStore interface {
	AddDeviceCredential(ctx context.Context, c store.DeviceCredential) error
	RevokeDeviceCredentials(ctx context.Context, thing string, now string) (n int, err error)
}

// Issuer issues a thing's credentials and revokes them.
type Issuer struct {
	st IssuerStore
	ca *ca.CA
}

// NewIssuer returns an Issuer that stores what it issues in st and signs
// certificates with authority.
func NewIssuer(st IssuerStore, authority *ca.CA) *Issuer {
	return &Issuer{st: st, ca: authority}
}

// IssuePassword makes a new password for thing, valid from now until the
// thing's credentials are revoked: 32 random bytes, base64url (unpadded).
// The username is the thing name. Only the password's SHA-256 is stored:
// the caller must hand the password to the device, it cannot be shown
// again. Earlier credentials of the thing stay valid. It returns an error
// wrapping ca.ErrInvalidThing for a bad thing name, and the store's
// errors, wrapped.
func (i *Issuer) IssuePassword(ctx context.Context, thing string, now time.Time) (username, password string, err error) {
	if err := ca.ValidateThing(thing); err != nil {
		return "", "", fmt.Errorf("issue password for %q: %w", thing, err)
	}
	secret := make([]byte, passwordBytes)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("issue password for %s: %w", thing, err)
	}
	password = base64.RawURLEncoding.EncodeToString(secret)
	id, err := newID()
	if err != nil {
		return "", "", fmt.Errorf("issue password for %s: %w", thing, err)
	}
	err = i.st.AddDeviceCredential(ctx, store.DeviceCredential{
		ID:         id,
		Thing:      thing,
		Kind:       store.DeviceCredentialPassword,
		SecretHash: hashPassword([]byte(password)),
		CreatedAt:  now.UTC().Format(domain.TimeLayout),
	})
	if err != nil {
		return "", "", fmt.Errorf("issue password for %s: %w", thing, err)
	}
	return thing, password, nil
}

// IssueCertificate makes a client certificate for thing with a new key
// (ca.IssueClient), valid from now for validity, and stores its
// fingerprint. The key is returned once and never stored. Earlier
// credentials of the thing stay valid. It returns the CA's errors
// (ca.ErrInvalidThing, ca.ErrCAExpired, ...) and the store's, wrapped.
func (i *Issuer) IssueCertificate(ctx context.Context, thing string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM, fingerprint, err := i.ca.IssueClient(thing, now, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %q: %w", thing, err)
	}
	if err := i.addCertificate(ctx, thing, fingerprint, now); err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", thing, err)
	}
	return certPEM, keyPEM, nil
}

// SignCSR makes a client certificate for thing from the device's PEM
// certificate signing request (ca.SignCSR: only its public key is taken),
// valid from now for validity, and stores its fingerprint. It returns the
// CA's errors (ca.ErrInvalidThing, ca.ErrInvalidCSR, ca.ErrCAExpired, ...)
// and the store's, wrapped.
func (i *Issuer) SignCSR(ctx context.Context, thing string, csrPEM []byte, now time.Time, validity time.Duration) (certPEM []byte, err error) {
	certPEM, fingerprint, err := i.ca.SignCSR(csrPEM, thing, now, validity)
	if err != nil {
		return nil, fmt.Errorf("sign certificate request for %q: %w", thing, err)
	}
	if err := i.addCertificate(ctx, thing, fingerprint, now); err != nil {
		return nil, fmt.Errorf("sign certificate request for %s: %w", thing, err)
	}
	return certPEM, nil
}

// addCertificate stores a certificate's fingerprint. A certificate signed
// but not stored (the store failed) is refused by the Authenticator.
func (i *Issuer) addCertificate(ctx context.Context, thing, fingerprint string, now time.Time) error {
	id, err := newID()
	if err != nil {
		return err
	}
	return i.st.AddDeviceCredential(ctx, store.DeviceCredential{
		ID:          id,
		Thing:       thing,
		Kind:        store.DeviceCredentialCertificate,
		Fingerprint: fingerprint,
		CreatedAt:   now.UTC().Format(domain.TimeLayout),
	})
}

// Revoke revokes, at now, every credential of thing still valid
// (passwords and certificates): the broker refuses its new connections
// from then on. Revoking a thing with no valid credential does nothing.
// It returns an error for an empty thing name, and the store's errors,
// wrapped.
func (i *Issuer) Revoke(ctx context.Context, thing string, now time.Time) error {
	if _, err := i.st.RevokeDeviceCredentials(ctx, thing, now.UTC().Format(domain.TimeLayout)); err != nil {
		return fmt.Errorf("revoke credentials of %q: %w", thing, err)
	}
	return nil
}

// hashPassword is the lowercase hex SHA-256 under which a password is
// stored. A plain hash suffices (no salt, no slow KDF): the password is
// 256 random bits, not something a person chose.
func hashPassword(password []byte) string {
	sum := sha256.Sum256(password)
	return hex.EncodeToString(sum[:])
}

// newID returns a random credential id (16 bytes, hex).
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("credential id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
