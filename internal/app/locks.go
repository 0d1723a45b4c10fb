package app

import (
	"context"
	"errors"
	"strconv"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// authorizeLock applies upstream's rules: an API key's org must own the
// lock (or the key is super); a JWT user must own it or hold a key on it.
// The caller has passed requireAuth.
func authorizeLock(p Principal, st lock.State) error {
	switch p.Kind {
	case TenantCaller:
		if p.Super || (st.OrgID != "" && st.OrgID == p.OrgID) {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "This API key's organization does not own lock %d", st.LockID)
	case UserCaller:
		if (st.OwnerID != "" && st.OwnerID == p.UserID) || st.HasKeyHolder(p.UserID) {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "Only the lock owner or a key holder may access lock %d", st.LockID)
	}
	return domain.Errorf(domain.Forbidden, "Not allowed")
}

func lockKey(id int64) string { return strconv.FormatInt(id, 10) }

// CreateLockInput is the body of CreateLock.
type CreateLockInput struct {
	Index        int64      `json:"index"`
	UUID         string     `json:"uuid"`
	SerialNumber string     `json:"serialNumber,omitempty"`
	VendorName   string     `json:"vendorName,omitempty"`
	OwnerID      string     `json:"ownerId,omitempty"`
	Keys         []lock.Key `json:"keys,omitempty"`
}

// CreateLock creates lock id. A tenant's API key makes the tenant its org;
// a JWT user who names no owner becomes the owner.
// It answers Created=false with no event when the lock exists and the
// caller may see it; Forbidden when it may not.
func (s *Service) CreateLock(ctx context.Context, c Call, id int64, in CreateLockInput) (Answer[lock.LockCreated], error) {
	type answer = Answer[lock.LockCreated]
	if err := requireAuth(c.P); err != nil {
		return answer{}, err
	}
	u, err := domain.NormalizeUUID("uuid", in.UUID)
	if err != nil {
		return answer{}, err
	}
	if in.OwnerID != "" {
		if _, err := domain.CanonicalUUID("ownerId", in.OwnerID); err != nil {
			return answer{}, err
		}
	}
	for i, k := range in.Keys {
		if k.UUID == "" {
			return answer{}, domain.InvalidField("keys["+strconv.Itoa(i)+"].uuid", "Key uuid is required")
		}
		if k.UserID != "" {
			if _, err := domain.CanonicalUUID("keys["+strconv.Itoa(i)+"].userId", k.UserID); err != nil {
				return answer{}, err
			}
		}
	}
	if c.P.Kind == UserCaller && !c.P.Admin && !s.allowUserLockCreate {
		return answer{}, domain.Errorf(domain.Forbidden, "Locks are provisioned with a tenant's API key: this server does not let user tokens create locks (spkey serve --allow-user-lock-create)")
	}
	key := lockKey(id)
	c.Aggregate = "lock/" + key
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		st, snap, err := load(ctx, tx, lockAgg, key)
		if err != nil {
			return answer{}, err
		}
		if st.Exists() {
			if err := authorizeLock(c.P, st); err != nil {
				return answer{}, err
			}
			return answer{AggregateID: key, Version: snap.Version}, nil
		}
		org, owner := "", in.OwnerID
		switch c.P.Kind {
		case TenantCaller:
			org = c.P.OrgID
		case UserCaller:
			// A user who creates a lock without naming an owner owns it;
			// otherwise nobody could ever act on it with a JWT.
			if owner == "" {
				owner = c.P.UserID
			}
		}
		now := s.stamp()
		thing := lock.ThingName(id)
		evs, err := lock.DecideCreate(st, lock.Create{LockID: id, UUID: u, SerialNumber: in.SerialNumber, OwnerID: owner, Keys: in.Keys, OrgID: org, Now: now,
			ThingName: thing, ThingArn: lock.ThingArn(s.region, s.account, thing)})
		if err != nil {
			return answer{}, err
		}
		if other, taken, err := tx.LockByDevice(ctx, u); err != nil {
			return answer{}, err
		} else if taken && other != key {
			return answer{}, domain.Errorf(domain.Conflict, "Another lock already has device uuid %s", u)
		}
		_, v, ev, err := save(ctx, tx, lockAgg, snap, st, evs, now)
		if err != nil {
			return answer{}, err
		}
		// On PostgreSQL another node may have claimed the uuid for another
		// lock meanwhile (the projection keeps the first): run again, and
		// the check above answers 409.
		if other, _, err := tx.LockByDevice(ctx, u); err != nil {
			return answer{}, err
		} else if other != key {
			return answer{}, &es.ConflictError{AggregateType: lock.AggregateType, AggregateID: key}
		}
		return answer{Created: true, AggregateID: key, Version: v, Event: eventOf[lock.LockCreated](ev)}, nil
	})
}

// lockCommand runs decide on existing lock id for a caller authorized on
// it and appends its events; the answer's event carries payload P. decide
// may set the answer's extras.
func lockCommand[P domain.Event, R any, PR enveloped[R, P]](ctx context.Context, s *Service, c Call, id int64,
	decide func(ctx context.Context, tx *store.Tx, st lock.State, now string, res *R) ([]domain.Event, error)) (R, error) {
	var zero R
	// Refuse anonymous callers before queueing anything for the writer.
	if err := requireAuth(c.P); err != nil {
		return zero, err
	}
	key := lockKey(id)
	c.Aggregate = "lock/" + key
	return run[R, PR](ctx, s, c, func(ctx context.Context, tx *store.Tx) (R, error) {
		var res R
		st, snap, err := load(ctx, tx, lockAgg, key)
		if err != nil {
			return res, err
		}
		if !st.Exists() {
			return res, domain.Errorf(domain.NotFound, "Lock %d not found", id)
		}
		if err := authorizeLock(c.P, st); err != nil {
			return res, err
		}
		now := s.stamp()
		evs, err := decide(ctx, tx, st, now, &res)
		if err != nil {
			return res, err
		}
		_, v, ev, err := save(ctx, tx, lockAgg, snap, st, evs, now)
		a := PR(&res).envelope()
		a.AggregateID, a.Version, a.Event = key, v, eventOf[P](ev)
		return res, err
	})
}

// authorizeOwnership: who owns a lock changes only at the hands of its
// owner or its tenant's key (or a super key), never a mere key holder, who
// may be a guest.
func authorizeOwnership(p Principal, st lock.State) error {
	if p.Kind == UserCaller && (st.OwnerID == "" || st.OwnerID != p.UserID) {
		return domain.Errorf(domain.Forbidden, "Only the lock owner or the lock's organization may change who owns lock %d", st.LockID)
	}
	return nil
}

// SetOrganization assigns lock id to a tenant. A non-super API key may only
// claim the lock for its own org; anyone else must name a registered
// tenant.
func (s *Service) SetOrganization(ctx context.Context, c Call, id int64, orgID string) (Answer[lock.OrganizationSet], error) {
	if orgID == "" {
		return Answer[lock.OrganizationSet]{}, domain.InvalidField("orgId", "orgId is required")
	}
	return lockCommand[lock.OrganizationSet](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, _ *Answer[lock.OrganizationSet]) ([]domain.Event, error) {
		if err := authorizeOwnership(c.P, st); err != nil {
			return nil, err
		}
		if c.P.Kind == TenantCaller && !c.P.Super && orgID != c.P.OrgID {
			return nil, domain.Errorf(domain.Forbidden, "An API key may only assign locks to its own organization")
		}
		t, _, err := load(ctx, tx, tenantAgg, orgID)
		if err != nil {
			return nil, err
		}
		if !t.Exists() {
			return nil, domain.Errorf(domain.NotFound, "Tenant %q not registered", orgID)
		}
		evs, err := lock.DecideSetOrganization(st, orgID, now)
		return evs, err
	})
}

// SetOwner makes userID the owner of lock id. The user must exist.
func (s *Service) SetOwner(ctx context.Context, c Call, id int64, userID string) (Answer[lock.OwnerSet], error) {
	if userID == "" {
		return Answer[lock.OwnerSet]{}, domain.InvalidField("userId", "userId is required")
	}
	if _, err := domain.CanonicalUUID("userId", userID); err != nil {
		return Answer[lock.OwnerSet]{}, err
	}
	return lockCommand[lock.OwnerSet](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, _ *Answer[lock.OwnerSet]) ([]domain.Event, error) {
		if err := authorizeOwnership(c.P, st); err != nil {
			return nil, err
		}
		if _, found, err := tx.User(ctx, store.ByID, userID); err != nil {
			return nil, err
		} else if !found {
			return nil, domain.Errorf(domain.NotFound, "User %s not found: create it first (POST /users/{id}/CreateUser or GET /users/by-email)", userID)
		}
		evs, err := lock.DecideSetOwner(st, userID, now)
		return evs, err
	})
}

// ResidentInput identifies a resident by user id, e-mail or phone number.
type ResidentInput struct {
	Name        string  `json:"name,omitempty"`
	Email       *string `json:"email,omitempty"`
	PhoneNumber *string `json:"phoneNumber,omitempty"`
	UserID      *string `json:"userId,omitempty"`
}

// resolveResident finds the user a ResidentInput names. Every identifier
// given must point at the same user.
func resolveResident(ctx context.Context, users userVault, in ResidentInput) (store.User, error) {
	type probe struct {
		by    store.UserBy
		field string
		value string
	}
	var probes []probe
	if in.UserID != nil {
		id, err := domain.CanonicalUUID("userId", *in.UserID)
		if err != nil {
			return store.User{}, err
		}
		probes = append(probes, probe{store.ByID, "userId", id})
	}
	if in.Email != nil {
		e, err := domain.NormalizeEmail("email", *in.Email)
		if err != nil {
			return store.User{}, err
		}
		probes = append(probes, probe{store.ByEmail, "email", e})
	}
	if in.PhoneNumber != nil {
		p, err := domain.NormalizePhone("phoneNumber", *in.PhoneNumber)
		if err != nil {
			return store.User{}, err
		}
		probes = append(probes, probe{store.ByPhone, "phoneNumber", p})
	}
	if len(probes) == 0 {
		return store.User{}, &domain.Error{Code: domain.Invalid, Message: "One of email, phoneNumber or userId is required",
			Details: []domain.FieldError{{Field: "email", Message: "One of email, phoneNumber or userId is required"}}}
	}
	var found store.User
	for i, pr := range probes {
		u, ok, err := users.User(ctx, pr.by, pr.value)
		if err != nil {
			return store.User{}, err
		}
		if !ok {
			hint := "GET /users/by-email"
			if pr.by == store.ByPhone {
				hint = "GET /users/by-phone"
			}
			return store.User{}, domain.Errorf(domain.NotFound, "No user found for %s %s: call %s first to create the user", pr.field, pr.value, hint)
		}
		if i > 0 && u.UserID != found.UserID {
			return store.User{}, domain.InvalidField(pr.field, "email, phoneNumber and userId name different users")
		}
		found = u
	}
	return found, nil
}

// AddResident puts a user on the doorbell list of lock id. With a tenant's
// key it returns NotFound when the user does not exist yet (upstream); with
// a user's token (an owner or key holder) an e-mail or phone number of no
// user creates one, so the answer does not tell whether the address was
// known. It returns Invalid for a duplicate.
func (s *Service) AddResident(ctx context.Context, c Call, id int64, in ResidentInput) (ResidentAnswer[lock.ResidentAdded], error) {
	type answer = ResidentAnswer[lock.ResidentAdded]
	if err := lock.CheckResidentName(in.Name); err != nil {
		return answer{}, err
	}
	byUser := c.P.Kind == UserCaller && !c.P.Admin
	if byUser && countIdentifiers(in) > 1 {
		return answer{}, domain.InvalidField("email", "With a user token, name the resident by one of email, phoneNumber or userId")
	}
	return lockCommand[lock.ResidentAdded](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, res *answer) ([]domain.Event, error) {
		var u store.User
		var err error
		if byUser {
			u, err = s.resolveOrCreateResident(ctx, tx, in)
		} else {
			u, err = resolveResident(ctx, tx, in)
		}
		if err != nil {
			return nil, err
		}
		echo := u.Email
		if byUser {
			// A user's token learns nothing it did not send: the answer
			// echoes the e-mail it gave, never the one of a user it named
			// by phone number or id.
			echo = ""
			if in.Email != nil {
				echo, _ = domain.NormalizeEmail("email", *in.Email)
			}
		}
		masked := ""
		if u.Email != "" {
			masked = domain.MaskEmail(u.Email)
		}
		if byUser {
			// Only the address the caller sent, masked: the event (in the
			// answer and the lock's details) tells nothing of a user named
			// by phone number or id.
			masked = ""
			if echo != "" {
				masked = domain.MaskEmail(echo)
			}
		}
		res.Email = echo
		return lock.DecideAddResident(st, u.UserID, in.Name, masked, now)
	})
}

func countIdentifiers(in ResidentInput) int {
	n := 0
	for _, v := range []*string{in.Email, in.PhoneNumber, in.UserID} {
		if v != nil {
			n++
		}
	}
	return n
}

// resolveOrCreateResident is resolveResident for a user's token: an
// e-mail or phone number that names no user creates one (with no creator
// custody), so the caller cannot tell known addresses from unknown ones.
// in names one identifier.
func (s *Service) resolveOrCreateResident(ctx context.Context, tx *store.Tx, in ResidentInput) (store.User, error) {
	u, err := resolveResident(ctx, tx, in)
	if err == nil || domain.ErrorCode(err) != domain.NotFound || in.UserID != nil {
		return u, err
	}
	nu := store.User{UserID: s.newUUID(), CreatedAt: s.stamp()}
	key := ""
	if in.Email != nil {
		nu.Email, _ = domain.NormalizeEmail("email", *in.Email)
		key = nu.Email
	} else if in.PhoneNumber != nil {
		nu.Phone, _ = domain.NormalizePhone("phoneNumber", *in.PhoneNumber)
		key = nu.Phone
	}
	if err := tx.InsertUser(ctx, nu); errors.Is(err, store.ErrTaken) {
		// Created concurrently on another node: run again and find it.
		return store.User{}, &es.ConflictError{AggregateType: user.AggregateType, AggregateID: key}
	} else if err != nil {
		return store.User{}, err
	}
	if _, _, err := s.appendUserCreated(ctx, tx, nu); err != nil {
		return store.User{}, err
	}
	return nu, nil
}

// RemoveResident takes a user off the doorbell list of lock id. It returns
// Invalid when the user is not on the list.
func (s *Service) RemoveResident(ctx context.Context, c Call, id int64, in ResidentInput) (ResidentAnswer[lock.ResidentRemoved], error) {
	return lockCommand[lock.ResidentRemoved](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st lock.State, now string, res *ResidentAnswer[lock.ResidentRemoved]) ([]domain.Event, error) {
		u, err := resolveResident(ctx, tx, in)
		if err != nil {
			if in.UserID != nil && domain.ErrorCode(err) == domain.NotFound {
				// A user id that is on the list but gone from the vault can
				// still be removed.
				u = store.User{UserID: *in.UserID}
			} else {
				return nil, err
			}
		}
		res.Email = u.Email
		return lock.DecideRemoveResident(st, u.UserID, now)
	})
}
