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

var userAgg = aggregate[user.State]{typ: user.AggregateType, apply: user.Apply, org: func(user.State) string { return "" }}

// authorizeUser: a JWT user may touch only their own record; a tenant's
// key only users linked to the tenant (created, found or added as a
// resident by it), unless the key is super.
func authorizeUser(ctx context.Context, p Principal, userID string, linked func(ctx context.Context, userID, orgID string) (bool, error)) error {
	if err := requireAuth(p); err != nil {
		return err
	}
	switch p.Kind {
	case UserCaller:
		if p.UserID == userID {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "You can only access your own user record")
	case TenantCaller:
		if p.Super {
			return nil
		}
		ok, err := linked(ctx, userID, p.OrgID)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "This user is not linked to your organization")
	}
	return domain.Errorf(domain.Forbidden, "Not allowed")
}

// UserView is a user as the lookup and profile routes show it.
type UserView struct {
	store.User
	Status string
}

// appendUserCreated records the events of a user just put in the vault and
// links it to the calling tenant.
func (s *Service) appendUserCreated(ctx context.Context, tx *store.Tx, p Principal, u store.User) (*EventOut, int64, error) {
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
	if err != nil {
		return nil, 0, err
	}
	return ev, v, s.link(ctx, tx, p, u.UserID)
}

func (s *Service) link(ctx context.Context, tx *store.Tx, p Principal, userID string) error {
	if p.Kind == TenantCaller {
		return tx.LinkUserTenant(ctx, userID, p.OrgID)
	}
	return nil
}

// FindInput is the query of GET /users/by-email and /users/by-phone.
type FindInput struct {
	Email      string `json:"email,omitempty"`
	Phone      string `json:"phoneNumber,omitempty"`
	UUID       string `json:"uuid,omitempty"`
	SearchOnly bool   `json:"searchOnly,omitempty"`
}

// FindOrCreate finds a user by e-mail (byPhone=false) or phone number,
// creating it on a miss unless SearchOnly. It returns Invalid for bad
// identifiers, NotFound on a search-only miss and Conflict when the chosen
// UUID (or the e-mail given with a phone) belongs to another user.
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
	var out UserView
	agg := "email/" + email
	if byPhone {
		agg = "phone/" + phone
	}
	_, err = s.run(ctx, Call{P: p, Aggregate: agg}, func(ctx context.Context, tx *store.Tx) (Result, error) {
		by, key := store.ByEmail, email
		if byPhone {
			by, key = store.ByPhone, phone
		}
		u, found, err := tx.User(ctx, by, key)
		if err != nil {
			return Result{}, err
		}
		if found {
			out = UserView{User: u, Status: user.StatusActive}
			return Result{}, s.link(ctx, tx, p, u.UserID)
		}
		if in.SearchOnly {
			return Result{}, domain.Errorf(domain.NotFound, "User not found")
		}
		if id != "" {
			if _, taken, err := tx.User(ctx, store.ByID, id); err != nil {
				return Result{}, err
			} else if taken {
				return Result{}, domain.Errorf(domain.Conflict, "Requested UUID already exists")
			}
		} else {
			id = s.newUUID()
		}
		if byPhone && email != "" {
			if _, taken, err := tx.User(ctx, store.ByEmail, email); err != nil {
				return Result{}, err
			} else if taken {
				return Result{}, domain.Errorf(domain.Conflict, "Email already belongs to another user")
			}
		}
		u = store.User{UserID: id, Email: email, Phone: phone}
		if err := tx.InsertUser(ctx, store.User{UserID: id, Email: email, Phone: phone, CreatedAt: s.stamp()}); errors.Is(err, store.ErrTaken) {
			// Another node created this user between our find and our
			// insert (PostgreSQL): run again, and the find will see it.
			return Result{}, &es.ConflictError{AggregateType: user.AggregateType, AggregateID: key}
		} else if err != nil {
			return Result{}, err
		}
		if _, _, err := s.appendUserCreated(ctx, tx, p, u); err != nil {
			return Result{}, err
		}
		u.CreatedAt = s.stamp()
		out = UserView{User: u, Status: user.StatusActive}
		return Result{}, nil
	})
	if err != nil {
		return UserView{}, err
	}
	// Re-read for the stored created_at.
	if u, ok, err := s.st.User(ctx, store.ByID, out.UserID); err == nil && ok {
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
func (s *Service) CreateUser(ctx context.Context, c Call, id string, in CreateUserInput) (Result, error) {
	if err := requireAuth(c.P); err != nil {
		return Result{}, err
	}
	bodyID, err := domain.CanonicalUUID("userId", in.UserID)
	if err != nil {
		return Result{}, err
	}
	pathID, err := domain.CanonicalUUID("id", id)
	if err != nil {
		return Result{}, err
	}
	if bodyID != pathID {
		return Result{}, domain.InvalidField("userId", "userId must equal the id in the path")
	}
	if c.P.Kind == UserCaller && c.P.UserID != pathID {
		return Result{}, domain.Errorf(domain.Forbidden, "You can only create your own user record")
	}
	email := ""
	if in.Email != "" {
		if email, err = domain.NormalizeEmail("email", in.Email); err != nil {
			return Result{}, err
		}
	}
	if in.PhoneNumber != "" {
		if _, err := domain.NormalizePhone("phoneNumber", in.PhoneNumber); err != nil {
			return Result{}, err
		}
	}
	if err := user.CheckNames(in.FirstName, in.LastName); err != nil {
		return Result{}, err
	}
	c.Aggregate = "user/" + pathID
	return s.run(ctx, c, func(ctx context.Context, tx *store.Tx) (Result, error) {
		if _, found, err := tx.User(ctx, store.ByID, pathID); err != nil {
			return Result{}, err
		} else if found {
			_, snap, err := load(ctx, tx, userAgg, pathID)
			if err != nil {
				return Result{}, err
			}
			if c.P.Kind == TenantCaller && !c.P.Super {
				if ok, err := tx.UserLinked(ctx, pathID, c.P.OrgID); err != nil {
					return Result{}, err
				} else if !ok {
					return Result{}, domain.Errorf(domain.Conflict, "A user with this id already exists")
				}
			}
			return Result{AggregateID: pathID, Version: snap.Version, UserID: pathID}, nil
		}
		if email != "" {
			if _, taken, err := tx.User(ctx, store.ByEmail, email); err != nil {
				return Result{}, err
			} else if taken {
				return Result{}, domain.Errorf(domain.Conflict, "Email already belongs to another user")
			}
		}
		u := store.User{UserID: pathID, Email: email, FirstName: in.FirstName, LastName: in.LastName, CreatedAt: s.stamp()}
		if err := tx.InsertUser(ctx, u); errors.Is(err, store.ErrTaken) {
			// Created concurrently (another node): run again and answer 200.
			return Result{}, &es.ConflictError{AggregateType: user.AggregateType, AggregateID: pathID}
		} else if err != nil {
			return Result{}, err
		}
		ev, v, err := s.appendUserCreated(ctx, tx, c.P, u)
		return Result{Created: true, AggregateID: pathID, Version: v, Event: ev, UserID: pathID}, err
	})
}

// userCommand runs a decide step on an existing user the caller may touch.
func (s *Service) userCommand(ctx context.Context, c Call, id string, decide func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error)) (Result, error) {
	if err := requireAuth(c.P); err != nil {
		return Result{}, err
	}
	c.Aggregate = "user/" + id
	return s.run(ctx, c, func(ctx context.Context, tx *store.Tx) (Result, error) {
		if err := authorizeUser(ctx, c.P, id, tx.UserLinked); err != nil {
			return Result{}, err
		}
		u, found, err := tx.User(ctx, store.ByID, id)
		if err != nil {
			return Result{}, err
		}
		st, snap, err := load(ctx, tx, userAgg, id)
		if err != nil {
			return Result{}, err
		}
		if !found || !st.Exists() {
			return Result{}, domain.Errorf(domain.NotFound, "User %s not found", id)
		}
		now := s.stamp()
		evs, err := decide(ctx, tx, st, u, now)
		if err != nil {
			return Result{}, err
		}
		_, v, ev, err := save(ctx, tx, userAgg, snap, st, evs, now)
		return Result{AggregateID: id, Version: v, Event: ev}, err
	})
}

// UpdateEmail sets the e-mail of a user that has none. It returns Conflict
// when the user has one or the address belongs to another user.
func (s *Service) UpdateEmail(ctx context.Context, c Call, id, email string) (Result, error) {
	e, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return Result{}, err
	}
	return s.userCommand(ctx, c, id, func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error) {
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
// It returns Conflict when another user has the number.
func (s *Service) UpdatePhoneNumber(ctx context.Context, c Call, id string, phone *string) (Result, error) {
	p := ""
	if phone != nil {
		var err error
		if p, err = domain.NormalizePhone("phoneNumber", *phone); err != nil {
			return Result{}, err
		}
	}
	return s.userCommand(ctx, c, id, func(ctx context.Context, tx *store.Tx, st user.State, u store.User, now string) ([]domain.Event, error) {
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

// Profile returns user id for a caller allowed to read it.
func (s *Service) Profile(ctx context.Context, p Principal, id string) (UserView, error) {
	if err := authorizeUser(ctx, p, id, s.st.UserLinked); err != nil {
		return UserView{}, err
	}
	u, found, err := s.st.User(ctx, store.ByID, id)
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
	return UserView{User: u, Status: status}, nil
}

// EnsureUser is the sign-up hook (POST /users): find the user with this
// e-mail or create one with id userID (the identity provider's id, the
// sub of the user's JWTs). It returns Conflict when the e-mail belongs to
// a user with another id, or the id to a user with another e-mail. The
// caller has passed the hook's admin-key check.
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
	if u.UserID != id {
		// Found by e-mail, under another id: nothing was written.
		return UserView{}, &domain.Error{Code: domain.Conflict, Message: "This e-mail address already belongs to a user with another id",
			Details: []domain.FieldError{{Field: "detail.data.user_name", Message: "taken by another user"}}}
	}
	return u, nil
}
