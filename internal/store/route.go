package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/spkey-dev/spkey/internal/es"
)

// Row is an outbox row a Router asks for: its consumer and its target
// ("" for none).
type Row struct {
	Consumer, Target string
	// OnlyIfWebhook queues the row only if the event's tenant has a
	// partner webhook (in any state) when the row is written, decided in
	// the appending transaction by the statement that inserts it: a tenant
	// without webhooks pays no row, no claim and no wake-up per event. A
	// webhook sees the events committed after its own creation.
	OnlyIfWebhook bool
}

// Router decides the outbox rows of appended events and wakes their
// consumers: this node's after commit, the other nodes' by notifications
// sent inside the committing transaction. internal/outbox's Engine
// implements it; the store knows no consumer by name.
type Router interface {
	// Route returns the rows rec gets, reading inside tx (which sees the
	// whole append).
	Route(ctx context.Context, tx *Tx, rec es.Record) ([]Row, error)
	// Announce names the notifications that tell the other nodes of rows
	// for consumers. On PostgreSQL the store sends them inside the
	// committing transaction (SQLite has no other nodes).
	Announce(consumers []string) (channel string, payloads []string)
	// WakeLocal is told, after a commit, which consumers got rows (or had
	// rows made due) to wake this node's. It must not block.
	WakeLocal(consumers []string)
}

// announce queues, on PostgreSQL, the notifications of the consumers b
// wakes, in the transaction q (every PostgreSQL transaction calls it
// before COMMIT: beforeCommit).
func (s *Store) announce(ctx context.Context, q querier, b *batch) error {
	if s.dialect != Postgres || b.router == nil || len(b.woken)+len(b.maybe) == 0 {
		return nil
	}
	// A row that may have been queued (OnlyIfWebhook) is announced
	// anyway: its count is known only once the pipeline has run, and a
	// NOTIFY too many costs the other nodes a look.
	consumers := b.woken
	for _, m := range b.maybe {
		if !slices.Contains(consumers, m.consumer) {
			consumers = append(slices.Clip(consumers), m.consumer)
		}
	}
	ch, payloads := b.router.Announce(consumers)
	for _, p := range payloads {
		if _, err := q.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ch, p); err != nil {
			return fmt.Errorf("notify %s: %w", ch, err)
		}
	}
	return nil
}

// SetRouter installs r: from then on Append queues the rows r asks for,
// and every commit that queued rows wakes their consumers through r. Call
// it once, at assembly, before any write. Without a router appends queue
// nothing.
func (s *Store) SetRouter(r Router) { s.router = r }

// Wake asks the router, once this transaction has committed (never when
// it rolls back), to wake consumers: rows of theirs were queued or made
// due by this transaction. Enqueue and Append do it themselves.
func (tx *Tx) Wake(consumers ...string) {
	r := tx.s.router
	if r == nil || len(consumers) == 0 {
		return
	}
	tx.b.wake(r, consumers...)
}

// route queues the rows the router asks for about recs (stored, their Seq
// set) and registers one wake-up for the consumers that got rows.
func (tx *Tx) route(ctx context.Context, recs []es.Record) error {
	r := tx.s.router
	if r == nil {
		return nil
	}
	for _, rec := range recs {
		rows, err := r.Route(ctx, tx, rec)
		if err != nil {
			return err
		}
		for _, row := range rows {
			if row.OnlyIfWebhook {
				res, err := tx.enqueueIfWebhook(ctx, row.Consumer, rec, row.Target)
				if err != nil {
					return err
				}
				tx.b.wakeIf(r, row.Consumer, res)
				continue
			}
			if err := tx.enqueue(ctx, row.Consumer, rec, row.Target); err != nil {
				return err
			}
			tx.b.wake(r, row.Consumer) // each consumer once per batch
		}
	}
	return nil
}

// outboxInsertIfWebhook queues one outbox row if its tenant ($5) has a
// partner webhook (Row.OnlyIfWebhook).
var outboxInsertIfWebhook = newSeqInsertIf("outbox", outboxCols, 7,
	`EXISTS (SELECT 1 FROM webhooks WHERE org_id = $5)`)

// enqueueIfWebhook inserts the outbox row about the stored event r if its
// tenant has a partner webhook. The result's row count says whether it
// did; on PostgreSQL it is known once the writer's pipeline has run.
func (tx *Tx) enqueueIfWebhook(ctx context.Context, consumer string, r es.Record, target string) (sql.Result, error) {
	if r.OrgID == "" {
		return nil, nil
	}
	return tx.insertOutbox(ctx, outboxInsertIfWebhook, consumer, r, target)
}
