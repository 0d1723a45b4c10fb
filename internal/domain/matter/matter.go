// Package matter is the Matter device aggregate: a device behind a hub,
// its desired and reported shadow state, the PIN slots of a Matter door
// lock and the alarm state of its sensor channels. Decide and Apply are
// pure: time and ids come in with the command. It also holds the rules for
// the shadow documents the hub's bridge writes (shadowdoc.go).
package matter

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// AggregateType is the stream type of Matter devices in the event store.
const AggregateType = "matter-device"

// Event type names. They are stored forever; never rename one.
const (
	TypeMatterDeviceCreated         = "MatterDeviceCreated"
	TypeMatterDeviceOrganizationSet = "MatterDeviceOrganizationSet"
	TypeDesiredShadowUpdated        = "DesiredShadowUpdated"
	TypeReportedShadowUpdated       = "ReportedShadowUpdated"
	TypeMatterPinSet                = "MatterPinSet"
	TypeMatterPinCleared            = "MatterPinCleared"
	TypeAlarmTriggered              = "AlarmTriggered"
	TypeAlarmCleared                = "AlarmCleared"
)

// DefaultDeviceType is the device type of a device created without one.
const DefaultDeviceType = "generic"

// Sensor channels of ReportSensorState and the alarm events.
const (
	ChannelBooleanState      = "boolean_state"
	ChannelSmoke             = "smoke"
	ChannelSmokeInterconnect = "smoke_interconnect"
)

// Alarm types and severities of the alarm events.
const (
	AlarmContact     = "contact"
	AlarmWaterLeak   = "water_leak"
	AlarmSmoke       = "smoke"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// PinSlot is a PIN credential held on a Matter door lock: where it is,
// never what it is.
type PinSlot struct {
	UserIndex       int64 `json:"userIndex"`
	CredentialIndex int64 `json:"credentialIndex"`
}

// Alarm is the active alarm of one sensor attribute (MatterPath).
type Alarm struct {
	Channel      string `json:"channel"`
	MatterPath   string `json:"matterPath"`
	AlarmType    string `json:"alarmType"`
	Severity     string `json:"severity"`
	DeviceTypeID *int64 `json:"deviceTypeId,omitempty"`
	Since        string `json:"since"`
}

// State is the Matter device as folded from its events.
type State struct {
	DeviceID   string `json:"deviceId"`
	ThingName  string `json:"thingName"`
	HubID      string `json:"hubId"`
	DeviceType string `json:"deviceType"`
	// OrgID is the tenant of the device's hub when it was created (spkey's
	// own MatterDeviceOrganizationSet; upstream's events carry no org).
	OrgID    string         `json:"orgId,omitempty"`
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
	// Pins are the PIN slots in use, in the order they were set.
	Pins []PinSlot `json:"pins"`
	// Alarms are the active alarms, one per sensor attribute at most; an
	// attribute without an entry is normal.
	Alarms    []Alarm `json:"alarms"`
	CreatedAt int64   `json:"createdAt"`
	UpdatedAt int64   `json:"updatedAt"`
}

// Exists reports whether the device has been created.
func (s State) Exists() bool { return s.DeviceID != "" }

// Pin returns the slot of credentialIndex, if one is in use.
func (s State) Pin(credentialIndex int64) (PinSlot, bool) {
	for _, p := range s.Pins {
		if p.CredentialIndex == credentialIndex {
			return p, true
		}
	}
	return PinSlot{}, false
}

// Alarm returns the active alarm of matterPath, if any.
func (s State) Alarm(matterPath string) (Alarm, bool) {
	for _, a := range s.Alarms {
		if a.MatterPath == matterPath {
			return a, true
		}
	}
	return Alarm{}, false
}

// MatterDeviceCreated is recorded when a Matter device is registered under
// a hub. CreatedAt is epoch milliseconds.
type MatterDeviceCreated struct {
	DeviceID   string `json:"deviceId"`
	ThingName  string `json:"thingName"`
	HubID      string `json:"hubId"`
	DeviceType string `json:"deviceType"`
	CreatedAt  int64  `json:"createdAt"`
}

// MatterDeviceOrganizationSet is spkey's own event (upstream has none): the
// device belongs to OrgID, the tenant of its hub. SetAt is epoch
// milliseconds.
type MatterDeviceOrganizationSet struct {
	DeviceID string `json:"deviceId"`
	HubID    string `json:"hubId"`
	OrgID    string `json:"orgId"`
	SetAt    int64  `json:"setAt"`
}

// DesiredShadowUpdated is recorded when desired state is pushed to the
// device's shadow. Desired is the update, merged into the state by Apply
// (a null value deletes a key). UpdatedAt is epoch milliseconds.
type DesiredShadowUpdated struct {
	DeviceID  string         `json:"deviceId"`
	ThingName string         `json:"thingName"`
	Desired   map[string]any `json:"desired"`
	UpdatedAt int64          `json:"updatedAt"`
}

// ReportedShadowUpdated is recorded when the device's reported state
// arrives. Reported merges like DesiredShadowUpdated.Desired.
type ReportedShadowUpdated struct {
	DeviceID  string         `json:"deviceId"`
	ThingName string         `json:"thingName"`
	Reported  map[string]any `json:"reported"`
	UpdatedAt int64          `json:"updatedAt"`
}

// MatterPinSet is recorded when a PIN is provisioned on a Matter door lock.
// It never carries the PIN. Timestamp is epoch milliseconds.
type MatterPinSet struct {
	DeviceID        string `json:"deviceId"`
	ThingName       string `json:"thingName"`
	UserIndex       int64  `json:"userIndex"`
	CredentialIndex int64  `json:"credentialIndex"`
	Timestamp       int64  `json:"timestamp"`
}

// MatterPinCleared is recorded when a PIN credential is cleared. UserIndex
// is 0 (left out) when neither the command nor the slot named one.
// Timestamp is epoch milliseconds.
type MatterPinCleared struct {
	DeviceID        string `json:"deviceId"`
	ThingName       string `json:"thingName"`
	UserIndex       int64  `json:"userIndex,omitempty"`
	CredentialIndex int64  `json:"credentialIndex"`
	Timestamp       int64  `json:"timestamp"`
}

// AlarmTriggered is recorded when a sensor attribute enters an alarm or
// its alarm changes (type or severity). Timestamp is an ISO time.
type AlarmTriggered struct {
	DeviceID     string   `json:"deviceId"`
	Channel      string   `json:"channel"`
	AlarmType    string   `json:"alarmType"`
	Severity     string   `json:"severity"`
	MatterPath   string   `json:"matterPath"`
	DeviceTypeID *int64   `json:"deviceTypeId,omitempty"`
	RawValue     *float64 `json:"rawValue,omitempty"`
	Timestamp    string   `json:"timestamp"`
}

// AlarmCleared is recorded when a sensor attribute in alarm reads normal
// again. AlarmType is the type of the alarm that ended.
type AlarmCleared struct {
	DeviceID     string   `json:"deviceId"`
	Channel      string   `json:"channel"`
	AlarmType    string   `json:"alarmType"`
	MatterPath   string   `json:"matterPath"`
	DeviceTypeID *int64   `json:"deviceTypeId,omitempty"`
	RawValue     *float64 `json:"rawValue,omitempty"`
	Timestamp    string   `json:"timestamp"`
}

// Events is the catalogue of the Matter device's events.
var Events = domain.NewCatalog(AggregateType,
	domain.Def[MatterDeviceCreated](TypeMatterDeviceCreated),
	domain.Def[MatterDeviceOrganizationSet](TypeMatterDeviceOrganizationSet),
	domain.Def[DesiredShadowUpdated](TypeDesiredShadowUpdated),
	domain.Def[ReportedShadowUpdated](TypeReportedShadowUpdated),
	domain.Def[MatterPinSet](TypeMatterPinSet),
	domain.Def[MatterPinCleared](TypeMatterPinCleared),
	domain.Def[AlarmTriggered](TypeAlarmTriggered),
	domain.Def[AlarmCleared](TypeAlarmCleared),
)

// Apply returns the state after e. Unknown events leave the state as it is.
// It never changes the maps or slices of s: it copies what it changes.
func Apply(s State, e domain.Event) State {
	switch v := e.(type) {
	case MatterDeviceCreated:
		s = State{DeviceID: v.DeviceID, ThingName: v.ThingName, HubID: v.HubID, DeviceType: v.DeviceType,
			Desired: map[string]any{}, Reported: map[string]any{}, Pins: []PinSlot{}, Alarms: []Alarm{},
			CreatedAt: v.CreatedAt, UpdatedAt: v.CreatedAt}
	case MatterDeviceOrganizationSet:
		s.OrgID, s.HubID, s.UpdatedAt = v.OrgID, v.HubID, v.SetAt
	case DesiredShadowUpdated:
		s.Desired, s.UpdatedAt = mergeShadow(s.Desired, v.Desired), v.UpdatedAt
	case ReportedShadowUpdated:
		s.Reported, s.UpdatedAt = mergeShadow(s.Reported, v.Reported), v.UpdatedAt
	case MatterPinSet:
		pins := make([]PinSlot, 0, len(s.Pins)+1)
		for _, p := range s.Pins {
			if p.CredentialIndex != v.CredentialIndex {
				pins = append(pins, p)
			}
		}
		s.Pins = append(pins, PinSlot{UserIndex: v.UserIndex, CredentialIndex: v.CredentialIndex})
		s.UpdatedAt = v.Timestamp
	case MatterPinCleared:
		pins := make([]PinSlot, 0, len(s.Pins))
		for _, p := range s.Pins {
			if p.CredentialIndex != v.CredentialIndex {
				pins = append(pins, p)
			}
		}
		s.Pins, s.UpdatedAt = pins, v.Timestamp
	case AlarmTriggered:
		// Alarms are the sensor's doing, not a change of the device:
		// UpdatedAt stays.
		s.Alarms = append(withoutAlarm(s.Alarms, v.MatterPath), Alarm{Channel: v.Channel, MatterPath: v.MatterPath,
			AlarmType: v.AlarmType, Severity: v.Severity, DeviceTypeID: v.DeviceTypeID, Since: v.Timestamp})
	case AlarmCleared:
		s.Alarms = withoutAlarm(s.Alarms, v.MatterPath)
	}
	return s
}

// withoutAlarm returns a copy of alarms without the one of matterPath.
func withoutAlarm(alarms []Alarm, matterPath string) []Alarm {
	out := make([]Alarm, 0, len(alarms)+1)
	for _, a := range alarms {
		if a.MatterPath != matterPath {
			out = append(out, a)
		}
	}
	return out
}

// mergeShadow returns base with update merged in the way AWS IoT merges a
// shadow update: objects merge key by key, a null deletes the key, any
// other value replaces. base is not changed.
func mergeShadow(base, update map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(update))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range update {
		switch uv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			if bv, ok := out[k].(map[string]any); ok {
				out[k] = mergeShadow(bv, uv)
			} else {
				out[k] = mergeShadow(nil, uv)
			}
		default:
			out[k] = v
		}
	}
	return out
}
