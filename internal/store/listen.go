package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Notify sends payload on channel to every node listening (PostgreSQL
// NOTIFY, outside any transaction: a hint, never the only copy of work). On
// SQLite there are no other nodes and it does nothing.
func (s *Store) Notify(ctx context.Context, channel, payload string) error {
	if s.dialect != Postgres {
		return nil
	}
	if _, err := s.rdb.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}

// Listen calls fn for every notification on channels until ctx ends,
// reconnecting after a lost connection (ready, if not nil, is called each
// time the LISTEN is in place: a caller should then re-check for work it may
// have missed). On SQLite it only waits for ctx.
func (s *Store) Listen(ctx context.Context, channels []string, ready func(), fn func(channel, payload string)) error {
	if s.dialect != Postgres {
		if ready != nil {
			ready()
		}
		<-ctx.Done()
		return nil
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, channels, ready, fn)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("listen connection lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, channels []string, ready func(), fn func(channel, payload string)) error {
	return s.dedicated(ctx, func(pc *pgx.Conn) error {
		for _, ch := range channels {
			if _, err := pc.Exec(ctx, `LISTEN "`+ch+`"`); err != nil {
				return fmt.Errorf("listen %s: %w", ch, err)
			}
		}
		if ready != nil {
			ready()
		}
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			fn(n.Channel, n.Payload)
		}
	})
}

// dedicated runs f on a pgx connection of its own, taken from the pool,
// and closes it afterwards: a connection that LISTENed, or whose wait was
// cut short, is in no state to go back to the pool.
func (s *Store) dedicated(ctx context.Context, f func(pc *pgx.Conn) error) error {
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	return withPgx(conn, func(pc *pgx.Conn) error {
		err := f(pc)
		_ = pc.Close(context.Background())
		return err
	})
}

// withPgx runs f on the pgx connection under conn (PostgreSQL only).
func withPgx(conn *sql.Conn, f func(pc *pgx.Conn) error) error {
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("store: not a pgx connection")
		}
		return f(sc.Conn())
	})
}
