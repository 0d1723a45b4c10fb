package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
)

// Roles of a person on a lock (lock_members).
const (
	RoleOwner    = "owner"
	RoleKey      = "key"
	RoleResident = "resident"
)

// Standing is what the store knows about one tenant's standing over one
// user record; app turns it into a decision.
type Standing struct {
	// CreatedBy is the org whose key created the record ("" when the
	// person, the admin or a JWT created it).
	CreatedBy string
	// SignedIn: the person has called the API with their own token, or
	// arrived through the sign-up hook.
	SignedIn bool
	// OnOrgLock: the person owns, holds a key on or is a resident of a
	// lock of the org asked about.
	OnOrgLock bool
	// OnOtherLock: the same, on a lock of any other org or of none.
	OnOtherLock bool
}

// UserStanding reads the facts of orgID's standing over userID. A user
// that does not exist has the zero Standing.
func (s *Store) UserStanding(ctx context.Context, userID, orgID string) (Standing, error) {
	return s.userStanding(ctx, s.r, userID, orgID)
}

// UserStanding is Store.UserStanding inside the transaction.
func (tx *Tx) UserStanding(ctx context.Context, userID, orgID string) (Standing, error) {
	return tx.s.userStanding(ctx, tx.q, userID, orgID)
}

func (s *Store) userStanding(ctx context.Context, q querier, userID, orgID string) (Standing, error) {
	var st Standing
	u, found, err := s.user(ctx, q, ByID, userID)
	if err != nil || !found {
		return st, err
	}
	var signedIn, onOrg, onOther int
	err = q.QueryRowContext(ctx, s.sql(`SELECT
		(SELECT COUNT(*) FROM user_sign_ins WHERE user_id = $1) + (SELECT COUNT(*) FROM address_sign_ins WHERE address_hash IN ($3, $4)),
		(SELECT COUNT(*) FROM lock_members m JOIN aggregates a ON a.aggregate_type = 'lock' AND a.aggregate_id = m.lock_id
		  WHERE m.user_id = $1 AND a.org_id = $2),
		(SELECT COUNT(*) FROM lock_members m JOIN aggregates a ON a.aggregate_type = 'lock' AND a.aggregate_id = m.lock_id
		  WHERE m.user_id = $1 AND a.org_id <> $2)`), userID, orgID, AddressHash(ByEmail, u.Email), AddressHash(ByPhone, u.Phone)).Scan(&signedIn, &onOrg, &onOther)
	if err != nil {
		return st, fmt.Errorf("read standing of %s over user %s: %w", orgID, userID, err)
	}
	st.CreatedBy, st.SignedIn, st.OnOrgLock, st.OnOtherLock = u.CreatedBy, signedIn > 0, onOrg > 0, onOther > 0
	return st, nil
}

// AddressHash is how address_sign_ins names a normalised e-mail (ByEmail)
// or phone number (ByPhone): a SHA-256, so the table holds no address. An
// empty address has no hash ("").
func AddressHash(kind UserBy, address string) string {
	if address == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(string(kind) + ":" + address))
	return hex.EncodeToString(sum[:])
}

// SignedInID reports whether somebody has called the API with a token for
// user id id (or the sign-up hook named it).
func (tx *Tx) SignedInID(ctx context.Context, id string) (bool, error) {
	var n int
	if err := tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT COUNT(*) FROM user_sign_ins WHERE user_id = $1`), id).Scan(&n); err != nil {
		return false, fmt.Errorf("read sign-in of %s: %w", id, err)
	}
	return n > 0, nil
}

// NoteSignIn records that the person userID has called the API with their
// own token (or arrived through the sign-up hook), and the hashes
// (AddressHash) of the addresses their identity provider vouches for; the
// first time counts.
func (tx *Tx) NoteSignIn(ctx context.Context, userID string, addressHashes []string, at string) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO user_sign_ins (user_id, first_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`), userID, at); err != nil {
		return fmt.Errorf("note sign-in of %s: %w", userID, err)
	}
	for _, h := range addressHashes {
		if h == "" {
			continue
		}
		if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO address_sign_ins (address_hash, first_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`), h, at); err != nil {
			return fmt.Errorf("note sign-in of an address of %s: %w", userID, err)
		}
	}
	return nil
}

// LockByDevice returns the id of the lock that has the device uuid.
func (tx *Tx) LockByDevice(ctx context.Context, uuid string) (lockID string, found bool, err error) {
	err = tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT lock_id FROM lock_devices WHERE uuid = $1`), uuid).Scan(&lockID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("find lock by device %s: %w", uuid, err)
	}
	return lockID, true, nil
}

// projectLock keeps lock_members, lock_key_holders and lock_devices in
// step with the lock events. A device UUID already taken by another lock
// stays with it (the app refuses a second lock with it, or a move to it;
// a rebuild keeps the first). A user keeps the 'key' role while holding
// at least one key of the lock.
func (s *Store) projectLock(ctx context.Context, q querier, r es.Record) error {
	exec := func(query string, args ...any) error {
		if _, err := q.ExecContext(ctx, s.sql(query), args...); err != nil {
			return fmt.Errorf("project %s of lock %s: %w", r.Type, r.AggregateID, err)
		}
		return nil
	}
	add := func(userID, role string) error {
		if userID == "" {
			return nil
		}
		return exec(`INSERT INTO lock_members (lock_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, r.AggregateID, userID, role)
	}
	hold := func(keyUUID, userID string) error {
		if userID == "" {
			return nil
		}
		if err := exec(`INSERT INTO lock_key_holders (lock_id, key_uuid, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, r.AggregateID, keyUUID, userID); err != nil {
			return err
		}
		return add(userID, RoleKey)
	}
	// drop takes key keyUUID away (lock.Apply drops every key of that UUID),
	// then the 'key' role of whoever holds no key of the lock any more.
	drop := func(keyUUID string) error {
		if err := exec(`DELETE FROM lock_key_holders WHERE lock_id = $1 AND key_uuid = $2`, r.AggregateID, keyUUID); err != nil {
			return err
		}
		return exec(`DELETE FROM lock_members WHERE lock_id = $1 AND role = 'key' AND NOT EXISTS
			(SELECT 1 FROM lock_key_holders h WHERE h.lock_id = lock_members.lock_id AND h.user_id = lock_members.user_id)`, r.AggregateID)
	}
	switch r.Type {
	case lock.TypeLockCreated:
		var e lock.LockCreated
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		if e.UUID != "" {
			if err := exec(`INSERT INTO lock_devices (uuid, lock_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.UUID, r.AggregateID); err != nil {
				return err
			}
		}
		for _, k := range e.Keys {
			if err := hold(k.UUID, k.UserID); err != nil {
				return err
			}
		}
		return add(e.OwnerID, RoleOwner)
	case lock.TypeOwnerSet:
		var e lock.OwnerSet
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		if err := exec(`DELETE FROM lock_members WHERE lock_id = $1 AND role = 'owner'`, r.AggregateID); err != nil {
			return err
		}
		return add(e.UserID, RoleOwner)
	case lock.TypeResidentAdded:
		var e lock.ResidentAdded
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		return add(e.UserID, RoleResident)
	case lock.TypeResidentRemoved:
		var e lock.ResidentRemoved
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		return exec(`DELETE FROM lock_members WHERE lock_id = $1 AND user_id = $2 AND role = 'resident'`, r.AggregateID, e.UserID)
	case lock.TypeKeyAdded:
		var e lock.KeyAdded
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		// The decide step never re-adds a key on the lock, but lock.Apply
		// replaces one: the projection does as the fold does.
		if err := drop(e.KeyUUID); err != nil {
			return err
		}
		return hold(e.KeyUUID, e.UserID)
	case lock.TypeKeyRemoved:
		var e lock.KeyRemoved
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		return drop(e.KeyUUID)
	case lock.TypeLockUUIDChanged:
		var e lock.LockUUIDChanged
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		if err := exec(`DELETE FROM lock_devices WHERE lock_id = $1`, r.AggregateID); err != nil {
			return err
		}
		return exec(`INSERT INTO lock_devices (uuid, lock_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.NewUUID, r.AggregateID)
	}
	return nil
}
