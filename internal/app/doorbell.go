package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// RingInput is the optional body of RingDoorbell.
type RingInput struct {
	ResidentUserID string `json:"residentUserId,omitempty"`
	VisitorName    string `json:"visitorName,omitempty"`
	Message        string `json:"message,omitempty"`
	Source         string `json:"source,omitempty"`
}

// authorizeRing: the lock's tenant key (or a super key) and the lock's
// owner may ring it through the API and read its rings (key holders, who
// may be guests, may not: the history holds visitors' names and messages).
// what completes the refusal: "ring lock 7". The caller has passed
// requireAuth.
func authorizeRing(p Principal, l lock.State, what string) error {
	switch p.Kind {
	case TenantCaller:
		if p.Super || (l.OrgID != "" && l.OrgID == p.OrgID) {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "This API key's organization does not own lock %d", l.LockID)
	case UserCaller:
		if l.OwnerID != "" && l.OwnerID == p.UserID {
			return nil
		}
		return domain.Errorf(domain.Forbidden, "Only the lock owner or the lock's organization may %s", what)
	}
	return domain.Errorf(domain.Forbidden, "Not allowed")
}

// RingDoorbell rings lock id for an authorized caller: it records
// DoorbellRang on a new ring stream; the store queues, in the same
// transaction, one delivery per targeted resident per enabled channel (the
// doorbell consumers' routing, internal/notify). It returns NotFound
// for an unknown lock, Invalid for bad input, Unauthorized or Forbidden.
func (s *Service) RingDoorbell(ctx context.Context, c Call, id int64, in RingInput) (RingAnswer[doorbell.DoorbellRang], error) {
	if err := requireAuth(c.P); err != nil {
		return RingAnswer[doorbell.DoorbellRang]{}, err
	}
	return s.ring(ctx, c, id, in, false)
}

// RingFromVisitor rings lock id from its public doorbell page: no caller,
// source "visitor-page". The page's rate limit is the caller's job.
func (s *Service) RingFromVisitor(ctx context.Context, id int64, residentUserID, visitorName, message string) (RingAnswer[doorbell.DoorbellRang], error) {
	in := RingInput{ResidentUserID: residentUserID, VisitorName: visitorName, Message: message, Source: doorbell.SourceVisitorPage}
	return s.ring(ctx, Call{Route: "visitor-ring"}, id, in, true)
}

func (s *Service) ring(ctx context.Context, c Call, id int64, in RingInput, public bool) (RingAnswer[doorbell.DoorbellRang], error) {
	type answer = RingAnswer[doorbell.DoorbellRang]
	in.VisitorName, in.Message = strings.TrimSpace(in.VisitorName), strings.TrimSpace(in.Message)
	if in.ResidentUserID != "" {
		u, err := domain.CanonicalUUID("residentUserId", in.ResidentUserID)
		if err != nil {
			return answer{}, err
		}
		in.ResidentUserID = u
	}
	cmd := doorbell.Ring{ResidentUserID: in.ResidentUserID, VisitorName: in.VisitorName, Message: in.Message, Source: in.Source}
	if err := cmd.Validate(); err != nil {
		return answer{}, err
	}
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		l, _, err := load(ctx, tx, lockAgg, lockKey(id))
		if err != nil {
			return answer{}, err
		}
		if !l.Exists() {
			return answer{}, domain.Errorf(domain.NotFound, "Lock %d not found", id)
		}
		if !public {
			if err := authorizeRing(c.P, l, fmt.Sprintf("ring lock %d", id)); err != nil {
				return answer{}, err
			}
		}
		cmd.RingID = s.newUUID()
		return s.ringIn(ctx, tx, l, cmd)
	})
}

// ringIn records ring cmd (its RingID set) of lock l in tx: DoorbellRang
// on the new ring stream, whose append queues the notifications.
func (s *Service) ringIn(ctx context.Context, tx *store.Tx, l lock.State, cmd doorbell.Ring) (RingAnswer[doorbell.DoorbellRang], error) {
	type answer = RingAnswer[doorbell.DoorbellRang]
	now := s.stamp()
	cmd.Now = now
	evs, err := doorbell.DecideRing(l, cmd)
	if err != nil {
		return answer{}, err
	}
	st, v, ev, err := save(ctx, tx, ringAgg, es.Snapshot{AggregateType: doorbell.AggregateType, AggregateID: cmd.RingID}, doorbell.State{}, evs, now)
	if err != nil {
		return answer{}, err
	}
	return answer{Answer: Answer[doorbell.DoorbellRang]{Created: true, AggregateID: st.RingID, Version: v, Event: eventOf[doorbell.DoorbellRang](ev)},
		RingID: st.RingID, LockID: l.LockID, Notified: len(st.Residents)}, nil
}

// MaxPressAge is how old a device's doorbell press may be when spkey
// hears of it and still rings: a press reported later (the lock was
// offline) is not a visitor at the door any more.
const MaxPressAge = 2 * time.Minute

// devicePress rings lock l for the doorbell press its device reported,
// once per pressId (the ring's id is named by the lock and the pressId):
// a press reported again, or older than MaxPressAge, rings nobody.
func (s *Service) devicePress(ctx context.Context, tx *store.Tx, l lock.State, p *lock.Press, now time.Time) error {
	if p == nil || now.Sub(time.Unix(p.At, 0)) > MaxPressAge {
		return nil
	}
	ringID := NameUUID("doorbell-press/" + lockKey(l.LockID) + "/" + p.ID)
	ring, _, err := load(ctx, tx, ringAgg, ringID)
	if err != nil || ring.Exists() {
		return err
	}
	_, err = s.ringIn(ctx, tx, l, doorbell.Ring{RingID: ringID, Source: doorbell.SourceDevice})
	var de *domain.Error
	if errors.As(err, &de) {
		// Nobody to ring (no residents): the press is dropped, the
		// device's report stands.
		s.log.Info("device doorbell press rings nobody", "lock", l.LockID, "press", p.ID, "reason", de.Message)
		return nil
	}
	return err
}

// AnswerRing records that the calling resident answers ring ringID: the
// first answer wins and every targeted resident's live stream hears of it.
// It returns NotFound for an unknown ring, Forbidden for a caller the ring
// did not target (API keys included) and Conflict once it is answered.
func (s *Service) AnswerRing(ctx context.Context, c Call, ringID string) (Answer[doorbell.DoorbellAnswered], error) {
	return respond[doorbell.DoorbellAnswered](ctx, s, c, ringID, doorbell.DecideAnswer)
}

// DeclineRing records that the calling resident declines ring ringID, with
// the errors of AnswerRing.
func (s *Service) DeclineRing(ctx context.Context, c Call, ringID string) (Answer[doorbell.DoorbellDeclined], error) {
	return respond[doorbell.DoorbellDeclined](ctx, s, c, ringID, doorbell.DecideDecline)
}

func respond[P domain.Event](ctx context.Context, s *Service, c Call, ringID string, decide func(doorbell.State, string, string) ([]domain.Event, error)) (Answer[P], error) {
	type answer = Answer[P]
	if err := requireAuth(c.P); err != nil {
		return answer{}, err
	}
	id, err := domain.CanonicalUUID("ringId", ringID)
	if err != nil {
		return answer{}, domain.Errorf(domain.NotFound, "Ring %s not found", ringID)
	}
	c.Aggregate = "ring/" + id
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		st, snap, err := load(ctx, tx, ringAgg, id)
		if err != nil {
			return answer{}, err
		}
		if !st.Exists() {
			return answer{}, domain.Errorf(domain.NotFound, "Ring %s not found", id)
		}
		if c.P.Kind != UserCaller {
			return answer{}, domain.Errorf(domain.Forbidden, "Only a resident the ring notified may answer it, with their own token")
		}
		now := s.stamp()
		evs, err := decide(st, c.P.UserID, now)
		if err != nil {
			return answer{}, err
		}
		// Every targeted resident's live stream hears of it (the live
		// consumer's routing).
		_, v, ev, err := save(ctx, tx, ringAgg, snap, st, evs, now)
		if err != nil {
			return answer{}, err
		}
		return answer{AggregateID: id, Version: v, Event: eventOf[P](ev)}, nil
	})
}

// PreferencesInput is the body of SetNotificationPreferences. It replaces
// the whole set: a channel left out is on, no quietHours means none.
type PreferencesInput struct {
	Channels   map[string]bool  `json:"channels,omitempty"`
	QuietHours *user.QuietHours `json:"quietHours,omitempty"`
}

// SetNotificationPreferences changes how the doorbell reaches user id: the
// user's own JWT or a super key (a tenant's key is Forbidden). It returns
// Invalid for an unknown channel, malformed quiet hours or an
// unknown time zone, NotFound, Unauthorized or Forbidden.
func (s *Service) SetNotificationPreferences(ctx context.Context, c Call, id string, in PreferencesInput) (Answer[user.NotificationPreferencesSet], error) {
	type answer = Answer[user.NotificationPreferencesSet]
	for ch := range in.Channels {
		if ch != user.ChannelLive && ch != user.ChannelEmail && ch != user.ChannelHook {
			return answer{}, domain.InvalidField("channels."+ch, "Unknown channel "+strconv.Quote(ch)+": use live, email or hook")
		}
	}
	if q := in.QuietHours; q != nil {
		if err := q.Validate(); err != nil {
			return answer{}, err
		}
		if _, err := LoadZone(q.TimeZone); err != nil {
			return answer{}, domain.InvalidField("quietHours.timeZone", "Unknown time zone "+strconv.Quote(q.TimeZone)+": use an IANA name such as Europe/Warsaw")
		}
	}
	if c.P.Kind == TenantCaller && !c.P.Super {
		// One tenant must not silence a resident who also lives at
		// another tenant's locks.
		return answer{}, domain.Errorf(domain.Forbidden, "Notification preferences apply at every tenant's locks: only the user (or a super key) may change them")
	}
	return userCommand[user.NotificationPreferencesSet](ctx, s, c, id, func(ctx context.Context, tx *store.Tx, st user.State, _ store.User, now string) ([]domain.Event, error) {
		p := user.DefaultPreferences()
		for ch, on := range in.Channels {
			switch ch {
			case user.ChannelLive:
				p.Live = on
			case user.ChannelEmail:
				p.Email = on
			case user.ChannelHook:
				p.Hook = on
			}
		}
		if in.QuietHours != nil {
			q := *in.QuietHours
			p.QuietHours = &q
		}
		return user.DecideSetPreferences(st, p, now)
	})
}

// NotificationPreferences returns user id's preferences (the defaults when
// never set). It returns NotFound, Unauthorized or Forbidden.
func (s *Service) NotificationPreferences(ctx context.Context, p Principal, id string) (user.Preferences, error) {
	if err := authorizeUser(ctx, p, id, readUser, s.users.UserStanding); err != nil {
		return user.Preferences{}, err
	}
	st, err := s.userState(ctx, id)
	if err != nil {
		return user.Preferences{}, err
	}
	return st.Prefs(), nil
}

func (s *Service) userState(ctx context.Context, id string) (user.State, error) {
	st, _, found, err := read(ctx, s.st, userAgg, id)
	if err == nil && !found {
		err = domain.Errorf(domain.NotFound, "User %s not found", id)
	}
	return st, err
}

// LoadZone loads an IANA time zone (the binary embeds the zone database, so
// this works on machines without one).
func LoadZone(name string) (*time.Location, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("bad time zone %q", name)
	}
	return time.LoadLocation(name)
}

// AuthorizeUserStream checks that p may read user id's notifications (the
// user's own token, or the key of a tenant the user is linked to). It
// returns NotFound for an unknown user, Unauthorized or Forbidden.
func (s *Service) AuthorizeUserStream(ctx context.Context, p Principal, id string) error {
	if err := authorizeUser(ctx, p, id, readUser, s.users.UserStanding); err != nil {
		return err
	}
	_, err := s.userState(ctx, id)
	return err
}

// ConfiguredChannels reports which operator channels exist on this server.
func (s *Service) ConfiguredChannels() Channels { return s.chans }
