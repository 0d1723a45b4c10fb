package app

import (
	"context"
	"fmt"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// LockView is a lock as the query routes show it.
type LockView struct {
	State     lock.State
	Version   int64
	UpdatedAt string
}

func (s *Service) readLock(ctx context.Context, id int64) (LockView, bool, error) {
	st, snap, found, err := read(ctx, s.st, lockAgg, lockKey(id))
	if err != nil || !found {
		return LockView{}, false, err
	}
	return LockView{State: st, Version: snap.Version, UpdatedAt: snap.UpdatedAt}, true, nil
}

// Lock returns lock id for an authorized caller. It returns NotFound,
// Unauthorized or Forbidden.
func (s *Service) Lock(ctx context.Context, p Principal, id int64) (LockView, error) {
	if err := requireAuth(p); err != nil {
		return LockView{}, err
	}
	v, found, err := s.readLock(ctx, id)
	if err != nil {
		return v, err
	}
	if !found {
		return v, domain.Errorf(domain.NotFound, "Lock %d not found", id)
	}
	return v, authorizeLock(p, v.State)
}

// ResidentView is one resident with the contact facts the list shows.
type ResidentView struct {
	UserID   string
	Name     string
	Email    string
	HasPhone bool
}

// Residents lists the doorbell residents of lock id. The route is public;
// raw e-mail addresses are shown only to callers authorized on the lock.
func (s *Service) Residents(ctx context.Context, p Principal, id int64) ([]ResidentView, error) {
	// The state is shared (readShared): only read here.
	st, found, err := readShared(ctx, s, lockAgg, lockKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, domain.Errorf(domain.NotFound, "Lock %d not found", id)
	}
	showEmail := p.Kind != Anonymous && authorizeLock(p, st) == nil
	users, err := s.residentUsers(ctx, st.Residents)
	if err != nil {
		return nil, err
	}
	out := make([]ResidentView, 0, len(st.Residents))
	for _, r := range st.Residents {
		rv := ResidentView{UserID: r.UserID, Name: r.Name}
		if u, ok := users[r.UserID]; ok {
			rv.HasPhone = u.Phone != ""
			if showEmail {
				rv.Email = emailFor(p, r, u.Email)
			}
		}
		out = append(out, rv)
	}
	return out, nil
}

// ResidentEmails returns the e-mail of each resident user id known to the
// vault, as caller p (authorized on the lock) may see it: raw for the
// lock's tenant, the admin and the resident themself; for other user
// tokens only the masked address recorded with the resident (an owner or
// key holder who named a resident by phone number learns no address).
func (s *Service) ResidentEmails(ctx context.Context, p Principal, residents []lock.Resident) (map[string]string, error) {
	users, err := s.residentUsers(ctx, residents)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range residents {
		if u, ok := users[r.UserID]; ok && u.Email != "" {
			out[r.UserID] = emailFor(p, r, u.Email)
		}
	}
	return out, nil
}

// emailFor is the resident's e-mail as p may see it (see ResidentEmails):
// for another user's token, the masked address recorded when the resident
// was added (none when they were named by phone number or id), never one
// derived from the user record.
func emailFor(p Principal, r lock.Resident, raw string) string {
	if p.Kind == UserCaller && !p.Admin && p.UserID != r.UserID {
		return r.MaskedEmail
	}
	return raw
}

func (s *Service) residentUsers(ctx context.Context, residents []lock.Resident) (map[string]store.User, error) {
	ids := make([]string, len(residents))
	for i, r := range residents {
		ids[i] = r.UserID
	}
	return s.st.Users(ctx, ids)
}

// EventPage is one page of a lock's event history.
type EventPage struct {
	Total, Page, PageSize, TotalPages int64
	Events                            []es.Record
}

// LockEventsPageSize is upstream's page size for GET /locks/{id}/events.
const LockEventsPageSize = 10

// LockEvents returns page (1-based; 0 = the last page) of lock id's events.
func (s *Service) LockEvents(ctx context.Context, p Principal, id int64, page int64) (EventPage, error) {
	if _, err := s.Lock(ctx, p, id); err != nil {
		return EventPage{}, err
	}
	total, err := s.st.StreamLen(ctx, lock.AggregateType, lockKey(id))
	if err != nil {
		return EventPage{}, err
	}
	pages := (total + LockEventsPageSize - 1) / LockEventsPageSize
	if pages == 0 {
		pages = 1
	}
	if page == 0 {
		page = pages
	}
	out := EventPage{Total: total, Page: page, PageSize: LockEventsPageSize, TotalPages: pages, Events: []es.Record{}}
	if page > pages {
		return out, nil
	}
	recs, err := s.st.Stream(ctx, lock.AggregateType, lockKey(id), (page-1)*LockEventsPageSize, LockEventsPageSize)
	if err != nil {
		return out, err
	}
	if recs != nil {
		out.Events = recs
	}
	return out, nil
}

// DebugMessagesDefault is upstream's default limit of
// GET /locks/{id}/debug/messages.
const DebugMessagesDefault = 50

// DebugMessagesMax is the largest limit LockDebugMessages honours: the
// log keeps no more per direction.
const DebugMessagesMax = store.ShadowMessagesKept

// DebugMessage is one logged shadow message of a lock's device.
type DebugMessage struct {
	ID        int64
	Payload   string // as logged: the message's bytes as text, maybe cut
	Timestamp string // when it was logged
}

// DebugMessages is a lock device's recent shadow messages, newest first:
// Command the desired-state changes sent to it, Status the reports it
// sent; Total counts the messages the log holds in both directions.
type DebugMessages struct {
	Command, Status []DebugMessage
	Total           int
}

// LockDebugMessages returns the newest messages (up to limit per
// direction, limit taken into 1..DebugMessagesMax) of lock id's device
// for a caller authorized on the lock (the lock queries' rule). It
// returns NotFound, Unauthorized or Forbidden, and the store's errors,
// wrapped.
func (s *Service) LockDebugMessages(ctx context.Context, p Principal, id int64, limit int) (DebugMessages, error) {
	if _, err := s.Lock(ctx, p, id); err != nil {
		return DebugMessages{}, err
	}
	command, status, total, err := s.shadows.ShadowMessages(ctx, lock.ThingName(id), min(max(limit, 1), DebugMessagesMax))
	if err != nil {
		return DebugMessages{}, fmt.Errorf("debug messages of lock %d: %w", id, err)
	}
	return DebugMessages{Command: debugMessages(command), Status: debugMessages(status), Total: total}, nil
}

func debugMessages(ms []store.ShadowMessage) []DebugMessage {
	out := make([]DebugMessage, 0, len(ms))
	for _, m := range ms {
		out = append(out, DebugMessage{ID: m.ID, Payload: m.Payload, Timestamp: m.CreatedAt})
	}
	return out
}
