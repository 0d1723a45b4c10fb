package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/spkey-dev/spkey/internal/es"
)

// Snapshot returns the stored state of one aggregate. found is false when
// the aggregate has no events.
func (s *Store) Snapshot(ctx context.Context, aggType, aggID string) (es.Snapshot, bool, error) {
	if !s.cached(ctx) {
		return s.snapshot(ctx, s.r, aggType, aggID)
	}
	if sn, ok := s.cache.snapshot(aggType, aggID); ok {
		return sn, true, nil
	}
	epoch := s.cache.snapEpoch()
	sn, found, err := s.snapshot(ctx, s.r, aggType, aggID)
	if err == nil && found {
		s.cache.putReadSnapshot(sn, epoch)
	}
	return sn, found, err
}

// Snapshots returns every snapshot of one aggregate type, ordered by id.
func (s *Store) Snapshots(ctx context.Context, aggType string) ([]es.Snapshot, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT aggregate_id, version, org_id, state, created_at, updated_at FROM aggregates
		WHERE aggregate_type = $1 ORDER BY aggregate_id`), aggType)
	if err != nil {
		return nil, fmt.Errorf("list %s snapshots: %w", aggType, err)
	}
	defer rows.Close()
	var out []es.Snapshot
	for rows.Next() {
		sn := es.Snapshot{AggregateType: aggType}
		var state string
		if err := rows.Scan(&sn.AggregateID, &sn.Version, &sn.OrgID, &state, &sn.CreatedAt, &sn.UpdatedAt); err != nil {
			return nil, fmt.Errorf("scan snapshot: %w", err)
		}
		sn.State = []byte(state)
		out = append(out, sn)
	}
	return out, rows.Err()
}

// Stream implements es.Store.
func (s *Store) Stream(ctx context.Context, aggType, aggID string, after int64, limit int) ([]es.Record, error) {
	q := `SELECT seq, version, type, ts, org_id, data FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version`
	args := []any{aggType, aggID, after}
	if limit > 0 {
		q += ` LIMIT $4`
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, s.sql(q), args...)
	if err != nil {
		return nil, fmt.Errorf("read stream %s/%s: %w", aggType, aggID, err)
	}
	defer rows.Close()
	var out []es.Record
	for rows.Next() {
		r := es.Record{AggregateType: aggType, AggregateID: aggID}
		var data string
		if err := rows.Scan(&r.Seq, &r.Version, &r.Type, &r.Timestamp, &r.OrgID, &data); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		r.Data = []byte(data)
		out = append(out, r)
	}
	return out, rows.Err()
}

// StreamLen implements es.Store.
func (s *Store) StreamLen(ctx context.Context, aggType, aggID string) (int64, error) {
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT MAX(version) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2`), aggType, aggID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("stream length %s/%s: %w", aggType, aggID, err)
	}
	return v.Int64, nil
}

// Outbox implements es.Store.
func (s *Store) Outbox(ctx context.Context, consumer string, limit int) ([]es.OutboxRow, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT id, consumer, event_seq, aggregate_type, aggregate_id, version, org_id FROM outbox
		WHERE consumer = $1 AND done_at IS NULL ORDER BY id LIMIT $2`), consumer, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var out []es.OutboxRow
	for rows.Next() {
		var o es.OutboxRow
		if err := rows.Scan(&o.ID, &o.Consumer, &o.EventSeq, &o.AggregateType, &o.AggregateID, &o.Version, &o.OrgID); err != nil {
			return nil, fmt.Errorf("scan outbox row: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// APIKey is a row of the API-key read model.
type APIKey struct {
	KeyID     string
	OrgID     string
	Masked    string
	Super     bool
	CreatedAt string
	CreatedBy string
	ExpiresAt string
	RevokedAt string
}

// APIKeyByHash finds a key by the SHA-256 hex of its value.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (APIKey, bool, error) {
	if !s.cached(ctx) {
		return s.apiKeyByHash(ctx, hash)
	}
	if k, ok := s.cache.key(hash); ok {
		return k, true, nil
	}
	gen := s.cache.generation()
	k, found, err := s.apiKeyByHash(ctx, hash)
	if err == nil && found {
		s.cache.putKey(hash, k, gen)
	}
	return k, found, err
}

func (s *Store) apiKeyByHash(ctx context.Context, hash string) (APIKey, bool, error) {
	var k APIKey
	var super int
	var exp, rev sql.NullString
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT key_id, org_id, masked, super, created_at, created_by, expires_at, revoked_at FROM api_keys WHERE hash = $1`), hash).
		Scan(&k.KeyID, &k.OrgID, &k.Masked, &super, &k.CreatedAt, &k.CreatedBy, &exp, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, false, nil
	}
	if err != nil {
		return APIKey{}, false, fmt.Errorf("find api key: %w", err)
	}
	k.Super, k.ExpiresAt, k.RevokedAt = super == 1, exp.String, rev.String
	return k, true, nil
}

// TenantContact returns a tenant's raw owner e-mail ("" when none).
func (s *Store) TenantContact(ctx context.Context, orgID string) (string, error) {
	var e string
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT owner_email FROM tenant_contacts WHERE org_id = $1`), orgID).Scan(&e)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("tenant contact: %w", err)
	}
	return e, nil
}

// SnapshotsOf returns the snapshots of the given aggregates of one type that
// exist, by id, in one query (the read cache answers first).
func (s *Store) SnapshotsOf(ctx context.Context, aggType string, ids []string) (map[string]es.Snapshot, error) {
	out := make(map[string]es.Snapshot, len(ids))
	var missing []string
	seen := map[string]bool{}
	cached := s.cached(ctx)
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if !cached {
			missing = append(missing, id)
			continue
		}
		if sn, ok := s.cache.snapshot(aggType, id); ok {
			out[id] = sn
			continue
		}
		missing = append(missing, id)
	}
	for len(missing) > 0 {
		chunk := missing[:min(len(missing), 500)]
		missing = missing[len(chunk):]
		args := []any{aggType}
		ph := make([]string, len(chunk))
		for i, id := range chunk {
			args = append(args, id)
			ph[i] = fmt.Sprintf("$%d", i+2)
		}
		rows, err := s.r.QueryContext(ctx, s.sql(`SELECT aggregate_id, version, org_id, state, created_at, updated_at FROM aggregates
			WHERE aggregate_type = $1 AND aggregate_id IN (`+strings.Join(ph, ", ")+`)`), args...)
		if err != nil {
			return nil, fmt.Errorf("load %s snapshots: %w", aggType, err)
		}
		for rows.Next() {
			sn := es.Snapshot{AggregateType: aggType}
			var state string
			if err := rows.Scan(&sn.AggregateID, &sn.Version, &sn.OrgID, &state, &sn.CreatedAt, &sn.UpdatedAt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan snapshot: %w", err)
			}
			sn.State = []byte(state)
			out[sn.AggregateID] = sn
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load %s snapshots: %w", aggType, err)
		}
	}
	return out, nil
}
