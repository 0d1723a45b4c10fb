package app

import (
	"context"
	"fmt"
	"sync"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// userAccess is what a caller wants to do with a user record.
type userAccess int

const (
	readUser   userAccess = iota // profile, phone number, notifications
	changeUser                   // e-mail, phone number
)

// Refusals of authorizeUser, as the API shows them.
const (
	msgOwnRecord = "You can only access your own user record"
	// MsgNoReadStanding refuses a tenant's key reading a user who is on
	// none of its locks and not in its custody.
	MsgNoReadStanding = "This user is not on your organization's locks and not in its custody"
	// MsgNoChangeStanding refuses a tenant's key changing a user it has
	// no custody of.
	MsgNoChangeStanding = "Only the user, the admin or the organization that created this user (until they sign in or join another organization's lock) may change it"
)

// custody reports whether orgID may change the user: it created the record,
// the person has never signed in, and nobody outside orgID has them on a
// lock.
func custody(st store.Standing, orgID string) bool {
	return st.CreatedBy != "" && st.CreatedBy == orgID && !st.SignedIn && !st.OnOtherLock
}

// authorizeUser decides whether p may read or change user userID (see
// userStanding); reading with membership alone is allowed, masked.
func authorizeUser(ctx context.Context, p Principal, userID string, access userAccess, standing func(ctx context.Context, userID, orgID string) (store.Standing, error)) error {
	_, err := userStanding(ctx, p, userID, access, standing)
	return err
}

// userStanding decides whether p may read or change user userID:
//   - the person themself (their own token), the admin and a super key: always;
//   - a tenant's key: to change, custody (see custody); to read, custody or
//     the person being owner, key holder or resident of one of its locks.
//
// masked is true when p reads with that membership alone: it may see that
// the person has an e-mail and a phone number, masked, never the raw
// values (it can put anybody it knows the address of on its own lock).
// Looking a user up grants nothing. It returns Unauthorized or Forbidden.
func userStanding(ctx context.Context, p Principal, userID string, access userAccess, standing func(ctx context.Context, userID, orgID string) (store.Standing, error)) (masked bool, err error) {
	if err := requireAuth(p); err != nil {
		return false, err
	}
	if p.Admin {
		return false, nil
	}
	switch p.Kind {
	case UserCaller:
		if p.UserID == userID {
			return false, nil
		}
		return false, domain.Errorf(domain.Forbidden, msgOwnRecord)
	case TenantCaller:
		if p.Super {
			return false, nil
		}
		st, err := standing(ctx, userID, p.OrgID)
		if err != nil {
			return false, err
		}
		if custody(st, p.OrgID) {
			return false, nil
		}
		if access == readUser && st.OnOrgLock {
			return true, nil
		}
		if access == readUser {
			return false, domain.Errorf(domain.Forbidden, MsgNoReadStanding)
		}
		return false, domain.Errorf(domain.Forbidden, MsgNoChangeStanding)
	}
	return false, domain.Errorf(domain.Forbidden, "Not allowed")
}

// ownAddress checks that an address a user's token sets or looks up is the
// token's own, vouched for by its issuer (the local issuer always; an
// outside one with email_verified / phone_number_verified). It returns
// Forbidden otherwise. Empty values are not checked.
func ownAddress(p Principal, email, phone string) error {
	if p.Kind != UserCaller || p.Admin {
		return nil
	}
	if email != "" {
		own, err := domain.NormalizeEmail("email", p.Email)
		if p.Email == "" || err != nil || !p.EmailVerified || own != email {
			return domain.Errorf(domain.Forbidden, "A user token may only use its own verified e-mail address (the token's email claim)")
		}
	}
	if phone != "" {
		own, err := domain.NormalizePhone("phoneNumber", p.Phone)
		if p.Phone == "" || err != nil || !p.PhoneVerified || own != phone {
			return domain.Errorf(domain.Forbidden, "A user token may only use its own verified phone number (the token's phone_number claim)")
		}
	}
	return nil
}

// signIns remembers the identities (user id and vouched addresses) whose
// sign-in is recorded, so that only an identity's first request in this
// process touches the database. It is bounded:
// when full it forgets everything and starts over.
type signIns struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

const maxSignInsRemembered = 100_000

func (s *signIns) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[id]
	return ok
}

func (s *signIns) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil || len(s.seen) >= maxSignInsRemembered {
		s.seen = map[string]struct{}{}
	}
	s.seen[id] = struct{}{}
}

// NoteSignIn records that the person behind a user token has called the
// API, and which addresses their token's issuer vouches for: from then on
// the tenant that created their record, or a record bearing one of those
// addresses, no longer has custody of it. Other principals are ignored. It
// returns store errors.
func (s *Service) NoteSignIn(ctx context.Context, p Principal) error {
	if p.Kind != UserCaller || p.UserID == "" {
		return nil
	}
	// The memo is checked before any normalising or hashing: this runs on
	// every request with a user token.
	key := fmt.Sprintf("%s\n%t %s\n%t %s", p.UserID, p.EmailVerified, p.Email, p.PhoneVerified, p.Phone)
	if s.signIns.has(key) {
		return nil
	}
	var hashes []string
	if p.EmailVerified && p.Email != "" {
		if e, err := domain.NormalizeEmail("email", p.Email); err == nil {
			hashes = append(hashes, store.AddressHash(store.ByEmail, e))
		}
	}
	if p.PhoneVerified && p.Phone != "" {
		if ph, err := domain.NormalizePhone("phoneNumber", p.Phone); err == nil {
			hashes = append(hashes, store.AddressHash(store.ByPhone, ph))
		}
	}
	if err := s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error { return tx.NoteSignIn(ctx, p.UserID, hashes, s.stamp()) }); err != nil {
		return err
	}
	s.signIns.add(key)
	return nil
}
