package matter

import (
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Matter device type ids (Descriptor DeviceTypeList) that decide what a
// Boolean State reading means.
const (
	DeviceTypeContactSensor     = 21
	DeviceTypeWaterLeakDetector = 67
	DeviceTypeSmokeCOAlarm      = 118
)

// Limits of sensor readings.
const (
	MaxMatterPathLen = 32 // "65534/4294967295/4294967295" is 27
	MaxAlarms        = 32 // distinct attributes in alarm at once
)

// SensorReading is one reading of an alarm-capable sensor attribute.
// DeviceTypeID is required for ChannelBooleanState (21 contact sensor, 67
// water leak detector) and optional otherwise (0: not given). Timestamp,
// optional, is the reading's ISO time; the command's time is used without
// it.
type SensorReading struct {
	Channel      string  `json:"channel"`
	MatterPath   string  `json:"matterPath"`
	Value        float64 `json:"value"`
	DeviceTypeID int64   `json:"deviceTypeId,omitempty"`
	Timestamp    string  `json:"timestamp,omitempty"`
}

// alarmOf interprets a reading: the alarm it means ("" type: normal). It
// returns Invalid for a reading that means nothing.
//
// Boolean State's StateValue is true when the contact is made: for a
// contact sensor true is closed and false (open) is the alarm, a warning;
// for a water leak detector true is a leak, critical. Smoke states are 0
// normal, 1 warning, 2 critical, locally and interconnected alike.
func alarmOf(r SensorReading) (alarmType, severity string, err error) {
	switch r.Channel {
	case ChannelBooleanState:
		if r.Value != 0 && r.Value != 1 {
			return "", "", domain.InvalidField("value", "value must be 0 or 1 for boolean_state")
		}
		switch r.DeviceTypeID {
		case DeviceTypeContactSensor:
			if r.Value == 0 {
				return AlarmContact, SeverityWarning, nil
			}
		case DeviceTypeWaterLeakDetector:
			if r.Value == 1 {
				return AlarmWaterLeak, SeverityCritical, nil
			}
		case 0:
			return "", "", domain.InvalidField("deviceTypeId", "deviceTypeId is required for boolean_state (21 contact sensor, 67 water leak detector)")
		default:
			return "", "", domain.InvalidField("deviceTypeId", fmt.Sprintf("deviceTypeId %d has no boolean_state alarm (21 contact sensor, 67 water leak detector)", r.DeviceTypeID))
		}
		return "", "", nil
	case ChannelSmoke, ChannelSmokeInterconnect:
		switch r.Value {
		case 0:
			return "", "", nil
		case 1:
			return AlarmSmoke, SeverityWarning, nil
		case 2:
			return AlarmSmoke, SeverityCritical, nil
		}
		return "", "", domain.InvalidField("value", "value must be 0, 1 or 2 for "+r.Channel)
	}
	return "", "", domain.InvalidField("channel", "channel must be boolean_state, smoke or smoke_interconnect")
}

// DecideReportSensorState edge-detects one reading: AlarmTriggered when
// the attribute enters an alarm or its alarm changes (warning to critical
// and back, or another type), AlarmCleared when an attribute in alarm reads
// normal, and no events when nothing changed (a normal reading of an
// attribute never in alarm is nothing). It returns NotFound for a missing
// device and Invalid for a bad channel, path, value, device type or
// timestamp, or a new alarm beyond MaxAlarms.
func DecideReportSensorState(s State, r SensorReading, now time.Time) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if len(r.MatterPath) > MaxMatterPathLen {
		return nil, domain.InvalidField("matterPath", "matterPath must be an endpoint/cluster/attribute path")
	}
	if _, ok := ParsePath(r.MatterPath); !ok {
		return nil, domain.InvalidField("matterPath", "matterPath must be an endpoint/cluster/attribute path in decimal, e.g. 1/69/0")
	}
	if r.DeviceTypeID < 0 || r.DeviceTypeID > domain.MaxID {
		return nil, domain.InvalidField("deviceTypeId", "deviceTypeId is out of range")
	}
	typ, sev, err := alarmOf(r)
	if err != nil {
		return nil, err
	}
	at := now.UTC().Format(domain.TimeLayout)
	if r.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, r.Timestamp)
		if err != nil || len(r.Timestamp) > 40 {
			return nil, domain.InvalidField("timestamp", "timestamp must be an ISO 8601 time")
		}
		at = t.UTC().Format(domain.TimeLayout)
	}
	var dt *int64
	if r.DeviceTypeID != 0 {
		dt = &r.DeviceTypeID
	}
	raw := r.Value
	old, active := s.Alarm(r.MatterPath)
	switch {
	case typ == "" && !active:
		return nil, nil
	case typ == "":
		return []domain.Event{AlarmCleared{DeviceID: s.DeviceID, Channel: r.Channel, AlarmType: old.AlarmType, MatterPath: r.MatterPath,
			DeviceTypeID: dt, RawValue: &raw, Timestamp: at}}, nil
	case active && old.AlarmType == typ && old.Severity == sev && old.Channel == r.Channel:
		return nil, nil
	case !active && len(s.Alarms) >= MaxAlarms:
		return nil, domain.Errorf(domain.Invalid, "this device already has %d attributes in alarm (at most %d)", len(s.Alarms), MaxAlarms)
	}
	return []domain.Event{AlarmTriggered{DeviceID: s.DeviceID, Channel: r.Channel, AlarmType: typ, Severity: sev, MatterPath: r.MatterPath,
		DeviceTypeID: dt, RawValue: &raw, Timestamp: at}}, nil
}

// DecideSensorReadings runs DecideReportSensorState over readings in
// order (as SensorReadings yields them from a reported shadow), each on the
// state the earlier ones made, and returns all their events. It stops at
// the first error.
func DecideSensorReadings(s State, readings []SensorReading, now time.Time) ([]domain.Event, error) {
	var out []domain.Event
	for _, r := range readings {
		evs, err := DecideReportSensorState(s, r, now)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			s = Apply(s, e)
		}
		out = append(out, evs...)
	}
	return out, nil
}
