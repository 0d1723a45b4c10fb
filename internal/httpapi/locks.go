package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

type LockPath struct {
	ID int64 `path:"id" exclusiveMinimum:"0" doc:"Lock ID (numeric)"`
}

type createLockInputBody struct {
	_            struct{}   `additionalProperties:"true"`
	Index        int64      `json:"index" exclusiveMinimum:"0" doc:"Lock index number"`
	UUID         string     `json:"uuid" doc:"Lock (device) UUID"`
	SerialNumber string     `json:"serialNumber,omitempty" maxLength:"800" pattern:"^[a-zA-Z0-9_.,@/:#=[\\]-]*$"`
	VendorName   string     `json:"vendorName,omitempty" maxLength:"800" pattern:"^[a-zA-Z0-9_.,@/:#=[\\]-]*$"`
	OwnerID      string     `json:"ownerId,omitempty"`
	Keys         []keyInput `json:"keys,omitempty"`
}

type keyInput struct {
	_           struct{} `additionalProperties:"true"`
	UUID        string   `json:"uuid"`
	IndexNumber *int64   `json:"indexNumber,omitempty"`
	UserID      string   `json:"userId,omitempty"`
}

func (s *Server) createLock(ctx context.Context, in *lockCommandInput[createLockInputBody]) (*CommandOutput[lock.LockCreated], error) {
	keys := make([]lock.Key, 0, len(in.Body.Keys))
	for _, k := range in.Body.Keys {
		keys = append(keys, lock.Key{UUID: k.UUID, IndexNumber: k.IndexNumber, UserID: k.UserID})
	}
	b := app.CreateLockInput{Index: in.Body.Index, UUID: in.Body.UUID, SerialNumber: in.Body.SerialNumber, VendorName: in.Body.VendorName, OwnerID: in.Body.OwnerID, Keys: keys}
	r, err := s.svc.CreateLock(ctx, s.lockCall(ctx, "CreateLock", in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, true)
}

type setOrganizationInputBody struct {
	_     struct{} `additionalProperties:"true"`
	OrgID string   `json:"orgId" doc:"Organization ID"`
}

func (s *Server) setOrganization(ctx context.Context, in *lockCommandInput[setOrganizationInputBody]) (*CommandOutput[lock.OrganizationSet], error) {
	r, err := s.svc.SetOrganization(ctx, s.lockCall(ctx, "SetOrganization", in.ID, in.IdempotencyKey, in.Body), in.ID, in.Body.OrgID)
	return command(ctx, s, r, err, false)
}

type setOwnerInputBody struct {
	_      struct{} `additionalProperties:"true"`
	UserID string   `json:"userId" doc:"User ID to set as owner"`
}

func (s *Server) setOwner(ctx context.Context, in *lockCommandInput[setOwnerInputBody]) (*CommandOutput[lock.OwnerSet], error) {
	r, err := s.svc.SetOwner(ctx, s.lockCall(ctx, "SetOwner", in.ID, in.IdempotencyKey, in.Body), in.ID, in.Body.UserID)
	return command(ctx, s, r, err, false)
}

// ResidentOutput is the answer of AddResident and RemoveResident.
type ResidentOutput[P domain.Event] struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Envelope[P]
		Email string `json:"email,omitempty" doc:"The resident's e-mail address, when known"`
	}
}

type residentInputBody struct {
	_           struct{} `additionalProperties:"true"`
	Name        string   `json:"name,omitempty" doc:"Resident name (required by AddResident)"`
	Email       *string  `json:"email,omitempty" doc:"Resident email, resolved to the user"`
	PhoneNumber *string  `json:"phoneNumber,omitempty" doc:"Resident phone number in international form"`
	UserID      *string  `json:"userId,omitempty" minLength:"1" doc:"Resident user UUID"`
}

type addResidentInputBody struct {
	_           struct{} `additionalProperties:"true"`
	Name        string   `json:"name" minLength:"1" doc:"Resident name"`
	Email       *string  `json:"email,omitempty" doc:"Resident email, resolved to the user"`
	PhoneNumber *string  `json:"phoneNumber,omitempty" doc:"Resident phone number in international form"`
	UserID      *string  `json:"userId,omitempty" minLength:"1" doc:"Resident user UUID"`
}

func residentResult[P domain.Event](ctx context.Context, s *Server, r app.ResidentAnswer[P], err error) (*ResidentOutput[P], error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ResidentOutput[P]{Status: http.StatusOK, Replayed: replayed(r.Answer)}
	out.Body.Envelope = envelope(r.Answer)
	out.Body.Email = r.Email
	return out, nil
}

func (s *Server) addResident(ctx context.Context, in *lockCommandInput[addResidentInputBody]) (*ResidentOutput[lock.ResidentAdded], error) {
	b := app.ResidentInput{Name: in.Body.Name, Email: in.Body.Email, PhoneNumber: in.Body.PhoneNumber, UserID: in.Body.UserID}
	r, err := s.svc.AddResident(ctx, s.lockCall(ctx, "AddResident", in.ID, in.IdempotencyKey, b), in.ID, b)
	return residentResult(ctx, s, r, err)
}

func (s *Server) removeResident(ctx context.Context, in *lockCommandInput[residentInputBody]) (*ResidentOutput[lock.ResidentRemoved], error) {
	b := app.ResidentInput{Email: in.Body.Email, PhoneNumber: in.Body.PhoneNumber, UserID: in.Body.UserID}
	r, err := s.svc.RemoveResident(ctx, s.lockCall(ctx, "RemoveResident", in.ID, in.IdempotencyKey, b), in.ID, b)
	return residentResult(ctx, s, r, err)
}

// BasicInfoOutput is GET /locks/{id}/basic-info.
type BasicInfoOutput struct {
	Body struct {
		ID             string `json:"id"`
		LockID         number `json:"lockId"`
		UUID           string `json:"uuid"`
		Version        number `json:"version"`
		SerialNumber   string `json:"serialNumber,omitempty"`
		OwnerID        string `json:"ownerId,omitempty"`
		OrgID          string `json:"orgId,omitempty"`
		OrganizationID string `json:"organizationId,omitempty"`
		R2Prefix       string `json:"r2Prefix" doc:"Where the lock's events live: the stream name in spkey's event store"`
		Online         bool   `json:"online" doc:"spkey's extension: whether the lock's device is connected"`
		LastSeen       string `json:"lastSeen,omitempty" doc:"spkey's extension: when the device last connected or disconnected; absent when never seen"`
	}
}

func streamName(id int64) string { return "lock/" + strconv.FormatInt(id, 10) + "/" }

func (s *Server) lockBasicInfo(ctx context.Context, in *LockPath) (*BasicInfoOutput, error) {
	v, err := s.svc.Lock(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &BasicInfoOutput{}
	b := &out.Body
	b.ID, b.LockID, b.UUID, b.Version = strconv.FormatInt(in.ID, 10), number(in.ID), v.State.UUID, number(v.Version)
	b.SerialNumber, b.OwnerID, b.OrgID, b.OrganizationID, b.R2Prefix = v.State.SerialNumber, v.State.OwnerID, v.State.OrgID, v.State.OrgID, streamName(in.ID)
	pr, err := s.svc.LockPresence(ctx, v)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	b.Online, b.LastSeen = pr.Online, pr.LastSeen
	return out, nil
}

// keyDetail is one key of a lock (lock.Key as upstream types it).
type keyDetail struct {
	UUID        string  `json:"uuid"`
	IndexNumber *number `json:"indexNumber,omitempty"`
	UserID      string  `json:"userId,omitempty"`
}

type residentDetail struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
	Email  string `json:"email,omitempty"`
}

// DetailsOutput is GET /locks/{id}/details.
type DetailsOutput struct {
	Body struct {
		ID             string           `json:"id"`
		LockID         number           `json:"lockId"`
		UUID           string           `json:"uuid"`
		SerialNumber   string           `json:"serialNumber,omitempty"`
		Keys           []keyDetail      `json:"keys" nullable:"false"`
		OwnerID        string           `json:"ownerId,omitempty"`
		OrganizationID string           `json:"organizationId,omitempty"`
		Residents      []residentDetail `json:"residents" nullable:"false"`
		OrgID          string           `json:"orgId" doc:"Empty when the lock has no organization"`
		Version        number           `json:"version"`
		Timestamp      string           `json:"timestamp" doc:"Time of the lock's last event"`
		R2Prefix       string           `json:"r2Prefix"`
		Online         bool             `json:"online" doc:"spkey's extension: whether the lock's device is connected"`
		LastSeen       string           `json:"lastSeen,omitempty" doc:"spkey's extension: when the device last connected or disconnected; absent when never seen"`
	}
}

func (s *Server) lockDetails(ctx context.Context, in *LockPath) (*DetailsOutput, error) {
	v, err := s.svc.Lock(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	emails, err := s.svc.ResidentEmails(ctx, principal(ctx), v.State.Residents)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DetailsOutput{}
	b := &out.Body
	b.ID, b.LockID, b.UUID, b.SerialNumber = strconv.FormatInt(in.ID, 10), number(in.ID), v.State.UUID, v.State.SerialNumber
	b.Keys = make([]keyDetail, 0, len(v.State.Keys))
	for _, k := range v.State.Keys {
		b.Keys = append(b.Keys, keyDetail{UUID: k.UUID, IndexNumber: (*number)(k.IndexNumber), UserID: k.UserID})
	}
	b.OwnerID, b.OrganizationID, b.OrgID, b.Version, b.Timestamp, b.R2Prefix = v.State.OwnerID, v.State.OrgID, v.State.OrgID, number(v.Version), v.UpdatedAt, streamName(in.ID)
	b.Residents = make([]residentDetail, 0, len(v.State.Residents))
	for _, r := range v.State.Residents {
		b.Residents = append(b.Residents, residentDetail{UserID: r.UserID, Name: r.Name, Email: emails[r.UserID]})
	}
	pr, err := s.svc.LockPresence(ctx, v)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	b.Online, b.LastSeen = pr.Online, pr.LastSeen
	return out, nil
}

type lockEventsInput struct {
	LockPath
	Page string `query:"page" doc:"1-based page; default the last (most recent) page"`
}

// EventsOutput is GET /locks/{id}/events.
type EventsOutput struct {
	Body struct {
		AggregateID string        `json:"aggregateId"`
		TotalEvents number        `json:"totalEvents"`
		Page        number        `json:"page"`
		PageSize    number        `json:"pageSize"`
		TotalPages  number        `json:"totalPages"`
		Events      []eventRecord `json:"events" nullable:"false"`
	}
}

// eventRecord is one recorded event of a lock (es.Record as upstream types
// it).
type eventRecord struct {
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Version       number          `json:"version"`
	Type          string          `json:"type"`
	Timestamp     string          `json:"timestamp"`
	OrgID         string          `json:"orgId"`
	Data          json.RawMessage `json:"event"`
}

func (s *Server) lockEvents(ctx context.Context, in *lockEventsInput) (*EventsOutput, error) {
	var page int64
	if in.Page != "" {
		p, err := strconv.ParseInt(in.Page, 10, 64)
		if err != nil || p < 1 {
			return nil, toAPIError(ctx, s.log, domain.InvalidField("page", "page must be a positive integer"))
		}
		page = p
	}
	pg, err := s.svc.LockEvents(ctx, principal(ctx), in.ID, page)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &EventsOutput{}
	b := &out.Body
	b.AggregateID, b.TotalEvents, b.Page, b.PageSize, b.TotalPages = strconv.FormatInt(in.ID, 10), number(pg.Total), number(pg.Page), number(pg.PageSize), number(pg.TotalPages)
	b.Events = make([]eventRecord, 0, len(pg.Events))
	for _, r := range pg.Events {
		b.Events = append(b.Events, eventRecord{AggregateType: r.AggregateType, AggregateID: r.AggregateID, Version: number(r.Version), Type: r.Type, Timestamp: r.Timestamp, OrgID: r.OrgID, Data: r.Data})
	}
	return out, nil
}

type lockDebugMessagesInput struct {
	LockPath
	Limit string `query:"limit" default:"50" doc:"Maximum number of messages to return per direction (a positive integer; more than 200 reads 200)"`
}

// DebugMessagesOutput is GET /locks/{id}/debug/messages.
type DebugMessagesOutput struct {
	Body struct {
		Messages debugMessageLists `json:"messages"`
		Total    number            `json:"total" doc:"How many messages the log holds for the lock's device, both directions"`
	}
}

// debugMessageLists are a device's logged messages by direction.
type debugMessageLists struct {
	Command []debugMessage `json:"command" nullable:"false" doc:"Desired-state changes sent to the device, newest first"`
	Status  []debugMessage `json:"status" nullable:"false" doc:"Reports the device sent, newest first"`
}

// debugMessage is one logged shadow message (app.DebugMessage as upstream
// types it).
type debugMessage struct {
	ID        number `json:"id"`
	Payload   any    `json:"payload" doc:"The message decoded as JSON, or the logged text when it is not JSON"`
	Timestamp string `json:"timestamp"`
}

// debugLimit parses the limit of GET /locks/{id}/debug/messages: empty is
// upstream's default, a positive integer is taken as is (the app caps it),
// anything else is refused like the page of GET /locks/{id}/events.
func debugLimit(raw string) (int, error) {
	if raw == "" {
		return app.DebugMessagesDefault, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		return app.DebugMessagesMax, nil
	}
	if err != nil || n < 1 {
		return 0, domain.InvalidField("limit", "limit must be a positive integer")
	}
	return int(min(n, app.DebugMessagesMax)), nil
}

func (s *Server) lockDebugMessages(ctx context.Context, in *lockDebugMessagesInput) (*DebugMessagesOutput, error) {
	limit, err := debugLimit(in.Limit)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	ms, err := s.svc.LockDebugMessages(ctx, principal(ctx), in.ID, limit)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DebugMessagesOutput{}
	b := &out.Body
	b.Messages.Command, b.Messages.Status, b.Total = debugMessageList(ms.Command), debugMessageList(ms.Status), number(ms.Total)
	return out, nil
}

func debugMessageList(ms []app.DebugMessage) []debugMessage {
	out := make([]debugMessage, 0, len(ms))
	for _, m := range ms {
		var payload any = m.Payload
		if json.Valid([]byte(m.Payload)) {
			payload = json.RawMessage(m.Payload)
		}
		out = append(out, debugMessage{ID: number(m.ID), Payload: payload, Timestamp: m.Timestamp})
	}
	return out
}

type residentItem struct {
	UserID   string `json:"userId"`
	Name     string `json:"name"`
	Email    string `json:"email,omitempty" doc:"Only for callers authorized on the lock"`
	HasPhone bool   `json:"hasPhone"`
}

// ResidentsOutput is GET /locks/{id}/residents.
type ResidentsOutput struct {
	Body struct {
		Residents []residentItem `json:"residents" nullable:"false"`
	}
}

func (s *Server) residents(ctx context.Context, in *LockPath) (*ResidentsOutput, error) {
	rs, err := s.svc.Residents(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ResidentsOutput{}
	out.Body.Residents = make([]residentItem, 0, len(rs))
	for _, r := range rs {
		out.Body.Residents = append(out.Body.Residents, residentItem{r.UserID, r.Name, r.Email, r.HasPhone})
	}
	return out, nil
}
