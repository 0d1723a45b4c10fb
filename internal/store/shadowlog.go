package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The shadow message log keeps, per device (thing) and direction, the last
// ShadowMessagesKept messages exchanged with it, for
// GET /locks/{id}/debug/messages. Like the shadows table it is state kept
// beside the events, not derived from them: Rebuild leaves it alone.

// The directions of a logged shadow message.
const (
	// ShadowCommand is a message sent to the device (a desired-state change).
	ShadowCommand = "command"
	// ShadowStatus is a message the device sent (its reported state).
	ShadowStatus = "status"
)

// ShadowMessagesKept is how many messages the log keeps per thing and
// direction, and the largest limit ShadowMessages accepts.
const ShadowMessagesKept = 200

// MaxShadowMessageBytes bounds a stored payload. A longer one is cut (at a
// character boundary) so that, with ShadowMessageTruncated and the original
// length in bytes and "]" appended, it is at most this long.
const MaxShadowMessageBytes = 16 << 10

// ShadowMessageTruncated starts the marker that ends a payload cut to
// MaxShadowMessageBytes; the whole marker reads "…[truncated from N bytes]".
const ShadowMessageTruncated = "…[truncated from "

// ShadowMessage is one logged shadow message.
type ShadowMessage struct {
	// ID orders the messages: a later message has a larger one.
	ID int64
	// Payload is the message as stored (see LogShadowMessage).
	Payload string
	// CreatedAt is the time given to LogShadowMessage.
	CreatedAt string
}

// LogShadowMessage appends payload to the message log of thing in
// direction (ShadowCommand or ShadowStatus) at now, in this transaction,
// and prunes the messages of that thing and direction beyond the newest
// ShadowMessagesKept. The prune is bounded: it finds its cut among at most
// ShadowMessagesKept+1 index entries and usually deletes one row. (On
// PostgreSQL two nodes logging for the same thing at once may leave a few
// more until the next message is logged.) Neither statement needs an
// answer, so on PostgreSQL both join the writer's pipeline.
//
// The payload is stored as text: bytes that are not UTF-8, and NUL (which
// PostgreSQL's text refuses), become U+FFFD, and a payload longer than
// MaxShadowMessageBytes is cut and marked (ShadowMessageTruncated). It
// returns an error for an empty thing or an unknown direction, and the
// database's errors, wrapped.
func (tx *Tx) LogShadowMessage(ctx context.Context, thing, direction string, payload []byte, now string) error {
	if thing == "" {
		return fmt.Errorf("log shadow message: empty thing name")
	}
	if direction != ShadowCommand && direction != ShadowStatus {
		return fmt.Errorf("log shadow message for %s: direction %q is neither %q nor %q", thing, direction, ShadowCommand, ShadowStatus)
	}
	s := tx.s
	if _, err := tx.q.ExecContext(ctx, s.sql(`INSERT INTO shadow_messages (thing, direction, payload, created_at) VALUES ($1, $2, $3, $4)`),
		thing, direction, storedPayload(payload), now); err != nil {
		return fmt.Errorf("log shadow message for %s: %w", thing, err)
	}
	if _, err := tx.q.ExecContext(ctx, s.sql(`DELETE FROM shadow_messages WHERE thing = $1 AND direction = $2 AND id <= (
		SELECT id FROM shadow_messages WHERE thing = $1 AND direction = $2 ORDER BY id DESC LIMIT 1 OFFSET `+strconv.Itoa(ShadowMessagesKept)+`)`),
		thing, direction); err != nil {
		return fmt.Errorf("prune shadow messages of %s: %w", thing, err)
	}
	return nil
}

// storedPayload is p as the log stores it (see LogShadowMessage).
func storedPayload(p []byte) string {
	text := strings.ReplaceAll(strings.ToValidUTF8(string(p), "\uFFFD"), "\x00", "\uFFFD")
	if len(text) <= MaxShadowMessageBytes {
		return text
	}
	marker := ShadowMessageTruncated + strconv.Itoa(len(p)) + " bytes]"
	cut := MaxShadowMessageBytes - len(marker)
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + marker
}

// ShadowMessages returns the newest messages of thing's log, newest first:
// up to limit commands and up to limit statuses (limit is taken into
// 1..ShadowMessagesKept), and total, how many messages the log holds for
// thing in both directions. Both lists are empty, not nil, when there are
// none. It reads committed rows in one statement, and returns the
// database's errors, wrapped.
func (s *Store) ShadowMessages(ctx context.Context, thing string, limit int) (command, status []ShadowMessage, total int, err error) {
	limit = min(max(limit, 1), ShadowMessagesKept)
	const side = `SELECT id, direction, payload, created_at FROM shadow_messages WHERE thing = $1 AND direction = `
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT id, direction, payload, created_at, (SELECT COUNT(*) FROM shadow_messages WHERE thing = $1)
		FROM (`+side+`'command' ORDER BY id DESC LIMIT $2) c
		UNION ALL
		SELECT id, direction, payload, created_at, (SELECT COUNT(*) FROM shadow_messages WHERE thing = $1)
		FROM (`+side+`'status' ORDER BY id DESC LIMIT $2) st
		ORDER BY id DESC`), thing, limit)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read shadow messages of %s: %w", thing, err)
	}
	defer rows.Close()
	command, status = []ShadowMessage{}, []ShadowMessage{}
	for rows.Next() {
		var m ShadowMessage
		var dir string
		if err := rows.Scan(&m.ID, &dir, &m.Payload, &m.CreatedAt, &total); err != nil {
			return nil, nil, 0, fmt.Errorf("scan shadow message of %s: %w", thing, err)
		}
		if dir == ShadowCommand {
			command = append(command, m)
		} else {
			status = append(status, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, fmt.Errorf("read shadow messages of %s: %w", thing, err)
	}
	return command, status, total, nil
}
