package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// DeviceCA returns the device CA kept in the database (its certificate
// and private key, PEM), and found false when none is.
func (s *Store) DeviceCA(ctx context.Context) (certPEM, keyPEM []byte, found bool, err error) {
	var c, k string
	err = s.r.QueryRowContext(ctx, `SELECT cert_pem, key_pem FROM device_ca WHERE id = 1`).Scan(&c, &k)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("read the device CA: %w", err)
	}
	return []byte(c), []byte(k), true, nil
}

// PutDeviceCAIfAbsent stores the device CA unless one is stored already
// (another node was first: DeviceCA then returns that one).
func (s *Store) PutDeviceCAIfAbsent(ctx context.Context, certPEM, keyPEM []byte, now string) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, s.sql(`INSERT INTO device_ca (id, cert_pem, key_pem, created_at) VALUES (1, $1, $2, $3) ON CONFLICT DO NOTHING`),
			string(certPEM), string(keyPEM), now); err != nil {
			return fmt.Errorf("store the device CA: %w", err)
		}
		return nil
	})
}
