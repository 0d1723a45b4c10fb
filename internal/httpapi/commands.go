package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
)

// IdemHeader is the optional Idempotency-Key of a command.
type IdemHeader struct {
	IdempotencyKey string `header:"Idempotency-Key" doc:"Optional: a retry with the same key and body returns the first answer and records nothing"`
}

// lockCommandInput is the request of a command on a lock: the lock's id,
// the Idempotency-Key and the body B (B's type name, with "Body", names its
// schema).
type lockCommandInput[B any] struct {
	LockPath
	IdemHeader
	Body B
}

// userCommandInput is the request of a command on a user.
type userCommandInput[B any] struct {
	UserPath
	IdemHeader
	Body B
}

// Event is the event of a command answer: the type and payload P of what
// the command recorded, null when it changed nothing.
type Event[P domain.Event] app.Event[P]

// Schema declares the event nullable, its type the one P names and its
// data P's schema, so that generated clients get the payload's type.
func (Event[P]) Schema(r huma.Registry) *huma.Schema {
	var p P
	data := r.Schema(reflect.TypeFor[P](), true, "")
	payloadTypes(r, data, map[*huma.Schema]bool{})
	return &huma.Schema{Type: huma.TypeObject, Nullable: true, AdditionalProperties: false, Required: []string{"type", "data"},
		Properties: map[string]*huma.Schema{
			"type": {Type: huma.TypeString, Enum: []any{app.EventName(p)}},
			"data": data,
		}}
}

// payloadTypes types an event payload's schema s (and the schemas it
// refers to) as upstream types its payloads: every integer a number, and
// arrays never null (the decide steps never record a null list).
func payloadTypes(r huma.Registry, s *huma.Schema, seen map[*huma.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if s.Ref != "" {
		payloadTypes(r, r.SchemaFromRef(s.Ref), seen)
		return
	}
	switch s.Type {
	case huma.TypeInteger:
		s.Type, s.Format = huma.TypeNumber, ""
	case huma.TypeArray:
		s.Nullable = false
	}
	for _, p := range s.Properties {
		payloadTypes(r, p, seen)
	}
	payloadTypes(r, s.Items, seen)
}

// number is an integer the contract declares a JSON number, as upstream
// does (lock ids, versions, counts); its JSON is the integer's.
type number int64

// Schema declares a JSON number.
func (number) Schema(huma.Registry) *huma.Schema { return &huma.Schema{Type: huma.TypeNumber} }

// Envelope is upstream's command answer; its event carries payload P.
type Envelope[P domain.Event] struct {
	Success     bool      `json:"success"`
	AggregateID string    `json:"aggregateId"`
	Version     number    `json:"version"`
	Event       *Event[P] `json:"event" doc:"The recorded event, or null when nothing changed"`
}

func envelope[P domain.Event](a app.Answer[P]) Envelope[P] {
	return Envelope[P]{Success: true, AggregateID: a.AggregateID, Version: number(a.Version), Event: (*Event[P])(a.Event)}
}

// CommandOutput is the answer of a command without extras.
type CommandOutput[P domain.Event] struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     Envelope[P]
}

// status is 201 for a command that may create (created) and did.
func status[P domain.Event](a app.Answer[P], created bool) int {
	if created && a.Created {
		return http.StatusCreated
	}
	return http.StatusOK
}

func replayed[P domain.Event](a app.Answer[P]) string {
	if a.Replayed {
		return "true"
	}
	return ""
}

func (s *Server) call(ctx context.Context, route, key string, input any) app.Call {
	return app.Call{P: principal(ctx), Route: route, IdempotencyKey: key, Input: input}
}

// lockCall is call for a command on lock id: the route is the command's
// name and the lock id.
func (s *Server) lockCall(ctx context.Context, command string, id int64, key string, input any) app.Call {
	return s.call(ctx, command+" "+strconv.FormatInt(id, 10), key, input)
}

// command encodes a command's answer (created: the route answers 201 when
// the command created the aggregate).
func command[P domain.Event](ctx context.Context, s *Server, a app.Answer[P], err error, created bool) (*CommandOutput[P], error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &CommandOutput[P]{Status: status(a, created), Replayed: replayed(a), Body: envelope(a)}, nil
}
