package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/store"
)

// ChannelDelivery is the state of one channel's delivery of a ring to one
// resident.
type ChannelDelivery struct {
	Channel       string `json:"channel"` // live, email, hook
	Status        string `json:"status"`  // pending, delivered, failed, skipped
	Attempts      int    `json:"attempts"`
	LastError     string `json:"lastError,omitempty"`
	QueuedAt      string `json:"queuedAt"`
	CompletedAt   string `json:"completedAt,omitempty"`
	NextAttemptAt string `json:"nextAttemptAt,omitempty"`
}

// RingResidentView is one targeted resident of a ring with its deliveries.
type RingResidentView struct {
	UserID     string            `json:"userId"`
	Name       string            `json:"name"`
	Deliveries []ChannelDelivery `json:"deliveries" nullable:"false"`
}

// Responder names the resident who answered.
type Responder struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

// RingView is one ring as the history routes show it.
type RingView struct {
	RingID      string             `json:"ringId"`
	LockID      int64              `json:"lockId"`
	Source      string             `json:"source"`
	VisitorName string             `json:"visitorName,omitempty"`
	Message     string             `json:"message,omitempty"`
	Timestamp   string             `json:"timestamp"`
	Status      string             `json:"status"` // ringing, answered, declined
	AnsweredBy  *Responder         `json:"answeredBy"`
	AnsweredAt  string             `json:"answeredAt,omitempty"`
	DeclinedBy  []string           `json:"declinedBy" nullable:"false"`
	Residents   []RingResidentView `json:"residents" nullable:"false"`
}

// RingPage is one page of rings, newest first. NextCursor is empty on the
// last page.
type RingPage struct {
	Rings      []RingView
	NextCursor string
}

// MaxPage caps the limit of history pages.
const MaxPage = 100

func parseCursor(cursor string, limit int) (int64, int, error) {
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > MaxPage {
		return 0, 0, domain.InvalidField("limit", fmt.Sprintf("limit must be between 1 and %d", MaxPage))
	}
	if cursor == "" {
		return 0, limit, nil
	}
	n, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || n <= 0 {
		return 0, 0, domain.InvalidField("cursor", "cursor must be a value returned as nextCursor")
	}
	return n, limit, nil
}

// LockRings lists the rings of lock id with every resident's delivery
// state, for the lock's owner or its tenant (rings under that tenant only). It returns NotFound,
// Unauthorized, Forbidden, or Invalid for a bad cursor or limit.
func (s *Service) LockRings(ctx context.Context, p Principal, id int64, cursor string, limit int) (RingPage, error) {
	before, limit, err := parseCursor(cursor, limit)
	if err != nil {
		return RingPage{}, err
	}
	if err := requireAuth(p); err != nil {
		return RingPage{}, err
	}
	v, found, err := s.readLock(ctx, id)
	if err != nil {
		return RingPage{}, err
	}
	if !found {
		return RingPage{}, domain.Errorf(domain.NotFound, "Lock %d not found", id)
	}
	if err := authorizeRing(p, v.State, fmt.Sprintf("read the rings of lock %d", id)); err != nil {
		return RingPage{}, err
	}
	// A tenant sees the rings of its own time with the lock, not those of
	// a tenant that had it before.
	rows, err := s.st.RingsByLock(ctx, lockKey(id), FeedScope(p), before, limit)
	if err != nil {
		return RingPage{}, err
	}
	return s.ringPage(ctx, rows, limit, "")
}

// Notifications lists the rings that targeted user id, newest first, each
// with that user's own deliveries only. It returns NotFound, Unauthorized,
// Forbidden, or Invalid for a bad cursor or limit.
func (s *Service) Notifications(ctx context.Context, p Principal, id, cursor string, limit int) (RingPage, error) {
	before, limit, err := parseCursor(cursor, limit)
	if err != nil {
		return RingPage{}, err
	}
	if err := s.AuthorizeUserStream(ctx, p, id); err != nil {
		return RingPage{}, err
	}
	rows, err := s.st.RingsForUser(ctx, id, FeedScope(p), before, limit)
	if err != nil {
		return RingPage{}, err
	}
	return s.ringPage(ctx, rows, limit, id)
}

// FeedScope is the tenant whose rings p may see in a user's notifications
// and live stream: a non-super tenant key sees only its own tenant's rings
// (a user may live at several tenants' locks); "" means all.
func FeedScope(p Principal) string {
	if p.Kind == TenantCaller && !p.Super {
		return p.OrgID
	}
	return ""
}

func (s *Service) ringPage(ctx context.Context, rows []store.Ring, limit int, only string) (RingPage, error) {
	page := RingPage{Rings: make([]RingView, 0, len(rows))}
	ids := make([]string, 0, len(rows))
	states := make([]doorbell.State, len(rows))
	for i, r := range rows {
		if err := json.Unmarshal(r.State, &states[i]); err != nil {
			return page, fmt.Errorf("decode ring: %w", err)
		}
		ids = append(ids, states[i].RingID)
	}
	dels, err := s.st.Deliveries(ctx, ids, only)
	if err != nil {
		return page, err
	}
	byTarget := map[[2]string][]ChannelDelivery{}
	for _, d := range dels {
		if d.EventType != doorbell.TypeDoorbellRang {
			continue // answer notices are not part of a ring's delivery state
		}
		k := [2]string{d.RingID, d.Target}
		byTarget[k] = append(byTarget[k], ChannelDelivery{Channel: strings.TrimPrefix(d.Consumer, "doorbell."), Status: d.Status, Attempts: d.Attempts,
			LastError: d.LastError, QueuedAt: d.CreatedAt, CompletedAt: d.DoneAt, NextAttemptAt: d.NextAttemptAt})
	}
	for _, st := range states {
		v := RingView{RingID: st.RingID, LockID: st.LockID, Source: st.Source, VisitorName: st.VisitorName, Message: st.Message,
			Timestamp: st.RangAt, Status: st.Status, AnsweredAt: st.AnsweredAt, DeclinedBy: append([]string{}, st.Declined...), Residents: []RingResidentView{}}
		for _, t := range st.Residents {
			if t.UserID == st.AnsweredBy {
				v.AnsweredBy = &Responder{UserID: t.UserID, Name: t.Name}
			}
			if only != "" && t.UserID != only {
				continue
			}
			d := byTarget[[2]string{st.RingID, t.UserID}]
			if d == nil {
				d = []ChannelDelivery{}
			}
			v.Residents = append(v.Residents, RingResidentView{UserID: t.UserID, Name: t.Name, Deliveries: d})
		}
		page.Rings = append(page.Rings, v)
	}
	if len(rows) == limit && limit > 0 {
		page.NextCursor = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	return page, nil
}
