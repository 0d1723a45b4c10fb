package store

import (
	"context"
	"fmt"

	"github.com/spkey-dev/spkey/internal/es"
)

// Row is an outbox row a Router asks for: its consumer and its target
// ("" for none).
type Row struct {
	Consumer, Target string
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
	if s.dialect != Postgres || b.router == nil || len(b.woken) == 0 {
		return nil
	}
	ch, payloads := b.router.Announce(b.woken)
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
	tx.b.wake(r, consumers)
}

// route queues the rows the router asks for about recs (stored, their Seq
// set) and registers one wake-up for the consumers that got rows.
func (tx *Tx) route(ctx context.Context, recs []es.Record) error {
	r := tx.s.router
	if r == nil {
		return nil
	}
	var woken []string
	for _, rec := range recs {
		rows, err := r.Route(ctx, tx, rec)
		if err != nil {
			return err
		}
	next:
		for _, row := range rows {
			if err := tx.enqueue(ctx, row.Consumer, rec, row.Target); err != nil {
				return err
			}
			for _, c := range woken {
				if c == row.Consumer {
					continue next
				}
			}
			woken = append(woken, row.Consumer)
		}
	}
	tx.Wake(woken...)
	return nil
}
