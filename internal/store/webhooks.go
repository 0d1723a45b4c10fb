package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/es"
)

// WebhookRow is a partner subscription as the webhooks table holds it
// (projected from the tenant's webhook events).
type WebhookRow struct {
	ID, OrgID, URL, Status, CreatedAt string
	Events                            []string
}

// Matches reports whether the subscription's filter lets typ through.
func (w WebhookRow) Matches(typ string) bool { return tenant.FilterMatches(w.Events, typ) }

func (s *Store) projectWebhook(ctx context.Context, q querier, r es.Record) error {
	exec := func(query string, args ...any) error {
		if _, err := q.ExecContext(ctx, s.sql(query), args...); err != nil {
			return fmt.Errorf("project %s: %w", r.Type, err)
		}
		return nil
	}
	if !isWebhookEvent(r.Type) {
		return nil
	}
	ev, err := tenant.Events.Decode(r.Type, r.Data)
	if err != nil {
		return fmt.Errorf("project %s: %w", r.Type, err)
	}
	switch e := ev.(type) {
	case tenant.WebhookCreated:
		evs, _ := json.Marshal(e.Events)
		return exec(`INSERT INTO webhooks (webhook_id, org_id, url, events, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			e.WebhookID, e.OrgID, e.URL, string(evs), tenant.StatusPending, e.CreatedAt)
	case tenant.WebhookUpdated:
		if e.URL != "" {
			if err := exec(`UPDATE webhooks SET url = $1, status = $2 WHERE webhook_id = $3`, e.URL, tenant.StatusPending, e.WebhookID); err != nil {
				return err
			}
		}
		if e.Events != nil {
			evs, _ := json.Marshal(e.Events)
			return exec(`UPDATE webhooks SET events = $1 WHERE webhook_id = $2`, string(evs), e.WebhookID)
		}
	case tenant.WebhookDeleted:
		return exec(`DELETE FROM webhooks WHERE webhook_id = $1`, e.WebhookID)
	case tenant.WebhookVerified:
		return exec(`UPDATE webhooks SET status = $1 WHERE webhook_id = $2`, tenant.StatusActive, e.WebhookID)
	case tenant.WebhookDisabled:
		return exec(`UPDATE webhooks SET status = $1 WHERE webhook_id = $2`, tenant.StatusDisabled, e.WebhookID)
	}
	return nil
}

func isWebhookEvent(typ string) bool {
	switch typ {
	case tenant.TypeWebhookCreated, tenant.TypeWebhookUpdated, tenant.TypeWebhookDeleted, tenant.TypeWebhookVerified, tenant.TypeWebhookDisabled:
		return true
	}
	return false
}

const webhookCols = `webhook_id, org_id, url, events, status, created_at`

func scanWebhook(sc interface{ Scan(...any) error }) (WebhookRow, error) {
	var w WebhookRow
	var evs string
	if err := sc.Scan(&w.ID, &w.OrgID, &w.URL, &evs, &w.Status, &w.CreatedAt); err != nil {
		return w, err
	}
	if err := json.Unmarshal([]byte(evs), &w.Events); err != nil {
		return w, fmt.Errorf("decode webhook %s events: %w", w.ID, err)
	}
	return w, nil
}

// Webhook returns the subscription id; found is false when there is none.
func (s *Store) Webhook(ctx context.Context, id string) (WebhookRow, bool, error) {
	w, err := scanWebhook(s.r.QueryRowContext(ctx, s.sql(`SELECT `+webhookCols+` FROM webhooks WHERE webhook_id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, false, nil
	}
	if err != nil {
		return w, false, fmt.Errorf("read webhook: %w", err)
	}
	return w, true, nil
}

func (s *Store) webhooksOf(ctx context.Context, q querier, orgs []string) ([]WebhookRow, error) {
	var out []WebhookRow
	// On PostgreSQL the fan-out share-locks the subscriptions it queues
	// for: a delete or a 410 committing meanwhile waits for it, and then
	// drops what it queued (DropWebhookRows), instead of leaving rows for
	// a webhook that is gone.
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR SHARE"
	}
	for _, org := range orgs {
		rows, err := q.QueryContext(ctx, s.sql(`SELECT `+webhookCols+` FROM webhooks WHERE org_id = $1 AND status <> $2 ORDER BY created_at, webhook_id`+lock), org, tenant.StatusDisabled)
		if err != nil {
			return nil, fmt.Errorf("read webhooks of %s: %w", org, err)
		}
		for rows.Next() {
			w, err := scanWebhook(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// WebhookSecrets are what a webhook's requests are signed and
// authenticated with; they live outside the event log.
type WebhookSecrets struct {
	Secret        string // whsec_...
	Previous      string // the secret before the last rotation, still signing until PreviousUntil
	PreviousUntil string
	AuthValue     string // the apiKeyHeader value or bearer token
}

// StillSigning returns the rotated-out secret while it still signs at now
// (a domain.TimeLayout stamp), or "".
func (ws WebhookSecrets) StillSigning(now string) string {
	if ws.Previous == "" || ws.PreviousUntil <= now {
		return ""
	}
	return ws.Previous
}

// PutWebhookSecrets stores (replaces) the secrets of webhook id.
func (tx *Tx) PutWebhookSecrets(ctx context.Context, id string, ws WebhookSecrets) error {
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO webhook_secrets (webhook_id, secret, previous_secret, previous_until, auth_value)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (webhook_id) DO UPDATE SET secret = excluded.secret, previous_secret = excluded.previous_secret,
		previous_until = excluded.previous_until, auth_value = excluded.auth_value`), id, ws.Secret, ws.Previous, ws.PreviousUntil, ws.AuthValue)
	if err != nil {
		return fmt.Errorf("store webhook secrets: %w", err)
	}
	return nil
}

// DeleteWebhookSecrets forgets the secrets of webhook id.
func (tx *Tx) DeleteWebhookSecrets(ctx context.Context, id string) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`DELETE FROM webhook_secrets WHERE webhook_id = $1`), id); err != nil {
		return fmt.Errorf("delete webhook secrets: %w", err)
	}
	return nil
}

func (s *Store) webhookSecrets(ctx context.Context, q querier, id string) (WebhookSecrets, bool, error) {
	var ws WebhookSecrets
	err := q.QueryRowContext(ctx, s.sql(`SELECT secret, previous_secret, previous_until, auth_value FROM webhook_secrets WHERE webhook_id = $1`), id).
		Scan(&ws.Secret, &ws.Previous, &ws.PreviousUntil, &ws.AuthValue)
	if errors.Is(err, sql.ErrNoRows) {
		return ws, false, nil
	}
	if err != nil {
		return ws, false, fmt.Errorf("read webhook secrets: %w", err)
	}
	return ws, true, nil
}

// WebhookSecrets returns the secrets of webhook id.
func (s *Store) WebhookSecrets(ctx context.Context, id string) (WebhookSecrets, bool, error) {
	return s.webhookSecrets(ctx, s.r, id)
}

// WebhookSecrets is Store.WebhookSecrets inside the transaction.
func (tx *Tx) WebhookSecrets(ctx context.Context, id string) (WebhookSecrets, bool, error) {
	return tx.s.webhookSecrets(ctx, tx.q, id)
}

// EnqueueFor adds an outbox row for consumer that is not about one stored
// event (event_seq 0): a verification request for a webhook, say.
func (tx *Tx) EnqueueFor(ctx context.Context, consumer, aggType, aggID, orgID, target string, version int64, now string) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(outboxInsert.values), consumer, aggType, aggID, version, orgID, target, now, 0); err != nil {
		return fmt.Errorf("enqueue %s row: %w", consumer, err)
	}
	tx.Wake(consumer)
	return nil
}

// DefaultWebhookWindow is how many undone deliveries one webhook may have
// queued at a time (FanOutWebhooks' window) unless told otherwise.
const DefaultWebhookWindow = 200

// fanRow is one queued partner row (an event of an aggregate that belongs
// to a tenant) with its event's type.
type fanRow struct {
	id, seq, version       int64
	aggType, aggID, org, t string
	payload                sql.NullString // a Shadow Update's detail
}

// wants reports whether subscription h is to get r: the tenant's own
// event of a type its filter lets through. Tenant events (keys, webhooks)
// are the partner's own settings, not news about their locks: never sent.
func (h WebhookRow) wants(r fanRow) bool {
	return r.aggType != tenant.AggregateType && r.t != "" && h.OrgID == r.org && h.Matches(r.t)
}

// newDelivery is a delivery row to queue: a partner row for a webhook.
type newDelivery struct {
	Seq     int64   `json:"s"`
	AggType string  `json:"t"`
	AggID   string  `json:"a"`
	Version int64   `json:"v"`
	Org     string  `json:"o"`
	Target  string  `json:"w"`
	Payload *string `json:"p,omitempty"` // a Shadow Update's detail
}

func deliveryOf(r fanRow, target string) newDelivery {
	d := newDelivery{Seq: r.seq, AggType: r.aggType, AggID: r.aggID, Version: r.version, Org: r.org, Target: target}
	if r.payload.Valid {
		d.Payload = &r.payload.String
	}
	return d
}

// queueDeliveries inserts ds in their order. On PostgreSQL that is one
// statement per 1,000 rows (one JSON parameter: a round trip per row was
// most of the fan-out's time); on SQLite, in process, a prepared insert
// per row is cheaper.
func (tx *Tx) queueDeliveries(ctx context.Context, ds []newDelivery, now string) error {
	if tx.s.dialect != Postgres {
		for _, d := range ds {
			if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at, payload)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`), es.ConsumerWebhookSend, d.Seq, d.AggType, d.AggID, d.Version, d.Org, d.Target, now, d.Payload); err != nil {
				return fmt.Errorf("queue webhook delivery: %w", err)
			}
		}
		return nil
	}
	q := `INSERT INTO outbox (consumer, event_seq, aggregate_type, aggregate_id, version, org_id, target, created_at, payload)
		SELECT $1, x.s, x.t, x.a, x.v, x.o, x.w, $2, x.p
		FROM ROWS FROM (json_to_recordset($3::json) AS (s bigint, t text, a text, v bigint, o text, w text, p text)) WITH ORDINALITY AS x(s, t, a, v, o, w, p, n)
		ORDER BY x.n`
	for len(ds) > 0 {
		n := min(len(ds), 1000)
		list, err := json.Marshal(ds[:n])
		if err != nil {
			return fmt.Errorf("queue webhook deliveries: %w", err)
		}
		if _, err := tx.q.ExecContext(ctx, tx.s.sql(q), es.ConsumerWebhookSend, now, string(list)); err != nil {
			return fmt.Errorf("queue webhook deliveries: %w", err)
		}
		ds = ds[n:]
	}
	return nil
}

// undone counts the undone deliveries of each webhook of ids, each up to
// limit, in one statement.
func (tx *Tx) undone(ctx context.Context, ids []string, limit int) (map[string]int, error) {
	out := make(map[string]int, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(ids)
	q := `SELECT j.value, (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE consumer = $1 AND target = j.value AND done_at IS NULL LIMIT $2) t)
		FROM json_each($3) j`
	if tx.s.dialect == Postgres {
		q = `SELECT j.value, (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE consumer = $1 AND target = j.value AND done_at IS NULL LIMIT $2) t)
		FROM json_array_elements_text($3::json) j(value)`
	}
	rows, err := tx.q.QueryContext(ctx, tx.s.sql(q), es.ConsumerWebhookSend, limit, string(list))
	if err != nil {
		return nil, fmt.Errorf("count webhook deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("count webhook deliveries: %w", err)
		}
		out[id] = n
	}
	return out, rows.Err()
}

func scanFanRows(rows *sql.Rows, err error) ([]fanRow, error) {
	if err != nil {
		return nil, fmt.Errorf("read partner rows: %w", err)
	}
	defer rows.Close()
	var out []fanRow
	for rows.Next() {
		var r fanRow
		if err := rows.Scan(&r.id, &r.seq, &r.version, &r.aggType, &r.aggID, &r.org, &r.t, &r.payload); err != nil {
			return nil, fmt.Errorf("scan partner row: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const fanCols = `o.id, o.event_seq, o.version, o.aggregate_type, o.aggregate_id, o.org_id, ` + rowType + `, o.payload`

// catchUpSpan is how many outbox ids one catch-up step of a parked webhook
// reads through at most.
const catchUpSpan = 20000

// FanOutWebhooks turns up to limit queued partner rows (one per event of an
// aggregate that belongs to a tenant) into one row per matching, not
// disabled subscription of that tenant, for es.ConsumerWebhookSend, in
// one transaction. Rows are taken in queue order by one node at a time
// (an advisory lock on PostgreSQL), so each subscription's rows for one
// aggregate are numbered in version order.
//
// A subscription has at most window undone deliveries. One that has them
// all (a dead or slow receiver, or a burst) is parked: from the partner row
// on that did not fit, its events wait in the outbox, where they already
// are, and cost nothing more per event. Once its queue is down to half the
// window, the same step queues what it missed, in order, and it is
// unparked when it has caught up. So the work an event costs does not grow
// with the receivers that fail, and no webhook's queue grows without end.
// Catching up costs a look at each parked webhook's queue: it is done only
// when catchUp is set. It returns how many partner rows it handled, how
// many deliveries it queued, and how many webhooks are parked.
func (s *Store) FanOutWebhooks(ctx context.Context, now time.Time, limit, window int, catchUp bool) (handled, queued, parkedN int, err error) {
	if window <= 0 {
		window = DefaultWebhookWindow
	}
	err = s.writeAside(ctx, func(ctx context.Context, tx *Tx) error {
		handled, queued, parkedN = 0, 0, 0
		if s.dialect == Postgres {
			var got bool
			// Advisory locks are per database: the schema in the key keeps
			// deployments (and test runs) in other schemas out of the way.
			if err := tx.q.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock(7331001, hashtext(current_schema()))`).Scan(&got); err != nil {
				return fmt.Errorf("fan-out lock: %w", err)
			}
			if !got {
				return nil // another node is fanning out; it takes these rows too
			}
		}
		n := stamp(now)
		parked, q, err := tx.catchUp(ctx, window, n, catchUp)
		if err != nil {
			return err
		}
		queued += q
		parkedN = len(parked)
		batch, err := scanFanRows(tx.q.QueryContext(ctx, s.sql(`SELECT `+fanCols+`
			FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq
			WHERE o.consumer = $1 AND o.done_at IS NULL ORDER BY o.id LIMIT $2`), es.ConsumerWebhooks, limit))
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		var orgs []string
		for _, r := range batch {
			if !slices.Contains(orgs, r.org) {
				orgs = append(orgs, r.org)
			}
		}
		hooks, err := s.webhooksOf(ctx, tx.q, orgs)
		if err != nil {
			return err
		}
		var open []string
		for _, h := range hooks {
			if _, ok := parked[h.ID]; !ok {
				open = append(open, h.ID)
			}
		}
		counts, err := tx.undone(ctx, open, window)
		if err != nil {
			return err
		}
		room := make(map[string]int, len(counts))
		for id, u := range counts {
			room[id] = window - u
		}
		var ds []newDelivery
		ids := make([]int64, 0, len(batch))
		for _, r := range batch {
			ids = append(ids, r.id)
			for _, h := range hooks {
				if !h.wants(r) {
					continue
				}
				if from, ok := parked[h.ID]; ok {
					if r.id < from {
						// Committed late (PostgreSQL): catch-up starts here.
						if err := tx.movePark(ctx, h.ID, r.id); err != nil {
							return err
						}
						parked[h.ID] = r.id
					}
					continue
				}
				left := room[h.ID]
				if left <= 0 {
					if err := tx.park(ctx, h.ID, r.id, n); err != nil {
						return err
					}
					parked[h.ID] = r.id
					continue
				}
				ds = append(ds, deliveryOf(r, h.ID))
				room[h.ID] = left - 1
			}
		}
		if err := tx.queueDeliveries(ctx, ds, n); err != nil {
			return err
		}
		queued += len(ds)
		// One JSON parameter, not a list in the text: the statement is
		// prepared once (stmtCache).
		list, _ := json.Marshal(ids)
		in := `SELECT value FROM json_each($3)`
		if s.dialect == Postgres {
			in = `SELECT json_array_elements_text($3::json)::bigint`
		}
		if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE outbox SET done_at = $1, status = $2 WHERE id IN (`+in+`)`), n, StatusDelivered, string(list)); err != nil {
			return fmt.Errorf("finish partner rows: %w", err)
		}
		handled, parkedN = len(batch), len(parked)
		return nil
	})
	return handled, queued, parkedN, err
}

// ParkedSince returns, for those of webhooks ids that are parked (their
// queue is full: FanOutWebhooks), when they were.
func (s *Store) ParkedSince(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(ids)
	in := `SELECT value FROM json_each($1)`
	if s.dialect == Postgres {
		in = `SELECT json_array_elements_text($1::json)`
	}
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT webhook_id, since FROM webhook_backlog WHERE webhook_id IN (`+in+`)`), string(list))
	if err != nil {
		return nil, fmt.Errorf("read parked webhooks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, since string
		if err := rows.Scan(&id, &since); err != nil {
			return nil, fmt.Errorf("scan parked webhook: %w", err)
		}
		out[id] = since
	}
	return out, rows.Err()
}

func (tx *Tx) movePark(ctx context.Context, id string, from int64) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`UPDATE webhook_backlog SET parked_from = $1 WHERE webhook_id = $2`), from, id); err != nil {
		return fmt.Errorf("move parked webhook %s: %w", id, err)
	}
	return nil
}

func (tx *Tx) park(ctx context.Context, id string, from int64, now string) error {
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO webhook_backlog (webhook_id, parked_from, since) VALUES ($1, $2, $3)`), id, from, now); err != nil {
		return fmt.Errorf("park webhook %s: %w", id, err)
	}
	return nil
}

// catchUp queues, for every parked subscription whose queue is down to
// half the window, the partner rows it missed (handled since it was
// parked), up to a full window, and unparks those that have caught up.
// It returns the subscriptions still parked, each with the partner row
// its catch-up goes on from.
//
// On PostgreSQL a partner row can commit after rows with higher ids were
// fanned out; if such a row is where a subscription is parked, the rows
// after it that it did get are queued again on catch-up: a duplicate,
// never a loss (delivery is at least once).
func (tx *Tx) catchUp(ctx context.Context, window int, now string, run bool) (map[string]int64, int, error) {
	// parkedHook is one parked subscription; while caught up, left is the
	// room in its queue and next the partner row it goes on from.
	type parkedHook struct {
		hook       WebhookRow
		from, next int64
		left       int
		full       bool // its queue filled up before the end of the catch-up
	}
	// Most runs only need to know which webhooks to leave alone.
	parked := map[string]int64{}
	rows, err := tx.q.QueryContext(ctx, tx.s.sql(`SELECT webhook_id, parked_from FROM webhook_backlog`))
	if err != nil {
		return nil, 0, fmt.Errorf("read parked webhooks: %w", err)
	}
	for rows.Next() {
		var id string
		var from int64
		if err := rows.Scan(&id, &from); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("scan parked webhook: %w", err)
		}
		parked[id] = from
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(parked) == 0 || !run {
		return parked, 0, nil
	}
	rows, err = tx.q.QueryContext(ctx, tx.s.sql(`SELECT b.parked_from, `+parkedCols+` FROM webhook_backlog b JOIN webhooks w ON w.webhook_id = b.webhook_id ORDER BY b.webhook_id`))
	if err != nil {
		return nil, 0, fmt.Errorf("read parked webhooks: %w", err)
	}
	var list []*parkedHook
	for rows.Next() {
		p := &parkedHook{}
		var evs string
		if err := rows.Scan(&p.from, &p.hook.ID, &p.hook.OrgID, &p.hook.URL, &evs, &p.hook.Status, &p.hook.CreatedAt); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("scan parked webhook: %w", err)
		}
		if err := json.Unmarshal([]byte(evs), &p.hook.Events); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("decode webhook %s events: %w", p.hook.ID, err)
		}
		list = append(list, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	// The ones whose queue is down to half the window catch up together,
	// in one pass over the partner rows, so that their deliveries are
	// queued interleaved, as the fan-out queues them.
	var due []*parkedHook
	var orgs, ids []string
	start := int64(-1)
	for _, p := range list {
		ids = append(ids, p.hook.ID)
	}
	counts, err := tx.undone(ctx, ids, window)
	if err != nil {
		return nil, 0, err
	}
	for _, p := range list {
		if p.hook.Status == tenant.StatusDisabled {
			continue // its rows are dropped; DropWebhookRows unparks it
		}
		u := counts[p.hook.ID]
		if u > window/2 {
			continue
		}
		p.left, p.next = window-u, p.from
		due = append(due, p)
		if !slices.Contains(orgs, p.hook.OrgID) {
			orgs = append(orgs, p.hook.OrgID)
		}
		if start < 0 || p.from < start {
			start = p.from
		}
	}
	if len(due) == 0 {
		return parked, 0, nil
	}
	var last int64
	if err := tx.q.QueryRowContext(ctx, tx.s.sql(`SELECT COALESCE(max(id), 0) FROM outbox`)).Scan(&last); err != nil {
		return nil, 0, fmt.Errorf("read last outbox id: %w", err)
	}
	in := `SELECT value FROM json_each($4)`
	if tx.s.dialect == Postgres {
		in = `SELECT json_array_elements_text($4::json)`
	}
	orgList, _ := json.Marshal(orgs)
	var ds []newDelivery
	for from, open := start, len(due); open > 0 && from <= last; from += catchUpSpan {
		to := from + catchUpSpan
		missed, err := scanFanRows(tx.q.QueryContext(ctx, tx.s.sql(`SELECT `+fanCols+`
			FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq
			WHERE o.id >= $1 AND o.id < $2 AND o.consumer = $3 AND o.org_id IN (`+in+`) AND o.done_at IS NOT NULL ORDER BY o.id`),
			from, to, es.ConsumerWebhooks, string(orgList)))
		if err != nil {
			return nil, 0, err
		}
		for _, r := range missed {
			for _, p := range due {
				if p.full || r.id < p.from || !p.hook.wants(r) {
					continue
				}
				if p.left == 0 {
					p.full, p.next = true, r.id
					open--
					continue
				}
				ds = append(ds, deliveryOf(r, p.hook.ID))
				p.left--
			}
		}
		for _, p := range due {
			if !p.full {
				p.next = max(p.next, to)
			}
		}
	}
	if err := tx.queueDeliveries(ctx, ds, now); err != nil {
		return nil, 0, err
	}
	for _, p := range due {
		if p.next > last {
			if _, err := tx.q.ExecContext(ctx, tx.s.sql(`DELETE FROM webhook_backlog WHERE webhook_id = $1`), p.hook.ID); err != nil {
				return nil, 0, fmt.Errorf("unpark webhook %s: %w", p.hook.ID, err)
			}
			delete(parked, p.hook.ID)
			continue
		}
		if p.next != p.from {
			if err := tx.movePark(ctx, p.hook.ID, p.next); err != nil {
				return nil, 0, err
			}
		}
		parked[p.hook.ID] = p.next
	}
	return parked, len(ds), nil
}

// parkedCols are webhookCols of the webhooks table joined as w.
var parkedCols = func() string {
	parts := strings.Split(webhookCols, ", ")
	for i := range parts {
		parts[i] = "w." + parts[i]
	}
	return strings.Join(parts, ", ")
}()

// DropWebhookRows ends every undone delivery of webhook id as skipped with
// reason (the webhook was deleted or disabled), forgets the events it
// was parked with and ends its replays. It returns how many rows it ended.
// The row except (0: none) is left alone: its attempt is being recorded.
// So are the rows a node is attempting now (under a lease): the receiver
// may be answering them, and the log must show what it answered; a retry
// of one is skipped by the dispatcher.
func (tx *Tx) DropWebhookRows(ctx context.Context, id, reason string, now time.Time, except int64) (int64, error) {
	leaseNow := "$1" // leases are on the database's clock (ClaimWith)
	if tx.s.dialect == Postgres {
		leaseNow = pgStamp("now()")
	}
	res, err := tx.q.ExecContext(ctx, tx.s.sql(`UPDATE outbox SET done_at = $1, status = $2, last_error = $3, claimed_by = NULL, claimed_until = NULL
		WHERE target = $4 AND consumer IN ($5, $6) AND done_at IS NULL AND id <> $7 AND (claimed_until IS NULL OR claimed_until <= `+leaseNow+`)`),
		stamp(now), StatusSkipped, reason, id, es.ConsumerWebhookSend, es.ConsumerWebhookVerify, except)
	if err != nil {
		return 0, fmt.Errorf("drop webhook deliveries: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, tx.s.sql(`DELETE FROM webhook_backlog WHERE webhook_id = $1`), id); err != nil {
		return 0, fmt.Errorf("unpark webhook %s: %w", id, err)
	}
	if err := tx.endReplays(ctx, id, now); err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ReleaseWebhookRows makes the held deliveries of webhook id due now (it
// was just verified).
func (tx *Tx) ReleaseWebhookRows(ctx context.Context, id string) error {
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`UPDATE outbox SET next_attempt_at = NULL WHERE target = $1 AND consumer = $2 AND done_at IS NULL AND attempts = 0`),
		id, es.ConsumerWebhookSend)
	if err != nil {
		return fmt.Errorf("release webhook deliveries: %w", err)
	}
	return nil
}

// Defer hands a claimed row back without recording an attempt, due again
// at until (a delivery held while its webhook waits for verification). A
// webhook delivery is due at once instead when its webhook is no longer
// pending: the verification that released the held rows may have
// committed while this one was being claimed and found pending. It
// returns ErrLeaseLost when node no longer holds the row.
func (s *Store) Defer(ctx context.Context, c Claim, node string, until time.Time) error {
	return s.writeAside(ctx, func(ctx context.Context, tx *Tx) error {
		next := any(stamp(until))
		if c.Consumer == es.ConsumerWebhookSend {
			held, err := tx.webhookPending(ctx, c.Target)
			if err != nil {
				return err
			}
			if !held {
				next = nil
			}
		}
		res, err := tx.q.ExecContext(ctx, s.sql(`UPDATE outbox SET next_attempt_at = $1, claimed_by = NULL, claimed_until = NULL
			WHERE id = $2 AND claimed_by = $3 AND done_at IS NULL`), next, c.ID, node)
		if err != nil {
			return fmt.Errorf("defer outbox row %d: %w", c.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrLeaseLost
		}
		return nil
	})
}

// webhookPending reports whether webhook id is pending. On PostgreSQL it
// waits for a verification being recorded for it (which moves the
// webhooks row before it releases the held deliveries), so that a row
// deferred here is either seen by that release or sees its outcome.
func (tx *Tx) webhookPending(ctx context.Context, id string) (bool, error) {
	q := `SELECT status FROM webhooks WHERE webhook_id = $1`
	if tx.s.dialect == Postgres {
		q += ` FOR SHARE`
	}
	var status string
	err := tx.q.QueryRowContext(ctx, tx.s.sql(q), id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read webhook %s status: %w", id, err)
	}
	return status == tenant.StatusPending, nil
}

// DeliveryRow is one delivery of a webhook: an outbox row and its event.
type DeliveryRow struct {
	ID, EventSeq, Version                    int64
	Target, EventType, AggregateType, AggID  string
	OrgID, Status, CreatedAt, EventTimestamp string
	NextAttemptAt, DoneAt, LastError         string
	Attempts                                 int
}

const deliveryCols = `o.id, o.event_seq, o.version, o.target, ` + rowType + `, o.aggregate_type, o.aggregate_id, o.org_id, o.status,
	o.created_at, COALESCE(e.ts, ''), COALESCE(o.next_attempt_at, ''), COALESCE(o.done_at, ''), COALESCE(o.last_error, ''), o.attempts`

func scanDelivery(sc interface{ Scan(...any) error }) (DeliveryRow, error) {
	var d DeliveryRow
	err := sc.Scan(&d.ID, &d.EventSeq, &d.Version, &d.Target, &d.EventType, &d.AggregateType, &d.AggID, &d.OrgID, &d.Status,
		&d.CreatedAt, &d.EventTimestamp, &d.NextAttemptAt, &d.DoneAt, &d.LastError, &d.Attempts)
	return d, err
}

// WebhookDeliveries returns the deliveries of webhook id, newest first,
// older than the row before (0: from the newest), at most limit; only
// those with status when status is not "".
func (s *Store) WebhookDeliveries(ctx context.Context, id string, before int64, limit int, status string) ([]DeliveryRow, error) {
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT `+deliveryCols+` FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq
		WHERE o.target = $1 AND o.consumer = $2 AND ($3 = 0 OR o.id < $3) AND ($4 = '' OR o.status = $4) ORDER BY o.id DESC LIMIT $5`),
		id, es.ConsumerWebhookSend, before, status, limit)
	if err != nil {
		return nil, fmt.Errorf("read webhook deliveries: %w", err)
	}
	defer rows.Close()
	var out []DeliveryRow
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Delivery returns one webhook delivery by its id.
func (s *Store) Delivery(ctx context.Context, id int64) (DeliveryRow, bool, error) {
	d, err := scanDelivery(s.r.QueryRowContext(ctx, s.sql(`SELECT `+deliveryCols+` FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq
		WHERE o.id = $1 AND o.consumer = $2`), id, es.ConsumerWebhookSend))
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("read delivery: %w", err)
	}
	return d, true, nil
}

// AttemptsOf returns the recorded attempts of outbox rows ids, each
// row's oldest first.
func (s *Store) AttemptsOf(ctx context.Context, ids []int64) (map[int64][]Attempt, error) {
	out := map[int64][]Attempt{}
	if len(ids) == 0 {
		return out, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = fmt.Sprint(id)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT outbox_id, attempt, at, node, outcome, status_code, error, latency_ms
		FROM delivery_attempts WHERE outbox_id IN (`+strings.Join(list, ",")+`) ORDER BY outbox_id, attempt`)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		if err := rows.Scan(&a.OutboxID, &a.Attempt, &a.At, &a.Node, &a.Outcome, &a.StatusCode, &a.Error, &a.LatencyMS); err != nil {
			return nil, fmt.Errorf("scan attempt: %w", err)
		}
		out[a.OutboxID] = append(out[a.OutboxID], a)
	}
	return out, rows.Err()
}
