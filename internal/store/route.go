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
// consumers after commit. internal/outbox's Engine implements it; the
// store knows no consumer by name.
type Router interface {
	// Route returns the rows rec gets, reading inside tx (which sees the
	// whole append).
	Route(ctx context.Context, tx *Tx, rec es.Record) ([]Row, error)
	// Queued is told, after a commit, which consumers got rows (or had
	// rows made due). It must not block.
	Queued(consumers []string)
}

// Announcer is a Router that names the notifications its wake-ups need
// (internal/outbox's Engine is one). On PostgreSQL the store then sends
// them inside the committing transaction and, after commit, calls
// WakeLocal instead of Queued.
type Announcer interface {
	Announce(consumers []string) (channel string, payloads []string)
	WakeLocal(consumers []string)
}

// announce queues, on PostgreSQL, the notifications of the consumers b
// wakes, in the transaction q (the writers call it before COMMIT).
func (s *Store) announce(ctx context.Context, q querier, b *batch) error {
	a, ok := b.router.(Announcer)
	if s.dialect != Postgres || !ok || len(b.woken) == 0 {
		return nil
	}
	ch, payloads := a.Announce(b.woken)
	for _, p := range payloads {
		if _, err := q.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ch, p); err != nil {
			return fmt.Errorf("notify %s: %w", ch, err)
		}
	}
	b.announced = true
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
