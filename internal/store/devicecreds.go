package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Device credentials are how a thing (a lock's MQTT identity) proves
// itself to the broker: a password or a client certificate of spkey's
// device CA. Like the shadows they are state kept beside the events, not a
// projection of them: no event records a credential, DumpReadModels does
// not render the table, and Rebuild (which empties only the snapshots and
// the tables of registered projections) leaves it alone.
//
// The table never holds a secret: a password row keeps the SHA-256 of the
// password, a certificate row the SHA-256 of the certificate's DER (its
// fingerprint); the private key stays with the device. A credential is
// valid until it is revoked; revoked rows are kept, never deleted.

// The kinds of device credential.
const (
	// DeviceCredentialPassword is a password; the row keeps its SHA-256.
	DeviceCredentialPassword = "password"
	// DeviceCredentialCertificate is a client certificate; the row keeps
	// its fingerprint.
	DeviceCredentialCertificate = "certificate"
)

// ErrDeviceCredentialExists is wrapped by the error of AddDeviceCredential
// when a credential with the same id or the same certificate fingerprint
// is already stored.
var ErrDeviceCredentialExists = errors.New("device credential already exists")

// DeviceCredential is one stored credential of a thing. It holds no
// secret: only the hash of a password or the fingerprint of a
// certificate, and dates.
type DeviceCredential struct {
	// ID names the credential; the caller chooses it (unique).
	ID string
	// Thing is the thing the credential authenticates.
	Thing string
	// Kind is DeviceCredentialPassword or DeviceCredentialCertificate.
	Kind string
	// SecretHash is the lowercase hex SHA-256 of the password; "" for a
	// certificate.
	SecretHash string
	// Fingerprint is the lowercase hex SHA-256 of the certificate's DER
	// (ca.Fingerprint); "" for a password.
	Fingerprint string
	// CreatedAt is when the credential was issued (domain.TimeLayout).
	CreatedAt string
	// RevokedAt is when it was revoked; "" while it is valid.
	RevokedAt string
}

// validate checks what the table's constraints check, with errors that
// say which field is wrong, and that the hash or fingerprint is a SHA-256
// in lowercase hex, so that a password cannot be stored by mistake.
func (c DeviceCredential) validate() error {
	switch {
	case c.ID == "":
		return errors.New("empty id")
	case c.Thing == "":
		return errors.New("empty thing name")
	case c.CreatedAt == "":
		return errors.New("empty creation time")
	case c.RevokedAt != "":
		return errors.New("a new credential cannot be revoked already")
	}
	switch c.Kind {
	case DeviceCredentialPassword:
		if !isSHA256Hex(c.SecretHash) || c.Fingerprint != "" {
			return errors.New("a password credential needs a SHA-256 hex secret hash and no fingerprint")
		}
	case DeviceCredentialCertificate:
		if !isSHA256Hex(c.Fingerprint) || c.SecretHash != "" {
			return errors.New("a certificate credential needs a SHA-256 hex fingerprint and no secret hash")
		}
	default:
		return fmt.Errorf("kind %q is neither %q nor %q", c.Kind, DeviceCredentialPassword, DeviceCredentialCertificate)
	}
	return nil
}

// isSHA256Hex reports whether s is 64 lowercase hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// AddDeviceCredential stores c, valid from now on, through the writer. It
// returns an error for an invalid c (an empty id, thing or creation time,
// an unknown kind, a hash or fingerprint that is not a lowercase hex
// SHA-256, both or neither of them, a RevokedAt), an error wrapping
// ErrDeviceCredentialExists when the id or the fingerprint is taken, and
// the database's other errors, wrapped.
func (s *Store) AddDeviceCredential(ctx context.Context, c DeviceCredential) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("add device credential for %s: %w", c.Thing, err)
	}
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		// On PostgreSQL the insert joins the batch's pipeline; a duplicate
		// fails the pipeline, and the writer runs this job again alone,
		// where the unique violation reaches this call.
		_, err := tx.q.ExecContext(ctx, s.sql(`INSERT INTO device_credentials (id, thing, kind, secret_hash, fingerprint, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`),
			c.ID, c.Thing, c.Kind, nullable(c.SecretHash), nullable(c.Fingerprint), c.CreatedAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("add %s credential %s for %s: %w", c.Kind, c.ID, c.Thing, ErrDeviceCredentialExists)
		}
		if err != nil {
			return fmt.Errorf("add %s credential %s for %s: %w", c.Kind, c.ID, c.Thing, err)
		}
		return nil
	})
}

// DeviceByPasswordHash reports whether thing has a valid (not revoked)
// password credential whose SHA-256 is hash. The comparison happens in the
// database, on the hash: a caller hashes the offered password first, so
// how long the lookup takes says nothing about the stored password. It
// reads committed rows and returns the database's errors, wrapped.
func (s *Store) DeviceByPasswordHash(ctx context.Context, thing, hash string) (found bool, err error) {
	var one int
	err = s.r.QueryRowContext(ctx, s.sql(`SELECT 1 FROM device_credentials
		WHERE thing = $1 AND kind = 'password' AND secret_hash = $2 AND revoked_at IS NULL LIMIT 1`), thing, hash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up password credential of %s: %w", thing, err)
	}
	return true, nil
}

// DeviceByFingerprint returns the thing whose valid (not revoked)
// certificate credential has fingerprint (ca.Fingerprint); found is false
// when no valid credential has it. It reads committed rows and returns the
// database's errors, wrapped.
func (s *Store) DeviceByFingerprint(ctx context.Context, fingerprint string) (thing string, found bool, err error) {
	err = s.r.QueryRowContext(ctx, s.sql(`SELECT thing FROM device_credentials
		WHERE fingerprint = $1 AND kind = 'certificate' AND revoked_at IS NULL`), fingerprint).Scan(&thing)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up certificate credential %s: %w", fingerprint, err)
	}
	return thing, true, nil
}

// RevokeDeviceCredentials revokes, at now, every credential of thing that
// is still valid (passwords and certificates alike), through the writer,
// and returns how many it revoked: 0 when thing has none left, which is
// not an error. Revoked credentials keep their rows and their first
// revocation time. Connections already authenticated are not the store's
// to close. It returns an error for an empty thing or now, and the
// database's errors, wrapped.
func (s *Store) RevokeDeviceCredentials(ctx context.Context, thing string, now string) (n int, err error) {
	if thing == "" || now == "" {
		return 0, fmt.Errorf("revoke device credentials of %q at %q: empty thing name or time", thing, now)
	}
	err = s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		res, err := tx.q.ExecContext(ctx, s.sql(`UPDATE device_credentials SET revoked_at = $1 WHERE thing = $2 AND revoked_at IS NULL`), now, thing)
		if err != nil {
			return fmt.Errorf("revoke device credentials of %s: %w", thing, err)
		}
		// On PostgreSQL this sends the batch's pipeline: the count is the
		// caller's answer.
		rows, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("revoke device credentials of %s: %w", thing, err)
		}
		n = int(rows)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeviceCredentials returns every credential of thing, revoked ones
// included, oldest first; an empty (not nil) list when it has none. The
// rows hold hashes and fingerprints, never a secret. It reads committed
// rows and returns the database's errors, wrapped.
func (s *Store) DeviceCredentials(ctx context.Context, thing string) ([]DeviceCredential, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT id, thing, kind, COALESCE(secret_hash, ''), COALESCE(fingerprint, ''), created_at, COALESCE(revoked_at, '')
		FROM device_credentials WHERE thing = $1 ORDER BY created_at, id`), thing)
	if err != nil {
		return nil, fmt.Errorf("read device credentials of %s: %w", thing, err)
	}
	defer rows.Close()
	out := []DeviceCredential{}
	for rows.Next() {
		var c DeviceCredential
		if err := rows.Scan(&c.ID, &c.Thing, &c.Kind, &c.SecretHash, &c.Fingerprint, &c.CreatedAt, &c.RevokedAt); err != nil {
			return nil, fmt.Errorf("scan device credential of %s: %w", thing, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read device credentials of %s: %w", thing, err)
	}
	return out, nil
}
