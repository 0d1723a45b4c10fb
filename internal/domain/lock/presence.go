package lock

import "github.com/spkey-dev/spkey/internal/domain"

// Presence: whether a lock's device is connected to spkey's MQTT broker
// (or, on an external broker, says so on its presence topic). The
// connection itself is state kept beside the events (the store's
// device_presence table); what partners see are these events, appended to
// the lock's stream when the device comes online or goes offline, bounded
// by the app (at most one connected/disconnected pair per device and
// window). Both are spkey's own: upstream has no presence events. They do
// not change the lock's state (Apply ignores them), so a lock's updatedAt
// stays.

// The presence event types.
const (
	TypeLockDeviceConnected    = "LockDeviceConnected"
	TypeLockDeviceDisconnected = "LockDeviceDisconnected"
)

// LockDeviceConnected is recorded when the lock's device comes online;
// Timestamp is when the broker saw the connection.
type LockDeviceConnected struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
}

// LockDeviceDisconnected is recorded when the lock's device goes offline
// (a clean disconnect, a dropped connection, its will, or the node that
// held the connection stopping); Timestamp is when that was seen.
type LockDeviceDisconnected struct {
	LockID    int64  `json:"lockId"`
	UUID      string `json:"uuid"`
	Timestamp string `json:"timestamp"`
}

// DecidePresence returns the presence event that announces online for
// lock st at now: LockDeviceConnected or LockDeviceDisconnected, or
// nothing when st does not exist.
func DecidePresence(st State, online bool, now string) []domain.Event {
	if !st.Exists() {
		return nil
	}
	if online {
		return []domain.Event{LockDeviceConnected{LockID: st.LockID, UUID: st.UUID, Timestamp: now}}
	}
	return []domain.Event{LockDeviceDisconnected{LockID: st.LockID, UUID: st.UUID, Timestamp: now}}
}
