package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/spkey-dev/spkey/internal/es"
)

// User is a row of the PII vault: the raw identifiers the user events only
// mention masked. It is primary data, not a projection: deleting a row
// erases the person while the event log stays intact.
type User struct {
	UserID    string
	Email     string
	Phone     string
	FirstName string
	LastName  string
	CreatedAt string
	// CreatedBy is the org whose API key created the record; "" when the
	// person, the admin's sign-up hook or a user's token did.
	CreatedBy string
}

// UserBy selects which column identifies a user.
type UserBy string

// The columns a user can be found by.
const (
	ByID    UserBy = "user_id"
	ByEmail UserBy = "email"
	ByPhone UserBy = "phone"
)

func (s *Store) user(ctx context.Context, q querier, by UserBy, v string) (User, bool, error) {
	switch by {
	case ByID, ByEmail, ByPhone:
	default:
		return User{}, false, fmt.Errorf("find user: bad column %q", by)
	}
	var u User
	var email, phone, createdBy sql.NullString
	err := q.QueryRowContext(ctx, s.sql(`SELECT user_id, email, phone, first_name, last_name, created_at, created_by FROM users WHERE `+string(by)+` = $1`), v).
		Scan(&u.UserID, &email, &phone, &u.FirstName, &u.LastName, &u.CreatedAt, &createdBy)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, fmt.Errorf("find user by %s: %w", by, err)
	}
	u.Email, u.Phone, u.CreatedBy = email.String, phone.String, createdBy.String
	return u, true, nil
}

// User finds a user in the PII vault by one identifier.
func (s *Store) User(ctx context.Context, by UserBy, v string) (User, bool, error) {
	if !s.cached(ctx) {
		return s.user(ctx, s.r, by, v)
	}
	if u, ok := s.cache.userBy(by, v); ok {
		return u, true, nil
	}
	gen := s.cache.generation()
	u, found, err := s.user(ctx, s.r, by, v)
	if err == nil && found {
		s.cache.putUser(u, gen)
	}
	return u, found, err
}

func (tx *Tx) dropUserAfter(id string) {
	tx.b.usersTouched = true
	if c := tx.s.cache; c != nil {
		tx.b.after = append(tx.b.after, func() { c.dropUser(id) })
		tx.b.invalidateUser(id)
	}
}

// User finds a user in the PII vault inside the transaction.
func (tx *Tx) User(ctx context.Context, by UserBy, v string) (User, bool, error) {
	c := tx.s.cache
	if c == nil || tx.b.usersTouched || !tx.cached {
		return tx.s.user(ctx, tx.q, by, v)
	}
	// Nothing in this batch changed users yet: what is committed (and
	// cached) is what the transaction would read.
	if u, ok := c.userBy(by, v); ok {
		return u, true, nil
	}
	gen := c.generation()
	u, found, err := tx.s.user(ctx, tx.q, by, v)
	if err == nil && found {
		tx.b.after = append(tx.b.after, func() { c.putUser(u, gen) })
	}
	return u, found, err
}

// InsertUser adds a user to the PII vault. It returns an error wrapping
// ErrTaken when the id, e-mail or phone is already used.
func (tx *Tx) InsertUser(ctx context.Context, u User) error {
	tx.dropUserAfter(u.UserID)
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO users (user_id, email, phone, first_name, last_name, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)`),
		u.UserID, nullable(u.Email), nullable(u.Phone), u.FirstName, u.LastName, u.CreatedAt, nullable(u.CreatedBy))
	if isUniqueViolation(err) {
		return fmt.Errorf("insert user: %w", ErrTaken)
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

// ErrTaken reports a unique identifier already used by another row.
var ErrTaken = errors.New("already taken")

// SetUserContact sets one contact column (ByEmail or ByPhone) of a user; an
// empty value clears it. It returns an error wrapping ErrTaken when another
// user has that value.
func (tx *Tx) SetUserContact(ctx context.Context, userID string, col UserBy, v string) error {
	if col != ByEmail && col != ByPhone {
		return fmt.Errorf("set user contact: bad column %q", col)
	}
	tx.dropUserAfter(userID)
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`UPDATE users SET `+string(col)+` = $1 WHERE user_id = $2`), nullable(v), userID)
	if isUniqueViolation(err) {
		return fmt.Errorf("set user %s: %w", col, ErrTaken)
	}
	if err != nil {
		return fmt.Errorf("set user %s: %w", col, err)
	}
	return nil
}

// SetTenantContact stores a tenant's raw owner e-mail (its events carry a
// masked one).
func (tx *Tx) SetTenantContact(ctx context.Context, orgID, email string) error {
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO tenant_contacts (org_id, owner_email) VALUES ($1, $2)
		ON CONFLICT (org_id) DO UPDATE SET owner_email = excluded.owner_email`), orgID, email)
	if err != nil {
		return fmt.Errorf("set tenant contact: %w", err)
	}
	return nil
}

// Idempotent looks up a stored answer for (scope, key). found is false when
// the key is new.
func (tx *Tx) Idempotent(ctx context.Context, scope, key string) (bodyHash string, response []byte, found bool, err error) {
	var resp string
	err = tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT body_hash, response FROM idempotency WHERE scope = $1 AND key = $2`), scope, key).Scan(&bodyHash, &resp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("load idempotency key: %w", err)
	}
	return bodyHash, []byte(resp), true, nil
}

// SaveIdempotent stores the answer given for (scope, key).
func (tx *Tx) SaveIdempotent(ctx context.Context, scope, key, bodyHash string, response []byte, now string) error {
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO idempotency (scope, key, body_hash, response, created_at) VALUES ($1, $2, $3, $4, $5)`),
		scope, key, bodyHash, string(response), now)
	if isUniqueViolation(err) {
		// A concurrent request with the same key committed first: the
		// caller retries and then finds its answer.
		return &es.ConflictError{AggregateType: "idempotency", AggregateID: key}
	}
	if err != nil {
		return fmt.Errorf("save idempotency key: %w", err)
	}
	return nil
}

// Users returns the vault rows of the given user ids that exist, by id, in
// one query.
func (s *Store) Users(ctx context.Context, ids []string) (map[string]User, error) {
	out := make(map[string]User, len(ids))
	missing := ids[:0:0]
	cached := s.cached(ctx)
	for _, id := range ids {
		if !cached {
			missing = append(missing, id)
		} else if u, ok := s.cache.user(id); ok {
			out[id] = u
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	ids = missing
	gen := s.cache.generation()
	var b strings.Builder
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
		args[i] = id
	}
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT user_id, email, phone, first_name, last_name, created_at, created_by FROM users WHERE user_id IN (`+b.String()+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("find users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u User
		var email, phone, createdBy sql.NullString
		if err := rows.Scan(&u.UserID, &email, &phone, &u.FirstName, &u.LastName, &u.CreatedAt, &createdBy); err != nil {
			return nil, fmt.Errorf("scan user: %w", err)
		}
		u.Email, u.Phone, u.CreatedBy = email.String, phone.String, createdBy.String
		out[u.UserID] = u
		if cached {
			s.cache.putUser(u, gen)
		}
	}
	return out, rows.Err()
}
