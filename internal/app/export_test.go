package app

import (
	"context"
	"sort"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// Test doors into the aggregate registry: a test registers a toy aggregate
// once and drives it through the command path.

// Aggregate is the registration of an aggregate type with state S.
type Aggregate[S any] = aggregate[S]

// NewAggregate returns the registration of an aggregate type.
func NewAggregate[S any](typ string, events *domain.Catalog, apply func(S, domain.Event) S, org func(S) string, projections ...store.Projection) Aggregate[S] {
	return aggregate[S]{typ: typ, events: events, apply: apply, org: org, projections: projections}
}

// Register registers aggs as New registers the builtins.
func (s *Service) Register(aggs ...registered) { s.register(aggs...) }

// AggregateTypes returns the registered stream types, sorted.
func (s *Service) AggregateTypes() []string {
	out := make([]string, 0, len(s.aggs))
	for t := range s.aggs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Command runs decide on aggregate a/id in one transaction: load its
// snapshot, decide, save after the loaded version. It returns the new
// version and the first event.
func Command[S any](ctx context.Context, s *Service, a aggregate[S], id string, decide func(st S, now string) ([]domain.Event, error)) (int64, *EventOut, error) {
	var v int64
	var first *EventOut
	err := s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
		st, snap, err := load(ctx, tx, a, id)
		if err != nil {
			return err
		}
		now := s.stamp()
		evs, err := decide(st, now)
		if err != nil {
			return err
		}
		_, v, first, err = save(ctx, tx, a, snap, st, evs, now)
		return err
	})
	return v, first, err
}

// Read returns the committed state of aggregate a/id.
func Read[S any](ctx context.Context, s *Service, a aggregate[S], id string) (S, int64, bool, error) {
	st, snap, found, err := read(ctx, s.st, a, id)
	return st, snap.Version, found, err
}
