// The named shadows the hub's bridge writes for a Matter device: rules in
// Go for upstream's matter-bridge shadow schemas (device_info, one "state"
// shadow per device kind, single-key patches), the alarm readings a state
// shadow holds, and commissioning pairing codes.

package matter

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits of shadow documents, beyond what upstream's schemas say.
const (
	MaxShadowKeys     = 512  // keys of one named shadow
	MaxShadowKeyLen   = 32   // an endpoint/cluster/attribute key
	MaxShadowString   = 1024 // characters of a string attribute value
	MaxShadowArray    = 1024 // items of an array attribute value
	MaxPairingCodeLen = 256
)

// NotAvailable is the value the bridge writes for an attribute it could
// not read.
const NotAvailable = "n/a"

// Path is a Matter attribute path: endpoint, cluster and attribute.
type Path struct {
	Endpoint, Cluster, Attribute uint32
}

func (p Path) String() string {
	return fmt.Sprintf("%d/%d/%d", p.Endpoint, p.Cluster, p.Attribute)
}

var pathRE = regexp.MustCompile(`^[0-9]+/[0-9]+/[0-9]+$`)

// ParsePath parses "endpoint/cluster/attribute" in decimal ("1/69/0").
// It reports false for anything else, or a number beyond 32 bits.
func ParsePath(s string) (Path, bool) {
	if len(s) > MaxShadowKeyLen || !pathRE.MatchString(s) {
		return Path{}, false
	}
	parts := strings.Split(s, "/")
	var n [3]uint32
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Path{}, false
		}
		n[i] = uint32(v)
	}
	return Path{n[0], n[1], n[2]}, true
}

// StateKind names a device kind's "state" shadow.
type StateKind string

// The state shadow kinds of the bridge.
const (
	KindLock                               StateKind = "lock"
	KindContactSensor                      StateKind = "contact_sensor"
	KindOnOffSensor                        StateKind = "on_off_sensor"
	KindRainSensor                         StateKind = "rain_sensor"
	KindWaterLeakDetector                  StateKind = "water_leak_detector"
	KindWaterFreezeDetector                StateKind = "water_freeze_detector"
	KindTemperatureSensor                  StateKind = "temperature_sensor"
	KindHumiditySensor                     StateKind = "humidity_sensor"
	KindLightSensor                        StateKind = "light_sensor"
	KindOccupancySensor                    StateKind = "occupancy_sensor"
	KindTemperatureHumiditySensor          StateKind = "temperature_humidity_sensor"
	KindOccupancyTemperatureHumiditySensor StateKind = "occupancy_temperature_humidity_sensor"
	KindLightTemperatureHumiditySensor     StateKind = "light_temperature_humidity_sensor"
	KindSmokeCOAlarm                       StateKind = "smoke_co_alarm"
	KindAirQualitySensor                   StateKind = "air_quality_sensor"
	KindSoilSensor                         StateKind = "soil_sensor"
	KindUnknown                            StateKind = "unknown"
)

// cluster/attribute pairs that some endpoint must report, per document.
type ca struct{ cluster, attribute uint32 }

var (
	booleanState = []ca{{69, 0}}
	temperature  = ca{1026, 0}
	humidity     = ca{1029, 0}
	illuminance  = ca{1024, 0}
	occupancy    = ca{1030, 0}
	stateRules   = map[StateKind][]ca{
		KindLock:                               {{DoorLockCluster, 0}},
		KindContactSensor:                      booleanState,
		KindOnOffSensor:                        booleanState,
		KindRainSensor:                         booleanState,
		KindWaterLeakDetector:                  booleanState,
		KindWaterFreezeDetector:                booleanState,
		KindTemperatureSensor:                  {temperature},
		KindHumiditySensor:                     {humidity},
		KindLightSensor:                        {illuminance},
		KindOccupancySensor:                    {occupancy},
		KindTemperatureHumiditySensor:          {temperature, humidity},
		KindOccupancyTemperatureHumiditySensor: {temperature, humidity, occupancy},
		KindLightTemperatureHumiditySensor:     {illuminance, temperature, humidity},
		KindSmokeCOAlarm:                       nil,
		KindAirQualitySensor:                   nil,
		KindSoilSensor:                         nil,
		KindUnknown:                            nil,
	}
	// Descriptor DeviceTypeList and the Basic Information attributes.
	deviceInfoRules = []ca{{29, 0}, {40, 1}, {40, 2}, {40, 3}, {40, 4}, {40, 5}, {40, 8}, {40, 10}, {40, 11}, {40, 14}, {40, 15}}
)

// StateKinds returns every state shadow kind, sorted.
func StateKinds() []StateKind {
	out := make([]StateKind, 0, len(stateRules))
	for k := range stateRules {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ValidateDeviceInfo checks a device_info shadow: string bridge_uuid and
// uuid, every other key an attribute path with an attribute value, and
// the Descriptor's 29/0 and the Basic Information attributes 40/1, 2, 3,
// 4, 5, 8, 10, 11, 14 and 15 present on some endpoint. It returns "" for a
// valid document, else why not.
func ValidateDeviceInfo(doc map[string]any) string {
	if doc == nil {
		return "device_info must be an object"
	}
	for _, k := range []string{"bridge_uuid", "uuid"} {
		v, ok := doc[k]
		if !ok {
			return k + " is required"
		}
		if s, ok := v.(string); !ok || len(s) > MaxShadowString {
			return k + " must be a string"
		}
	}
	return checkAttributes(doc, deviceInfoRules, "bridge_uuid", "uuid")
}

// ValidateState checks the state shadow of kind: a boolean available,
// every other key an attribute path with an attribute value, and the
// kind's key attributes present on some endpoint (69/0 Boolean State for
// contact, on/off, rain, leak and freeze sensors; 257/0 for a lock; 1026/0,
// 1029/0, 1024/0, 1030/0 for temperature, humidity, light, occupancy and
// their combinations). It returns "" for a valid document, else why not.
func ValidateState(kind StateKind, doc map[string]any) string {
	rules, ok := stateRules[kind]
	if !ok {
		return fmt.Sprintf("unknown state shadow kind %q", kind)
	}
	if doc == nil {
		return "state must be an object"
	}
	v, ok := doc["available"]
	if !ok {
		return "available is required"
	}
	if _, ok := v.(bool); !ok {
		return "available must be a boolean"
	}
	return checkAttributes(doc, rules, "available")
}

// ValidatePatch checks an attribute patch: at most one key, an attribute
// path with an attribute value. It returns "" when valid, else why not.
func ValidatePatch(doc map[string]any) string {
	if doc == nil {
		return "patch must be an object"
	}
	if len(doc) > 1 {
		return fmt.Sprintf("a patch has at most one key (got %d)", len(doc))
	}
	return checkAttributes(doc, nil)
}

// checkAttributes checks the keys of doc other than fixed, then that each
// rule's cluster/attribute is on some endpoint.
func checkAttributes(doc map[string]any, rules []ca, fixed ...string) string {
	if len(doc) > MaxShadowKeys {
		return fmt.Sprintf("at most %d keys (got %d)", MaxShadowKeys, len(doc))
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first fault reported is the same every time
	have := map[ca]bool{}
	for _, k := range keys {
		if slices.Contains(fixed, k) {
			continue
		}
		p, ok := ParsePath(k)
		if !ok {
			return fmt.Sprintf("key %q is not an endpoint/cluster/attribute path", truncate(k))
		}
		if why := checkValue(doc[k]); why != "" {
			return fmt.Sprintf("%s: %s", k, why)
		}
		have[ca{p.Cluster, p.Attribute}] = true
	}
	for _, r := range rules {
		if !have[r] {
			return fmt.Sprintf("attribute */%d/%d is required", r.cluster, r.attribute)
		}
	}
	return ""
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkValue checks an attribute value: "n/a", a string, an integer, a
// boolean or an array of integers.
func checkValue(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > MaxShadowString {
			return fmt.Sprintf("string longer than %d bytes", MaxShadowString)
		}
		return ""
	case bool:
		return ""
	case []any:
		if len(x) > MaxShadowArray {
			return fmt.Sprintf("array longer than %d items", MaxShadowArray)
		}
		for i, e := range x {
			if !isInteger(e) {
				return fmt.Sprintf("item %d of the array is not an integer", i)
			}
		}
		return ""
	}
	if isInteger(v) {
		return ""
	}
	return "value must be \"n/a\", a string, an integer, a boolean or an array of integers"
}

// isInteger reports whether v is a JSON number with no fraction (as JSON
// Schema counts integers: 2.0 is one).
func isInteger(v any) bool {
	switch x := v.(type) {
	case int, int32, int64, uint32:
		return true
	case float64:
		return !math.IsInf(x, 0) && !math.IsNaN(x) && x == math.Trunc(x)
	case json.Number:
		f, ok := new(big.Float).SetString(string(x))
		return ok && f.IsInt()
	}
	return false
}

// numberOf returns v as a float64 when it is a number or a boolean (1 for
// true).
func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// Smoke CO Alarm (92) attributes read as alarm channels: SmokeState (1)
// and InterconnectSmokeAlarm (8), both 0 normal, 1 warning, 2 critical.
const (
	SmokeCOAlarmCluster        = 92
	AttrSmokeState             = 1
	AttrInterconnectSmokeAlarm = 8
	BooleanStateCluster        = 69
)

// SensorReadings returns the alarm readings of a reported state shadow of
// kind, sorted by path: the Boolean State (x/69/0) of a contact sensor or
// water leak detector, and the SmokeState (x/92/1) and
// InterconnectSmokeAlarm (x/92/8) of a smoke CO alarm. It returns none for
// other kinds, for an unavailable device (available false) and for values
// that are "n/a" or out of range. Feed them to DecideSensorReadings.
func SensorReadings(kind StateKind, doc map[string]any) []SensorReading {
	var devType int64
	switch kind {
	case KindContactSensor:
		devType = DeviceTypeContactSensor
	case KindWaterLeakDetector:
		devType = DeviceTypeWaterLeakDetector
	case KindSmokeCOAlarm:
		devType = DeviceTypeSmokeCOAlarm
	default:
		return nil
	}
	if avail, _ := doc["available"].(bool); !avail {
		return nil
	}
	var out []SensorReading
	for k, v := range doc {
		p, ok := ParsePath(k)
		if !ok {
			continue
		}
		var ch string
		switch {
		case kind != KindSmokeCOAlarm && p.Cluster == BooleanStateCluster && p.Attribute == 0:
			if _, ok := v.(bool); !ok {
				continue
			}
			ch = ChannelBooleanState
		case kind == KindSmokeCOAlarm && p.Cluster == SmokeCOAlarmCluster && p.Attribute == AttrSmokeState:
			ch = ChannelSmoke
		case kind == KindSmokeCOAlarm && p.Cluster == SmokeCOAlarmCluster && p.Attribute == AttrInterconnectSmokeAlarm:
			ch = ChannelSmokeInterconnect
		default:
			continue
		}
		n, ok := numberOf(v)
		if !ok || (ch != ChannelBooleanState && n != 0 && n != 1 && n != 2) {
			continue
		}
		out = append(out, SensorReading{Channel: ch, MatterPath: k, Value: n, DeviceTypeID: devType})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MatterPath < out[j].MatterPath })
	return out
}

var pairingCodeRE = regexp.MustCompile(`^([0-9]{11}|[0-9]{21}|MT:[0-9A-Z.-]+)$`)

// ValidatePairingCode checks a Matter commissioning code: an 11- or
// 21-digit manual pairing code, or a QR payload "MT:" and base-38 text
// (0-9, A-Z, '-', '.'), at most MaxPairingCodeLen characters. It returns
// "" when valid, else why not.
func ValidatePairingCode(code string) string {
	if len(code) > MaxPairingCodeLen {
		return fmt.Sprintf("pairing code must be at most %d characters", MaxPairingCodeLen)
	}
	if !pairingCodeRE.MatchString(code) {
		return "pairing code must be an 11 or 21 digit manual code or an MT: QR payload"
	}
	return ""
}
