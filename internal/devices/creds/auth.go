package creds

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/spkey-dev/spkey/internal/devices/broker"
	"github.com/spkey-dev/spkey/internal/devices/ca"
)

// AuthStore is what an Authenticator needs of the store; *store.Store has
// it. Both lookups must see only valid (not revoked) credentials.
type AuthStore interface {
	DeviceByPasswordHash(ctx context.Context, thing, hash string) (found bool, err error)
	DeviceByFingerprint(ctx context.Context, fingerprint string) (thing string, found bool, err error)
}

// Authenticator is the broker's broker.Authenticator over the stored
// credentials. It reads the store on every CONNECT and caches nothing, so
// a revocation refuses the next connection on every node.
type Authenticator struct {
	st  AuthStore
	log *slog.Logger
}

var _ broker.Authenticator = (*Authenticator)(nil)

// NewAuthenticator returns an Authenticator over st that logs the
// credentials it denies to log (nil: discarded).
func NewAuthenticator(st AuthStore, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{st: st, log: log}
}

// Password implements broker.Authenticator: username is the thing, and
// password must be one of its valid passwords. It returns the thing, or
// an error wrapping broker.ErrDenied for an invalid thing name, an empty
// password, or one that is not a valid password of that thing (unknown,
// revoked, another thing's); the store's errors, wrapped, when it could
// not decide.
//
// The password is hashed before the lookup, which compares hashes: how
// long it takes depends on the hash of what the client sent, never on the
// stored password. The password is never logged.
func (a *Authenticator) Password(ctx context.Context, username string, password []byte) (string, error) {
	if err := ca.ValidateThing(username); err != nil {
		return "", a.deny("", "password login with an invalid thing name")
	}
	if len(password) == 0 {
		return "", a.deny(username, "empty password")
	}
	found, err := a.st.DeviceByPasswordHash(ctx, username, hashPassword(password))
	if err != nil {
		return "", fmt.Errorf("authenticate %s by password: %w", username, err)
	}
	if !found {
		return "", a.deny(username, "unknown or revoked password")
	}
	return username, nil
}

// Certificate implements broker.Authenticator: the leaf (already verified
// against the device CA by the TLS listener) must have been issued
// through an Issuer and not revoked since, and its common name must be
// the thing it was issued to. It returns that thing, or an error wrapping
// broker.ErrDenied for an unknown or revoked certificate or a mismatched
// common name; the store's errors, wrapped, when it could not decide.
func (a *Authenticator) Certificate(ctx context.Context, leaf *x509.Certificate) (string, error) {
	if leaf == nil {
		return "", a.deny("", "no client certificate")
	}
	named := ca.Thing(leaf)
	thing, found, err := a.st.DeviceByFingerprint(ctx, ca.Fingerprint(leaf))
	if err != nil {
		return "", fmt.Errorf("authenticate certificate of %q: %w", named, err)
	}
	if !found {
		return "", a.deny(named, "unknown or revoked certificate")
	}
	if subtle.ConstantTimeCompare([]byte(named), []byte(thing)) != 1 {
		return "", a.deny(thing, "certificate names another thing")
	}
	return thing, nil
}

// deny logs why a CONNECT is refused, with the thing (never a password),
// and returns an error wrapping broker.ErrDenied that says why. The
// broker logs that error and tells the device only that its CONNECT was
// refused.
func (a *Authenticator) deny(thing, reason string) error {
	if thing == "" {
		a.log.Info("mqtt: device credentials denied", "reason", reason)
	} else {
		a.log.Info("mqtt: device credentials denied", "thing", thing, "reason", reason)
	}
	return fmt.Errorf("%s: %w", reason, broker.ErrDenied)
}
