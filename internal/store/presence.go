package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Device presence is whether a thing is connected, kept beside the events
// like the shadows: one device_presence row per thing ever seen, written
// by the app when the broker (or, on an external broker, the device's
// presence topic) reports a connect or a disconnect. No event is rebuilt
// into it; DumpReadModels does not render it and Rebuild leaves it alone.
//
// Several nodes: each node's embedded broker sees only its own
// connections, so a row names the node that holds the thing's latest
// connection. A connect on any node takes the row (online, that node); a
// disconnect counts only when it comes from the node that holds the row (a
// device that moved to another node stays online when its old connection
// ends late). A node that dies cannot report its disconnects: when it
// starts again, ResetNodePresence sets its rows offline, keeping their
// last_seen. A node that never comes back leaves its rows online; a new
// connect anywhere corrects them.

// DevicePresence is one thing's presence row.
type DevicePresence struct {
	// Thing is the thing's name (lock-{id} for a lock).
	Thing string
	// Online is what the node holding the thing last said.
	Online bool
	// LastSeen is when the thing last connected or disconnected
	// (domain.TimeLayout).
	LastSeen string
	// Node names the node that holds the thing's latest connection (""
	// for an external broker, where no node holds it).
	Node string
	// Announced is the presence the lock's events last told partners.
	Announced bool
	// ConnectedAt is when the last LockDeviceConnected was recorded
	// (domain.TimeLayout; "": never).
	ConnectedAt string
	// UpdatedAt is when the row was last written.
	UpdatedAt string
}

const presenceColumns = `thing, online, last_seen, node, announced, connected_at, updated_at`

func scanPresence(row interface{ Scan(...any) error }) (DevicePresence, error) {
	var p DevicePresence
	err := row.Scan(&p.Thing, &p.Online, &p.LastSeen, &p.Node, &p.Announced, &p.ConnectedAt, &p.UpdatedAt)
	return p, err
}

// Presence returns the presence row of thing inside the transaction,
// which sees what the transaction wrote; found is false when the thing
// was never seen. On PostgreSQL it locks the row until the transaction
// ends (SELECT … FOR UPDATE), so that two nodes' reports of one thing are
// decided one after the other. It returns the database's error, wrapped.
func (tx *Tx) Presence(ctx context.Context, thing string) (p DevicePresence, found bool, err error) {
	q := `SELECT ` + presenceColumns + ` FROM device_presence WHERE thing = $1`
	if tx.s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	return tx.s.presence(ctx, tx.q, q, thing)
}

// Presence returns the committed presence row of thing; found is false
// when the thing was never seen. It returns the database's error,
// wrapped.
func (s *Store) Presence(ctx context.Context, thing string) (p DevicePresence, found bool, err error) {
	return s.presence(ctx, s.r, `SELECT `+presenceColumns+` FROM device_presence WHERE thing = $1`, thing)
}

func (s *Store) presence(ctx context.Context, q querier, query, thing string) (DevicePresence, bool, error) {
	p, err := scanPresence(q.QueryRowContext(ctx, s.sql(query), thing))
	if errors.Is(err, sql.ErrNoRows) {
		return DevicePresence{}, false, nil
	}
	if err != nil {
		return DevicePresence{}, false, fmt.Errorf("load presence of %s: %w", thing, err)
	}
	return p, true, nil
}

// PutPresence stores p as its thing's presence row, inserted or replaced.
// It returns an error for an empty thing, last_seen or updated_at, and the
// database's errors, wrapped.
func (tx *Tx) PutPresence(ctx context.Context, p DevicePresence) error {
	if p.Thing == "" || p.LastSeen == "" || p.UpdatedAt == "" {
		return fmt.Errorf("put presence of %q: empty thing name, last seen or update time", p.Thing)
	}
	_, err := tx.q.ExecContext(ctx, tx.s.sql(`INSERT INTO device_presence (`+presenceColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (thing) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen, node = excluded.node,
			announced = excluded.announced, connected_at = excluded.connected_at, updated_at = excluded.updated_at`),
		p.Thing, p.Online, p.LastSeen, p.Node, p.Announced, p.ConnectedAt, p.UpdatedAt)
	if err != nil {
		return fmt.Errorf("put presence of %s: %w", p.Thing, err)
	}
	return nil
}

// maxResetThings bounds the things one ResetNodePresence returns; the
// rows past it are set offline all the same.
const maxResetThings = 10000

// ResetNodePresence sets offline, at now, every thing that node holds
// online (a node starting again: the connections it held ended with its
// last run), keeping last_seen, through the writer. It returns those
// things (at most 10000: the rest are set offline too, unlisted), for the
// caller to announce. It returns an error for an empty node or now, and
// the database's errors, wrapped.
func (s *Store) ResetNodePresence(ctx context.Context, node, now string) (things []string, err error) {
	if node == "" || now == "" {
		return nil, fmt.Errorf("reset presence of node %q at %q: empty node or time", node, now)
	}
	err = s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		things = nil
		rows, err := tx.q.QueryContext(ctx, s.sql(`SELECT thing FROM device_presence WHERE node = $1 AND online ORDER BY thing LIMIT $2`), node, maxResetThings)
		if err != nil {
			return fmt.Errorf("reset presence of node %s: %w", node, err)
		}
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return fmt.Errorf("reset presence of node %s: %w", node, err)
			}
			things = append(things, t)
		}
		// The rows end before the update: PostgreSQL's connection serves
		// one statement at a time.
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reset presence of node %s: %w", node, err)
		}
		if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE device_presence SET online = FALSE, updated_at = $1 WHERE node = $2 AND online`), now, node); err != nil {
			return fmt.Errorf("reset presence of node %s: %w", node, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return things, nil
}
