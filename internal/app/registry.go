package app

import (
	"encoding/json"
	"fmt"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/hub"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// The aggregate registry: one registration per aggregate type. The command
// path (load, read, save), Rebuild and the store's projections all come
// from it. A new aggregate is one more variable here and one more entry
// in builtins; nothing else in app or store switches on aggregate types.
var (
	lockAgg = aggregate[lock.State]{typ: lock.AggregateType, events: lock.Events, apply: lock.Apply,
		org: func(s lock.State) string { return s.OrgID }, projections: []store.Projection{store.LockMembersProjection(), store.LockActionsProjection()}, shared: true}
	userAgg = aggregate[user.State]{typ: user.AggregateType, events: user.Events, apply: user.Apply,
		org: func(user.State) string { return "" }}
	tenantAgg = aggregate[tenant.State]{typ: tenant.AggregateType, events: tenant.Events, apply: tenant.Apply,
		org: func(s tenant.State) string { return s.OrgID }, projections: []store.Projection{store.APIKeysProjection(), store.WebhooksProjection()}}
	ringAgg = aggregate[doorbell.State]{typ: doorbell.AggregateType, events: doorbell.Events, apply: doorbell.Apply,
		org: func(s doorbell.State) string { return s.OrgID }, projections: []store.Projection{store.DoorbellRingsProjection()}}
	hubAgg = aggregate[hub.State]{typ: hub.AggregateType, events: hub.Events, apply: hub.Apply,
		org: func(s hub.State) string { return s.OrgID }}
)

// builtins lists every registered aggregate.
func builtins() []registered { return []registered{lockAgg, userAgg, tenantAgg, ringAgg, hubAgg} }

// aggregate is the registration of one aggregate type with state S: its
// stream type, its event catalogue, its fold, the org (tenant) that owns a
// state, and the store projections its events run through.
type aggregate[S any] struct {
	typ         string
	events      *domain.Catalog
	apply       func(S, domain.Event) S
	org         func(S) string
	projections []store.Projection
	// shared says that apply and every decision on a state copy a slice
	// or map before they change it (lock.Apply appends to a copy): load
	// then hands out a state decoded once and shared between commands and
	// queries (decoded.go), instead of decoding the snapshot each time.
	shared bool
}

// registered is an aggregate with its state type hidden: what Rebuild and
// the store need of it.
type registered interface {
	aggregateType() string
	catalog() *domain.Catalog
	storeProjections() []store.Projection
	// fold decodes r and applies it to state (nil before the first
	// record, else what fold returned last), kept decoded (an S).
	fold(state any, r es.Record) (any, error)
	// encode renders a state fold returned, and its org.
	encode(state any) (json.RawMessage, string, error)
}

func (a aggregate[S]) aggregateType() string                { return a.typ }
func (a aggregate[S]) storeProjections() []store.Projection { return a.projections }
func (a aggregate[S]) catalog() *domain.Catalog             { return a.events }

func (a aggregate[S]) fold(state any, r es.Record) (any, error) {
	st, _ := state.(S)
	e, err := a.events.Decode(r.Type, r.Data)
	if err != nil {
		return nil, err
	}
	return a.apply(st, e), nil
}

func (a aggregate[S]) encode(state any) (json.RawMessage, string, error) {
	st, _ := state.(S)
	b, err := json.Marshal(st)
	return b, a.org(st), err
}

// register adds aggregates to the service and their projections to the
// store. New registers the builtins.
func (s *Service) register(aggs ...registered) {
	for _, a := range aggs {
		s.aggs[a.aggregateType()] = a
		s.st.Register(a.aggregateType(), a.storeProjections()...)
	}
}

// folder is the store.Folder of the registered aggregates: it decodes a
// stored record and applies it, exactly as the command path does, keeping
// the state decoded between records.
type folder map[string]registered

func (f folder) agg(aggType string) (registered, error) {
	a, ok := f[aggType]
	if !ok {
		return nil, fmt.Errorf("unknown aggregate type %q", aggType)
	}
	return a, nil
}

// Fold implements store.Folder.
func (f folder) Fold(aggType string, state any, r es.Record) (any, error) {
	a, err := f.agg(aggType)
	if err != nil {
		return nil, err
	}
	return a.fold(state, r)
}

// Encode implements store.Folder.
func (f folder) Encode(aggType string, state any) (json.RawMessage, string, error) {
	a, err := f.agg(aggType)
	if err != nil {
		return nil, "", err
	}
	return a.encode(state)
}

// EventName is the stored type name of event payload e in the catalogue
// of its registered aggregate ("" when no built-in aggregate records it):
// the OpenAPI document types each command's event with it.
func EventName(e domain.Event) string {
	for _, a := range builtins() {
		if n := a.catalog().Name(e); n != "" {
			return n
		}
	}
	return ""
}
