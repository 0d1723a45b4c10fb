package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/es/estest"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// The toy aggregate: a counter that may belong to a tenant. Everything it
// needs is below and in the one Register call of newToyService.

const toyType = "toy"

type toyState struct {
	ID    string `json:"id"`
	OrgID string `json:"orgId,omitempty"`
	Count int    `json:"count"`
}

type toyOpened struct {
	ID    string `json:"id"`
	OrgID string `json:"orgId,omitempty"`
}

type toyBumped struct {
	ID string `json:"id"`
	By int    `json:"by"`
}

func toyEvents() *domain.Catalog {
	return domain.NewCatalog(toyType, domain.Def[toyOpened]("ToyOpened"), domain.Def[toyBumped]("ToyBumped"))
}

func toyApply(s toyState, e domain.Event) toyState {
	switch v := e.(type) {
	case toyOpened:
		s = toyState{ID: v.ID, OrgID: v.OrgID}
	case toyBumped:
		s.Count += v.By
	}
	return s
}

// toyAggregate is the toy's registration: no store projection of its own
// (its read model is its snapshot).
func toyAggregate() app.Aggregate[toyState] {
	return app.NewAggregate(toyType, toyEvents(), toyApply, func(s toyState) string { return s.OrgID })
}

// newToyService opens a fresh store with a service over it, the toy
// registered once beside the builtins.
func newToyService(t *testing.T, b testenv.Backend) (*store.Store, *app.Service) {
	t.Helper()
	st := testenv.OpenStore(t, b)
	// Webhooks may point at loopback (TestToyAggregate's never answers).
	svc := app.New(st, app.Options{Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
	svc.Register(toyAggregate())
	return st, svc
}

// TestToyAggregate: an aggregate registered once gets the command path
// (append after the expected version, with its snapshot), rebuild and the
// partner webhook outbox row.
func TestToyAggregate(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, svc := newToyService(t, b)
			// acme has a webhook: its events get partner rows.
			admin := app.Principal{Admin: true, Email: "ops@example.com"}
			if _, err := svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "acme", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.CreateWebhook(ctx, app.Call{P: admin}, "acme", app.WebhookInput{URL: "http://127.0.0.1:9/acme", Events: []string{"*"}}); err != nil {
				t.Fatal(err)
			}
			toy := toyAggregate()
			open := func(id, org string) func(toyState, string) ([]domain.Event, error) {
				return func(s toyState, _ string) ([]domain.Event, error) {
					if s.ID != "" {
						return nil, domain.Errorf(domain.Conflict, "toy %s exists", id)
					}
					return []domain.Event{toyOpened{ID: id, OrgID: org}}, nil
				}
			}
			bump := func(by ...int) func(toyState, string) ([]domain.Event, error) {
				return func(s toyState, _ string) ([]domain.Event, error) {
					var evs []domain.Event
					for _, n := range by {
						evs = append(evs, toyBumped{ID: s.ID, By: n})
					}
					return evs, nil
				}
			}
			step := func(id string, decide func(toyState, string) ([]domain.Event, error), wantVersion int64, wantFirst string) {
				t.Helper()
				v, ev, err := app.Command(ctx, svc, toy, id, decide)
				if err != nil {
					t.Fatalf("command on %s: %v", id, err)
				}
				if v != wantVersion || ev == nil || ev.Type != wantFirst {
					t.Fatalf("command on %s: version %d, first event %+v; want version %d, %s", id, v, ev, wantVersion, wantFirst)
				}
			}

			// The command path: versions continue from the snapshot.
			step("t1", open("t1", "acme"), 1, "ToyOpened")
			step("t1", bump(2, 3), 3, "ToyBumped")
			step("t2", open("t2", ""), 1, "ToyOpened")
			step("t2", bump(5), 2, "ToyBumped")
			if _, _, err := app.Command(ctx, svc, toy, "t1", open("t1", "acme")); domain.ErrorCode(err) != domain.Conflict {
				t.Fatalf("decide error = %v, want the toy's Conflict", err)
			}
			if _, _, err := app.Command(ctx, svc, toy, "t1", func(toyState, string) ([]domain.Event, error) {
				return []domain.Event{lock.OwnerSet{UserID: "u"}}, nil
			}); err == nil || !strings.Contains(err.Error(), "not an event of toy") {
				t.Fatalf("saving another aggregate's event: %v, want a refusal", err)
			}
			got, v, found, err := app.Read(ctx, svc, toy, "t1")
			if err != nil || !found {
				t.Fatalf("read t1: found %v, %v", found, err)
			}
			if diff := cmp.Diff(toyState{ID: "t1", OrgID: "acme", Count: 5}, got); diff != "" || v != 3 {
				t.Errorf("t1 at v%d (want v3), state (-want +got):\n%s", v, diff)
			}
			snap, found, err := st.Snapshot(ctx, toyType, "t1")
			if err != nil || !found || snap.Version != 3 || snap.OrgID != "acme" {
				t.Fatalf("snapshot of t1: %+v, found %v, %v", snap, found, err)
			}
			recs, err := st.Stream(ctx, toyType, "t1", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, r := range recs {
				types = append(types, r.Type)
			}
			if diff := cmp.Diff([]string{"ToyOpened", "ToyBumped", "ToyBumped"}, types); diff != "" {
				t.Errorf("stored types of t1 (-want +got):\n%s", diff)
			}
			// A stale expected version is refused with the typed conflict.
			err = st.Update(ctx, func(ctx context.Context, tx es.Appender) error {
				r := es.Record{AggregateType: toyType, AggregateID: "t1", Version: 3, Type: "ToyBumped", Timestamp: recs[0].Timestamp, Data: json.RawMessage(`{"id":"t1","by":1}`)}
				return tx.Append(ctx, 2, snap, []es.Record{r})
			})
			var ce *es.ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("append after a stale version: %v, want *es.ConflictError", err)
			}

			// The partner webhook outbox: one webhooks row per event of the
			// toy of the tenant with a webhook, none for the toy without an
			// org.
			rows, err := st.Outbox(ctx, es.ConsumerWebhooks, 100)
			if err != nil {
				t.Fatal(err)
			}
			type row struct {
				Agg, ID, Org string
				Version      int64
			}
			var gotRows []row
			for _, r := range rows {
				if r.AggregateType == toyType {
					gotRows = append(gotRows, row{r.AggregateType, r.AggregateID, r.OrgID, r.Version})
				}
			}
			wantRows := []row{{toyType, "t1", "acme", 1}, {toyType, "t1", "acme", 2}, {toyType, "t1", "acme", 3}}
			if diff := cmp.Diff(wantRows, gotRows); diff != "" {
				t.Errorf("webhooks outbox rows of the toy (-want +got):\n%s", diff)
			}

			// Rebuild: the read models come back the same.
			live, err := st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(live, `toy | t1 | 3 | acme | {"id":"t1","orgId":"acme","count":5}`) {
				t.Fatalf("live read models lack the toy's snapshot:\n%s", live)
			}
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			rebuilt, err := st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(live, rebuilt); diff != "" {
				t.Errorf("read models after rebuild differ (-live +rebuilt):\n%s", diff)
			}
			step("t1", bump(1), 4, "ToyBumped")
		})
	}
}

// TestRegistryConformance runs the event-store conformance suite on the
// streams of every registered aggregate type, the toy's included: each
// append goes through the store projections the registry names for it.
// On PostgreSQL only the toy runs: the suite's records are of a type no
// aggregate declares, which every projection lets pass without SQL, so a
// run per builtin there would repeat the toy's (at ~15 s each, mostly
// opening fresh schemas).
func TestRegistryConformance(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			_, svc := newToyService(t, b)
			types := svc.AggregateTypes()
			if !slices.Contains(types, toyType) || !slices.Contains(types, lock.AggregateType) {
				t.Fatalf("registered aggregate types %v: want the builtins and the toy", types)
			}
			if b == testenv.Postgres {
				types = []string{toyType}
			}
			for _, typ := range types {
				t.Run(typ, func(t *testing.T) {
					estest.RunAggregate(t, typ, func(t *testing.T) es.Store {
						st, _ := newToyService(t, b)
						return st
					}, testenv.SubscribeWebhook)
				})
			}
		})
	}
}
