package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// Projection keeps some read-model tables in step with the events of the
// aggregate types it is registered for (Register). It owns its tables:
// Rebuild empties them and runs the projection over the whole log again.
// The store implements every projection; the app's aggregate registry
// says which aggregate type needs which.
type Projection struct {
	name   string
	tables []string // the tables it owns
	dumps  []string // one query per table, rendering it for DumpReadModels
	apply  func(s *Store, ctx context.Context, q querier, r es.Record) error
}

// Name returns the projection's name (for messages).
func (p Projection) Name() string { return p.name }

// Tables returns the tables the projection owns.
func (p Projection) Tables() []string { return append([]string(nil), p.tables...) }

// APIKeysProjection keeps api_keys (the key lookup of authentication) in
// step with ApiKeyIssued and ApiKeyRevoked.
func APIKeysProjection() Projection {
	return Projection{name: "api-keys", tables: []string{"api_keys"}, apply: (*Store).projectAPIKey,
		dumps: []string{`SELECT key_id, org_id, hash, masked, super, created_at, created_by, COALESCE(expires_at, ''), COALESCE(revoked_at, '') FROM api_keys`}}
}

// DoorbellRingsProjection keeps the ring indexes (doorbell_rings by lock,
// doorbell_ring_targets by targeted user) in step with DoorbellRang.
func DoorbellRingsProjection() Projection {
	return Projection{name: "doorbell-rings", tables: []string{"doorbell_rings", "doorbell_ring_targets"}, apply: (*Store).projectDoorbell,
		dumps: []string{`SELECT ring_id, lock_id, org_id, rang_at, event_seq FROM doorbell_rings`, `SELECT user_id, ring_id, lock_id, event_seq FROM doorbell_ring_targets`}}
}

// WebhooksProjection keeps webhooks (a tenant's subscriptions, without
// their secrets) in step with the webhook events.
func WebhooksProjection() Projection {
	return Projection{name: "webhooks", tables: []string{"webhooks"}, apply: (*Store).projectWebhook,
		dumps: []string{`SELECT webhook_id, org_id, url, events, status, created_at FROM webhooks`}}
}

// LockMembersProjection keeps lock_members (who holds which role on a
// lock), lock_key_holders (who holds which key of a lock) and
// lock_devices (device UUID to lock) in step with the lock events.
func LockMembersProjection() Projection {
	return Projection{name: "lock-members", tables: []string{"lock_members", "lock_key_holders", "lock_devices"}, apply: (*Store).projectLock,
		dumps: []string{`SELECT lock_id, user_id, role FROM lock_members`, `SELECT lock_id, key_uuid, user_id FROM lock_key_holders`,
			`SELECT uuid, lock_id FROM lock_devices`}}
}

// implemented lists every projection the store implements, in the order
// DumpReadModels renders them.
func implemented() []Projection {
	return []Projection{APIKeysProjection(), DoorbellRingsProjection(), WebhooksProjection(), LockMembersProjection(), LockActionsProjection()}
}

// projectionMap is the registered projections by aggregate type.
type projectionMap map[string][]Projection

// Register sets the projections the events of aggType run through, on
// append and on Rebuild (replacing any set before). The app's aggregate
// registry calls it; safe for concurrent use.
func (s *Store) Register(aggType string, ps ...Projection) {
	s.projMu.Lock()
	defer s.projMu.Unlock()
	next := projectionMap{}
	if cur := s.projs.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[aggType] = append([]Projection(nil), ps...)
	s.projs.Store(&next)
}

// registered returns the projections registered for aggType.
func (s *Store) registered(aggType string) []Projection {
	if m := s.projs.Load(); m != nil {
		return (*m)[aggType]
	}
	return nil
}

// ownedTables returns the tables of every registered projection, each
// once, in a fixed order.
func (s *Store) ownedTables() []string {
	m := s.projs.Load()
	if m == nil {
		return nil
	}
	types := make([]string, 0, len(*m))
	for t := range *m {
		types = append(types, t)
	}
	sort.Strings(types)
	seen := map[string]bool{}
	var out []string
	for _, t := range types {
		for _, p := range (*m)[t] {
			for _, tbl := range p.tables {
				if !seen[tbl] {
					seen[tbl] = true
					out = append(out, tbl)
				}
			}
		}
	}
	return out
}

// project runs r through the projections registered for its aggregate
// type. Append and Rebuild both call it.
func (s *Store) project(ctx context.Context, q querier, r es.Record) error {
	for _, p := range s.registered(r.AggregateType) {
		if err := p.apply(s, ctx, q, r); err != nil {
			return err
		}
	}
	return nil
}

// projectAPIKey is the api-keys projection.
func (s *Store) projectAPIKey(ctx context.Context, q querier, r es.Record) error {
	switch r.Type {
	case tenant.TypeAPIKeyIssued:
		var e tenant.APIKeyIssued
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		super := 0
		if e.Super {
			super = 1
		}
		_, err := q.ExecContext(ctx, s.sql(`INSERT INTO api_keys (key_id, org_id, hash, masked, super, created_at, created_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`), e.KeyID, e.OrgID, e.Hash, e.Masked, super, e.CreatedAt, e.CreatedBy, nullable(e.ExpiresAt))
		if err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
	case tenant.TypeAPIKeyRevoked:
		var e tenant.APIKeyRevoked
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		if _, err := q.ExecContext(ctx, s.sql(`UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2`), e.RevokedAt, e.KeyID); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
	}
	return nil
}
