package user

import (
	"fmt"
	"regexp"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// TypeNotificationPreferencesSet is recorded when a user changes how the
// doorbell reaches them. Stored forever; never rename it.
const TypeNotificationPreferencesSet = "NotificationPreferencesSet"

// The notification channels a user can switch.
const (
	ChannelLive  = "live"  // the in-app live stream (SSE) and its feed
	ChannelEmail = "email" // e-mail through the operator's SMTP relay
	ChannelHook  = "hook"  // the operator's outgoing HTTP hook (SMS, push)
)

// Channels lists every channel, in the order answers show them.
var Channels = []string{ChannelLive, ChannelEmail, ChannelHook}

// QuietHours is a daily window, in the user's time zone, during which the
// e-mail and hook channels stay silent. Start and End are "HH:MM"; a window
// whose end is before its start runs over midnight.
type QuietHours struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	TimeZone string `json:"timeZone"`
}

// Preferences says which channels reach the user and when.
type Preferences struct {
	Live       bool        `json:"live"`
	Email      bool        `json:"email"`
	Hook       bool        `json:"hook"`
	QuietHours *QuietHours `json:"quietHours,omitempty"`
}

// DefaultPreferences is what a user who never chose gets: every channel on,
// no quiet hours.
func DefaultPreferences() Preferences { return Preferences{Live: true, Email: true, Hook: true} }

// Enabled reports whether channel is switched on.
func (p Preferences) Enabled(channel string) bool {
	switch channel {
	case ChannelLive:
		return p.Live
	case ChannelEmail:
		return p.Email
	case ChannelHook:
		return p.Hook
	}
	return false
}

// NotificationPreferencesSet carries the whole new preference set.
type NotificationPreferencesSet struct {
	UserID      string      `json:"userId"`
	Preferences Preferences `json:"preferences"`
	Timestamp   string      `json:"timestamp"`
}

var hhmmRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// Validate checks the shape of the quiet hours (the time zone name is
// checked by the caller, which can load zones). It returns Invalid.
func (q QuietHours) Validate() error {
	if !hhmmRE.MatchString(q.Start) {
		return domain.InvalidField("quietHours.start", "quietHours.start must be HH:MM (24-hour)")
	}
	if !hhmmRE.MatchString(q.End) {
		return domain.InvalidField("quietHours.end", "quietHours.end must be HH:MM (24-hour)")
	}
	if q.Start == q.End {
		return domain.InvalidField("quietHours.end", "quietHours.end must differ from quietHours.start")
	}
	if q.TimeZone == "" {
		return domain.InvalidField("quietHours.timeZone", "quietHours.timeZone is required (an IANA name such as Europe/Warsaw)")
	}
	return nil
}

// Contains reports whether local (a wall-clock time already in the quiet
// hours' zone) falls inside the window [Start, End).
func (q QuietHours) Contains(local time.Time) bool {
	now := fmt.Sprintf("%02d:%02d", local.Hour(), local.Minute())
	if q.Start < q.End {
		return now >= q.Start && now < q.End
	}
	return now >= q.Start || now < q.End
}

// DecideSetPreferences returns NotificationPreferencesSet, or nothing when
// the preferences are unchanged. It returns NotFound for a missing user and
// Invalid for malformed quiet hours.
func DecideSetPreferences(s State, p Preferences, now string) ([]domain.Event, error) {
	if !s.Exists() {
		return nil, domain.Errorf(domain.NotFound, "User not found")
	}
	if p.QuietHours != nil {
		if err := p.QuietHours.Validate(); err != nil {
			return nil, err
		}
	}
	if same(s.Prefs(), p) {
		return nil, nil
	}
	return []domain.Event{NotificationPreferencesSet{UserID: s.UserID, Preferences: p, Timestamp: now}}, nil
}

func same(a, b Preferences) bool {
	if a.Live != b.Live || a.Email != b.Email || a.Hook != b.Hook || (a.QuietHours == nil) != (b.QuietHours == nil) {
		return false
	}
	return a.QuietHours == nil || *a.QuietHours == *b.QuietHours
}

// Prefs returns the user's preferences, or the defaults when never set.
func (s State) Prefs() Preferences {
	if s.Preferences == nil {
		return DefaultPreferences()
	}
	return *s.Preferences
}
