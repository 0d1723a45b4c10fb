package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// UseNonce records that the one-time sign-in link carrying nonce was used
// at at. fresh is true the first time a nonce is used and false on every
// later call, whichever node makes it: the nonce is the table's primary
// key, so of two concurrent uses exactly one inserts the row.
func (s *Store) UseNonce(ctx context.Context, nonce string, at time.Time) (fresh bool, err error) {
	if nonce == "" {
		return false, errors.New("use portal nonce: empty nonce")
	}
	err = s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		res, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO portal_nonces (nonce, used_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`), nonce, stamp(at))
		if err != nil {
			return fmt.Errorf("use portal nonce: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("use portal nonce: %w", err)
		}
		fresh = n == 1
		return nil
	})
	return fresh, err
}

// ForgetNonces deletes the nonces used before before. Call it only with a
// time by which every link that could carry them has expired: a forgotten
// nonce is fresh again.
func (s *Store) ForgetNonces(ctx context.Context, before time.Time) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, tx.s.sql(`DELETE FROM portal_nonces WHERE used_at < $1`), stamp(before)); err != nil {
			return fmt.Errorf("forget portal nonces: %w", err)
		}
		return nil
	})
}

// TenantByOwnerEmail returns the tenant whose owner e-mail is email (as
// stored: lower case). When several tenants share an owner, it returns the
// first by orgId. found is false when none does.
func (s *Store) TenantByOwnerEmail(ctx context.Context, email string) (orgID string, found bool, err error) {
	return s.tenantByOwnerEmail(ctx, s.r, email)
}

// TenantByOwnerEmail is Store.TenantByOwnerEmail inside the transaction.
func (tx *Tx) TenantByOwnerEmail(ctx context.Context, email string) (orgID string, found bool, err error) {
	return tx.s.tenantByOwnerEmail(ctx, tx.q, email)
}

func (s *Store) tenantByOwnerEmail(ctx context.Context, q querier, email string) (orgID string, found bool, err error) {
	err = q.QueryRowContext(ctx, s.sql(`SELECT org_id FROM tenant_contacts WHERE owner_email = $1 ORDER BY org_id LIMIT 1`), email).Scan(&orgID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("tenant by owner email: %w", err)
	}
	return orgID, true, nil
}

// NonceUsed reports whether nonce was used (and not forgotten yet).
func (s *Store) NonceUsed(ctx context.Context, nonce string) (bool, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM portal_nonces WHERE nonce = $1`), nonce).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("portal nonce used: %w", err)
	}
	return n > 0, nil
}
