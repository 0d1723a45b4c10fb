package devices

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Presence published by the devices themselves, for an external broker,
// where spkey cannot see connections: on connect a device publishes
// {"online":true} (not retained) on $aws/things/{thing}/presence and sets
// its MQTT will to {"online":false} on the same topic, which the broker
// publishes when the connection ends without a DISCONNECT. A clean
// disconnect publishes {"online":false} first.
//
// On the embedded broker the broker's own presence (broker.Config.OnPresence)
// is authoritative and these messages are not watched: a device cannot
// claim to be online while it is not, or offline while it is connected.

// PresenceFilter is the topic filter of the devices' presence messages.
const PresenceFilter = "$aws/things/+/presence"

// maxPresencePayload bounds a presence message; anything longer is no
// presence message.
const maxPresencePayload = 256

// PresenceTopic returns the presence topic of thing.
func PresenceTopic(thing string) string { return "$aws/things/" + thing + "/presence" }

// ParsePresence reads a presence message: {"online":true} or
// {"online":false}. It returns an error for anything else (no "online",
// not a boolean, too long, not JSON).
func ParsePresence(payload []byte) (online bool, err error) {
	if len(payload) > maxPresencePayload {
		return false, fmt.Errorf("presence message of %d bytes, over %d", len(payload), maxPresencePayload)
	}
	var m struct {
		Online *bool `json:"online"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return false, fmt.Errorf("presence message: %w", err)
	}
	if m.Online == nil {
		return false, fmt.Errorf("presence message without a boolean \"online\"")
	}
	return *m.Online, nil
}

// WatchPresence subscribes to PresenceFilter on t and calls fn with every
// valid presence message, at now(): a message whose topic names another
// thing than the sender's, or that ParsePresence refuses, is dropped
// (logged at debug level). fn must not block for long. It returns the
// Transport's error, wrapped.
func WatchPresence(t Transport, now func() time.Time, fn func(thing string, online bool, at time.Time), log *slog.Logger) error {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := t.Subscribe(PresenceFilter, func(thing, topic string, payload []byte) {
		if thing == "" || topic != PresenceTopic(thing) {
			log.Debug("presence: message on another thing's topic dropped", "thing", thing, "topic", topic)
			return
		}
		online, err := ParsePresence(payload)
		if err != nil {
			log.Debug("presence: message dropped", "thing", thing, "err", err)
			return
		}
		fn(thing, online, now())
	})
	if err != nil {
		return fmt.Errorf("devices: watch presence: %w", err)
	}
	return nil
}
