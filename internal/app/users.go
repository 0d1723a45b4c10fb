package app

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// User is a person's record in the vault as app's callers see it: the
// vault row itself (an alias, so callers need not import store).
type User = store.User

// UserView is a user as the lookup and profile routes show it.
type UserView struct {
	User
	Status string
}

// mask replaces the raw e-mail and phone number by their masked forms
// (u***@example.com, ***4567).
func (v UserView) mask() UserView {
	if v.Email != "" {
		v.Email = domain.MaskEmail(v.Email)
	}
	if v.Phone != "" {
		v.Phone = domain.MaskPhone(v.Phone)
	}
	return v
}

// appendUserCreated records the events of a user just put in the vault.
func (s *Service) appendUserCreated(ctx context.Context, tx *store.Tx, u store.User) (*EventOut, int64, error) {
	now := s.stamp()
	st, snap, err := load(ctx, tx, userAgg, u.UserID)
	if err != nil {
		return nil, 0, err
	}
	evs, err := user.DecideCreate(st, user.Create{UserID: u.UserID, Email: u.Email, Phone: u.Phone, Now: now})
	if err != nil {
		return nil, 0, err
	}
	_, v, ev, err := save(ctx, tx, userAgg, snap, st, evs, now)
	return ev, v, err
}

// notSignedInID refuses a tenant's key (not super, not the admin) a new
// record under the id of a person who has signed in: that id is theirs, and
// a record a tenant made for it would carry the tenant's addresses into
// the person's account. It returns Conflict.
func (s *Service) notSignedInID(ctx context.Context, tx *store.Tx, p Principal, id string) error {
	if p.Kind != TenantCaller || p.Super || p.Admin {
		return nil
	}
	signed, err := tx.SignedInID(ctx, id)
	if err != nil {
		return err
	}
	if signed {
		return domain.Errorf(domain.Conflict, "This id belongs to a person who has signed in: only they (or the admin) can create their record")
	}
	return nil
}

// creator is the org recorded as a new user record's creator: the calling
// tenant's ("" for a user's token or the admin).
func creator(p Principal) string {
	if p.Kind == TenantCaller && !p.Admin {
		return p.OrgID
	}
	return ""
}

// FindInput is the query of GET /users/by-email and /users/by-phone.
type FindInput struct {
	Email      string `json:"email,omitempty"`
	Phone      string `json:"phoneNumber,omitempty"`
	UUID       string `json:"uuid,omitempty"`
	SearchOnly bool   `json:"searchOnly,omitempty"`
}

// FindOrCreate finds a user by e-mail (byPhone=false) or phone number,
// creating it on a miss unless SearchOnly. Finding grants nothing: the
// answer is all the caller gets. A user's token may look up only its own
// verified address, and a record it creates gets the token's id. It
// returns Invalid for bad identifiers, Forbidden for another address or
// uuid on a user's token (whether or not it exists), NotFound on a
// search-only miss and Conflict when the chosen UUID (or the e-mail given
// with a phone) belongs to another user.
func (s *Service) FindOrCreate(ctx context.Context, p Principal, byPhone bool, in FindInput) (UserView, error) {
	if err := requireAuth(p); err != nil {
		return UserView{}, err
	}
	var email, phone, id string
	var err error
	if byPhone {
		if phone, err = domain.NormalizePhone("phoneNumber", in.Phone); err != nil {
			return UserView{}, err
		}
		if in.Email != "" {
			if email, err = domain.NormalizeEmail("email", in.Email); err != nil {
				return UserView{}, err
			}
		}
	} else if email, err = domain.NormalizeEmail("email", in.Email); err != nil {
		return UserView{}, err
	}
	if in.UUID != "" {
		if id, err = domain.CanonicalUUID("uuid", in.UUID); err != nil {
			return UserView{}, err
		}
	}
	if p.Kind == UserCaller && !p.Admin {
		// Decided before anything is read: the answer and its timing do
		// not depend on whether the address exists.
		if err := ownAddress(p, email, phone); err != nil {
			return UserView{}, err
		}
		own, err := domain.NormalizeUUID("uuid", p.UserID)
		if err != nil || (id != "" && id != own) {
			return UserView{}, domain.Errorf(domain.Forbidden, "A user token may only create its own user record (uuid must be the token's user id)")
		}
		id = own
	}
	var out UserView
	agg := "email/" + email
	if byPhone {
		agg = "phone/" + phone
	}
	// The answer is out; run brings the retries on conflicts.
	_, err = run(ctx, s, Call{P: p, Aggregate: agg}, func(ctx context.Context, tx *store.Tx) (Answer[user.UserCreated], error) {
		type answer = Answer[user.UserCreated]
		by, key := store.ByEmail, email
		if byPhone {
			by, key = store.ByPhone, phone
		}
		u, found, err := tx.User(ctx, by, key)
		if err != nil {
			return answer{}, err
		}
		if found {
			out = UserView{User: u, Status: user.StatusActive}
			return answer{}, nil
		}
		if in.SearchOnly {
			return answer{}, domain.Errorf(domain.NotFound, "User not found")
		}
		if id != "" {
			if err := s.notSignedInID(ctx, tx, p, id); err != nil {
				return answer{}, err
			}
			if _, taken, err := tx.User(ctx, store.ByID, id); err != nil {
				return answer{}, err
			} else if taken && p.Kind == UserCaller && !p.Admin {
				return answer{}, domain.Errorf(domain.Conflict, "Your user record exists without this address: set it with UpdateEmail or UpdatePhoneNumber")
			} else if taken {
				return answer{}, domain.Errorf(domain.Conflict, "Requested UUID already exists")
			}
		} else {
			id = s.newUUID()
		}
		if byPhone && email != "" {
			if _, taken, err := tx.User(ctx, store.ByEmail, email); err != nil {
				return answer{}, err
			} else if taken {
				return answer{}, domain.Errorf(domain.Conflict, "Email already belongs to another user")
			}
		}
		u = store.User{UserID: id, Email: email, Phone: phone, CreatedBy: creator(p)}
		if err := tx.InsertUser(ctx, store.User{UserID: id, Email: email, Phone: phone, CreatedAt: s.stamp(), CreatedBy: creator(p)}); errors.Is(err, store.ErrTaken) {
			// Another node created this user between our find and our
			// insert (PostgreSQL): run again, and the find will see it.
			return answer{}, &es.ConflictError{AggregateType: user.AggregateType, AggregateID: key}
		} else if err != nil {
			return answer{}, err
		}
		if _, _, err := s.appendUserCreated(ctx, tx, u); err != nil {
			return answer{}, err
		}
		u.CreatedAt = s.stamp()
		out = UserView{User: u, Status: user.StatusActive}
		return answer{}, nil
	})
	if err != nil {
		return UserView{}, err
	}
	// Re-read for the stored created_at.
	if u, ok, err := s.users.User(ctx, store.ByID, out.UserID); err == nil && ok {
		out.User = u
	}
	return out, nil
}

// CreateUserInput is the body of CreateUser.
type CreateUserInput struct {
	UserID      string `json:"userId"`
	Email       string `json:"email,omitempty"`
	FirstName   string `json:"firstName,omitempty"`
	LastName    string `json:"lastName,omitempty"`
	PhoneNumber string `json:"phoneNumber,omitempty"`
}

// CreateUser creates user id. The phone number is validated but not stored
// (as upstream: use UpdatePhoneNumber). Created=false with no event when
// the user exists.
func (s *Service) CreateUser(ctx context.Context, c Call, id string, in CreateUserInput) (UserAnswer[user.UserCreated], error) {
	type answer = UserAnswer[user.UserCreated]
	if err := requireAuth(c.P); err != nil {
		return answer{}, err
	}
	bodyID, err := domain.CanonicalUUID("userId", in.UserID)
	if err != nil {
		return answer{}, err
	}
	pathID, err := domain.CanonicalUUID("id", id)
	if err != nil {
		return answer{}, err
	}
	if bodyID != pathID {
		return answer{}, domain.InvalidField("userId", "userId must equal the id in the path")
	}
	if c.P.Kind == UserCaller && !c.P.Admin && c.P.UserID != pathID {
		return answer{}, domain.Errorf(domain.Forbidden, "You can only create your own user record")
	}
	email := ""
	if in.Email != "" {
		if email, err = domain.NormalizeEmail("email", in.Email); err != nil {
			return answer{}, err
		}
		if err := ownAddress(c.P, email, ""); err != nil {
			return answer{}, err
		}
	}
	if in.PhoneNumber != "" {
		if _, err := domain.NormalizePhone("phoneNumber", in.PhoneNumber); err != nil {
			return answer{}, err
		}
	}
	if err := user.CheckNames(in.FirstName, in.LastName); err != nil {
		return answer{}, err
	}
	c.Aggregate = "user/" + pathID
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		if existing, found, err := tx.User(ctx, store.ByID, pathID); err != nil {
			return answer{}, err
		} else if found {
			_, snap, err := load(ctx, tx, userAgg, pathID)
			if err != nil {
				return answer{}, err
			}
			if c.P.Kind == UserCaller && !c.P.Admin && email != "" && existing.Email != email {
				// Not silently ignored: the person asked for this address.
				return answer{}, domain.Errorf(domain.Conflict, "Your user record exists with another e-mail address or none: set it with UpdateEmail")
			}
			if c.P.Kind == TenantCaller && !c.P.Super && !c.P.Admin {
				// Another tenant's (or the person's own) record: say only
				// that the id is taken. Its creator, or a tenant it is on a
				// lock of, gets upstream's idempotent 200.
				if st, err := tx.UserStanding(ctx, pathID, c.P.OrgID); err != nil {
					return answer{}, err
				} else if st.CreatedBy != c.P.OrgID && !st.OnOrgLock {
					return answer{}, domain.Errorf(domain.Conflict, "A user with this id already exists")
				}
			}
			return answer{Answer: Answer[user.UserCreated]{AggregateID: pathID, Version: snap.Version}, UserID: pathID}, nil
		}
		if err := s.notSignedInID(ctx, tx, c.P, pathID); err != nil {
			return answer{}, err
		}
		if email != "" {
			if _, taken, err := tx.User(ctx, store.ByEmail, email); err != nil {
				return answer{}, err
			} else if taken {
				return answer{}, domain.Errorf(domain.Conflict, "Email already belongs to another user")
			}
		}
		u := store.User{UserID: pathID, Email: email, FirstName: in.FirstName, LastName: in.LastName, CreatedAt: s.stamp(), CreatedBy: creator(c.P)}
		if err := tx.InsertUser(ctx, u); errors.Is(err, store.ErrTaken) {
			// Created concurrently (another node): run again and answer 200.
			return answer{}, &es.ConflictError{AggregateType: user.AggregateType, AggregateID: pathID}
		} else if err != nil {
			return answer{}, err
		}
		ev, v, err := s.appendUserCreated(ctx, tx, u)
		return answer{Answer: Answer[user.UserCreated]{Created: true, AggregateID: pathID, Version: v, Event: eventOf[user.UserCreated](ev)}, UserID: pathID}, err
	})
}

// userCommand runs a decide step on existing user id for a caller who may
// change it; the answer's event carries payload P.
func userCommand[P domain.Event](ctx context.Context, s *Service, c Call, id string, decide func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error)) (Answer[P], error) {
	type answer = Answer[P]
	if err := requireAuth(c.P); err != nil {
		return answer{}, err
	}
	c.Aggregate = "user/" + id
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		if err := authorizeUser(ctx, c.P, id, changeUser, tx.UserStanding); err != nil {
			return answer{}, err
		}
		u, found, err := tx.User(ctx, store.ByID, id)
		if err != nil {
			return answer{}, err
		}
		st, snap, err := load(ctx, tx, userAgg, id)
		if err != nil {
			return answer{}, err
		}
		if !found || !st.Exists() {
			return answer{}, domain.Errorf(domain.NotFound, "User %s not found", id)
		}
		now := s.stamp()
		evs, err := decide(ctx, tx, st, u, now)
		if err != nil {
			return answer{}, err
		}
		_, v, ev, err := save(ctx, tx, userAgg, snap, st, evs, now)
		return answer{AggregateID: id, Version: v, Event: eventOf[P](ev)}, err
	})
}

// UpdateEmail sets the e-mail of a user that has none. A user's token may
// set only its own verified address. It returns Forbidden, Conflict when
// the user has one or the address belongs to another user.
func (s *Service) UpdateEmail(ctx context.Context, c Call, id, email string) (Answer[user.UserEmailUpdated], error) {
	e, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return Answer[user.UserEmailUpdated]{}, err
	}
	return userCommand[user.UserEmailUpdated](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error) {
		if err := ownAddress(c.P, e, ""); err != nil {
			return nil, err
		}
		if u.Email != "" {
			return nil, domain.Errorf(domain.Conflict, "User already has an email")
		}
		evs, err := user.DecideUpdateEmail(st, e, now)
		if err != nil {
			return nil, err
		}
		if err := tx.SetUserContact(ctx, id, store.ByEmail, e); err != nil {
			if errors.Is(err, store.ErrTaken) {
				return nil, domain.Errorf(domain.Conflict, "Email already belongs to another user")
			}
			return nil, err
		}
		return evs, nil
	})
}

// UpdatePhoneNumber sets (non-nil) or removes (nil) a user's phone number.
// A user's token may set only its own verified number. It returns
// Forbidden, Conflict when another user has the number.
func (s *Service) UpdatePhoneNumber(ctx context.Context, c Call, id string, phone *string) (Answer[user.UserPhoneNumberUpdated], error) {
	p := ""
	if phone != nil {
		var err error
		if p, err = domain.NormalizePhone("phoneNumber", *phone); err != nil {
			return Answer[user.UserPhoneNumberUpdated]{}, err
		}
	}
	return userCommand[user.UserPhoneNumberUpdated](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error) {
		if err := ownAddress(c.P, "", p); err != nil {
			return nil, err
		}
		evs, err := user.DecideUpdatePhone(st, u.Phone, p, now)
		if err != nil || len(evs) == 0 {
			return evs, err
		}
		if err := tx.SetUserContact(ctx, id, store.ByPhone, p); err != nil {
			if errors.Is(err, store.ErrTaken) {
				return nil, domain.Errorf(domain.Conflict, "Phone number already belongs to another user")
			}
			return nil, err
		}
		return evs, nil
	})
}

// Profile returns user id for a caller allowed to read it: with the raw
// e-mail and phone number for the person, the admin, a super key and the
// tenant that has custody; masked for a tenant whose standing is only that
// the person is on one of its locks.
func (s *Service) Profile(ctx context.Context, p Principal, id string) (UserView, error) {
	masked, err := userStanding(ctx, p, id, readUser, s.users.UserStanding)
	if err != nil {
		return UserView{}, err
	}
	u, found, err := s.users.User(ctx, store.ByID, id)
	if err != nil {
		return UserView{}, err
	}
	if !found {
		return UserView{}, domain.Errorf(domain.NotFound, "User %s not found", id)
	}
	status := user.StatusActive
	if snap, ok, err := s.st.Snapshot(ctx, user.AggregateType, id); err == nil && ok {
		var st user.State
		if jsonErr := json.Unmarshal(snap.State, &st); jsonErr == nil && st.Status != "" {
			status = st.Status
		}
	}
	v := UserView{User: u, Status: status}
	if masked {
		v = v.mask()
	}
	return v, nil
}

// EnsureUser is the sign-up hook (POST /users): find the user with this
// e-mail (under whatever id it has: the identity provider keeps the
// userId answered) or create one with id userID. It returns Conflict when
// the id belongs to a user with another e-mail. The person has signed up with the identity provider, so the record counts
// as signed in: the tenant that created it loses custody. The caller has
// passed the hook's admin-key check.
func (s *Service) EnsureUser(ctx context.Context, email, userID string) (UserView, error) {
	e, err := domain.NormalizeEmail("detail.data.user_name", email)
	if err != nil {
		return UserView{}, err
	}
	id, err := domain.CanonicalUUID("detail.data.user_id", userID)
	if err != nil {
		return UserView{}, err
	}
	u, err := s.FindOrCreate(ctx, Principal{Admin: true}, false, FindInput{Email: e, UUID: id})
	if domain.ErrorCode(err) == domain.Conflict {
		return UserView{}, &domain.Error{Code: domain.Conflict, Message: "detail.data.user_id already belongs to a user with another e-mail address",
			Details: []domain.FieldError{{Field: "detail.data.user_id", Message: "taken by another user"}}}
	}
	if err != nil {
		return UserView{}, err
	}
	// Found by e-mail under another id (a tenant or an app created the
	// record before the person signed up): upstream's find-or-create
	// answers with that record, whose id the identity provider keeps for
	// the person; the person now owns it.
	return u, s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		return tx.NoteSignIn(ctx, u.UserID, []string{store.AddressHash(store.ByEmail, e)}, s.stamp())
	})
}
