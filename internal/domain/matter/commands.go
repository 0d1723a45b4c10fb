package matter

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Limits of the device's identifiers and shadow documents.
const (
	MaxIDLen         = 128       // deviceId, thingName, hubId (AWS IoT thing names are at most 128)
	MaxDeviceTypeLen = 64        // deviceType
	MaxShadowBytes   = 16 * 1024 // desired or reported state, JSON-encoded, after the merge
	MaxShadowDepth   = 8         // nesting of objects and arrays in a shadow document
	MaxPinSlots      = 250       // PIN credentials tracked per lock
	MaxPinIndex      = 0xFFFE    // Door Lock user and credential indexes are uint16; 0xFFFF is null
)

var (
	idRE         = regexp.MustCompile(`^[A-Za-z0-9:_-]+$`)
	deviceTypeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	pinRE        = regexp.MustCompile(`^[0-9]{4,8}$`)
)

func ms(t time.Time) int64 { return t.UnixMilli() }

func notFound(s State) error {
	if !s.Exists() {
		return domain.Errorf(domain.NotFound, "Matter device not found")
	}
	return nil
}

func checkID(field, v string) error {
	if v == "" {
		return domain.InvalidField(field, field+" is required")
	}
	if len(v) > MaxIDLen || !idRE.MatchString(v) {
		return domain.InvalidField(field, fmt.Sprintf("%s must be 1 to %d characters of [A-Za-z0-9:_-]", field, MaxIDLen))
	}
	return nil
}

// Create asks for a new Matter device under hub HubID. OrgID is the hub's
// tenant (the caller looks it up); DeviceType "" means DefaultDeviceType.
type Create struct {
	DeviceID   string
	ThingName  string
	HubID      string
	DeviceType string
	OrgID      string
	Now        time.Time
}

// DecideCreate returns MatterDeviceCreated (and MatterDeviceOrganizationSet
// when the command carries an org) for a new device, and no events when it
// already exists: creation is idempotent (201 new, 200 with event null).
// It returns Invalid for a missing or malformed id, thing name, hub id or
// device type.
func DecideCreate(s State, c Create) ([]domain.Event, error) {
	for _, f := range []struct{ name, v string }{{"deviceId", c.DeviceID}, {"thingName", c.ThingName}, {"hubId", c.HubID}} {
		if err := checkID(f.name, f.v); err != nil {
			return nil, err
		}
	}
	typ := c.DeviceType
	if typ == "" {
		typ = DefaultDeviceType
	}
	if len(typ) > MaxDeviceTypeLen || !deviceTypeRE.MatchString(typ) {
		return nil, domain.InvalidField("deviceType", fmt.Sprintf("deviceType must be at most %d characters of [A-Za-z0-9_.-]", MaxDeviceTypeLen))
	}
	if s.Exists() {
		return nil, nil
	}
	evs := []domain.Event{MatterDeviceCreated{DeviceID: c.DeviceID, ThingName: c.ThingName, HubID: c.HubID, DeviceType: typ, CreatedAt: ms(c.Now)}}
	if c.OrgID != "" {
		evs = append(evs, MatterDeviceOrganizationSet{DeviceID: c.DeviceID, HubID: c.HubID, OrgID: c.OrgID, SetAt: ms(c.Now)})
	}
	return evs, nil
}

// checkShadow checks a shadow update and the state it makes: the update is
// required (an empty object is fine), nested at most MaxShadowDepth deep,
// and the merged state encodes to at most MaxShadowBytes.
func checkShadow(field string, base, update map[string]any) error {
	if update == nil {
		return domain.InvalidField(field, field+" is required and must be an object")
	}
	if depth(update) > MaxShadowDepth {
		return domain.InvalidField(field, fmt.Sprintf("%s must be nested at most %d levels deep", field, MaxShadowDepth))
	}
	b, err := json.Marshal(mergeShadow(base, update))
	if err != nil {
		return domain.InvalidField(field, field+" must be JSON")
	}
	if len(b) > MaxShadowBytes {
		return domain.InvalidField(field, fmt.Sprintf("%s would make the shadow state %d bytes (at most %d)", field, len(b), MaxShadowBytes))
	}
	return nil
}

func depth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// DecideUpdateDesired returns DesiredShadowUpdated: desired is pushed to
// the device's shadow even when it changes nothing (a re-push). It returns
// NotFound for a missing device and Invalid for a missing, too deep or too
// large document.
func DecideUpdateDesired(s State, desired map[string]any, now time.Time) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if err := checkShadow("desired", s.Desired, desired); err != nil {
		return nil, err
	}
	return []domain.Event{DesiredShadowUpdated{DeviceID: s.DeviceID, ThingName: s.ThingName, Desired: desired, UpdatedAt: ms(now)}}, nil
}

// DecideUpdateReported returns ReportedShadowUpdated, or nothing when the
// report leaves the reported state as it is (devices repeat themselves).
// It returns NotFound for a missing device and Invalid for a missing, too
// deep or too large document.
func DecideUpdateReported(s State, reported map[string]any, now time.Time) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if err := checkShadow("reported", s.Reported, reported); err != nil {
		return nil, err
	}
	if reflect.DeepEqual(mergeShadow(s.Reported, reported), s.Reported) {
		return nil, nil
	}
	return []domain.Event{ReportedShadowUpdated{DeviceID: s.DeviceID, ThingName: s.ThingName, Reported: reported, UpdatedAt: ms(now)}}, nil
}

// Door Lock cluster (257) commands and values used for PINs.
const (
	DoorLockCluster           = 257
	CmdSetUser                = 26
	CmdSetCredential          = 34
	CmdClearCredential        = 38
	OperationAdd              = 0
	OperationModify           = 2
	CredentialTypePIN         = 1
	UserStatusOccupiedEnabled = 1
	UserTypeUnrestricted      = 0
	CredentialRuleSingle      = 0
)

// DoorLockCommand is one Door Lock cluster command for the hub's bridge to
// invoke on device DeviceUUID (the bridge resolves its node id). Args use
// the Matter field names; a PIN is in Args["credentialData"], base64.
// Put it in the hub's desired shadow, never in an event or a log: String
// hides it.
type DoorLockCommand struct {
	DeviceUUID string         `json:"device_uuid"`
	EndpointID int            `json:"endpoint_id"`
	ClusterID  int            `json:"cluster_id"`
	Command    string         `json:"command"`
	CommandID  int            `json:"command_id"`
	Args       map[string]any `json:"args"`
}

// String describes the command without its credential data.
func (c DoorLockCommand) String() string {
	args := make(map[string]any, len(c.Args))
	for k, v := range c.Args {
		if k == "credentialData" {
			v = "[redacted]"
		}
		args[k] = v
	}
	return fmt.Sprintf("%s(%d) on %s ep %d %v", c.Command, c.CommandID, c.DeviceUUID, c.EndpointID, args)
}

// GoString is String, so %#v hides the PIN too.
func (c DoorLockCommand) GoString() string { return c.String() }

// SetPin asks for a PIN on a Matter door lock. UserIndex and
// CredentialIndex are optional (0): DecideSetPin picks free ones.
// Endpoint is the Door Lock endpoint; 0 means the one the reported shadow
// shows (a "<ep>/257/0" key), else 1.
type SetPin struct {
	PinCode         string
	UserIndex       int64
	CredentialIndex int64
	Endpoint        int
	Now             time.Time
}

func checkIndex(field string, v int64) error {
	if v < 0 || v > MaxPinIndex {
		return domain.InvalidField(field, fmt.Sprintf("%s must be between 1 and %d", field, MaxPinIndex))
	}
	return nil
}

// DecideSetPin returns MatterPinSet (without the PIN) and the Door Lock
// commands that put the PIN on the lock: SetUser (when the user slot is
// new) and SetCredential (Add, or Modify when CredentialIndex is in use:
// a PIN change). It returns NotFound for a missing device, Invalid for a
// PIN that is not 4 to 8 digits, an index out of range, a credential index
// held by another user index, or when MaxPinSlots are in use.
func DecideSetPin(s State, c SetPin) ([]domain.Event, []DoorLockCommand, error) {
	if err := notFound(s); err != nil {
		return nil, nil, err
	}
	if !pinRE.MatchString(c.PinCode) {
		return nil, nil, domain.InvalidField("pinCode", "pinCode must be 4 to 8 digits")
	}
	if err := checkIndex("userIndex", c.UserIndex); err != nil {
		return nil, nil, err
	}
	if err := checkIndex("credentialIndex", c.CredentialIndex); err != nil {
		return nil, nil, err
	}
	user, cred, op := c.UserIndex, c.CredentialIndex, OperationAdd
	if slot, ok := s.Pin(cred); ok {
		if user != 0 && user != slot.UserIndex {
			return nil, nil, domain.InvalidField("credentialIndex", fmt.Sprintf("credentialIndex %d belongs to userIndex %d", cred, slot.UserIndex))
		}
		user, op = slot.UserIndex, OperationModify
	} else if len(s.Pins) >= MaxPinSlots {
		return nil, nil, domain.Errorf(domain.Invalid, "this lock already holds %d PINs (at most %d)", len(s.Pins), MaxPinSlots)
	}
	usedUsers, usedCreds := map[int64]bool{}, map[int64]bool{}
	for _, p := range s.Pins {
		usedUsers[p.UserIndex], usedCreds[p.CredentialIndex] = true, true
	}
	if cred == 0 {
		cred = firstFree(usedCreds)
	}
	newUser := user == 0 || !usedUsers[user]
	if user == 0 {
		user = firstFree(usedUsers)
	}
	ep := c.Endpoint
	if ep == 0 {
		ep = s.doorLockEndpoint()
	}
	var cmds []DoorLockCommand
	if newUser && op == OperationAdd {
		cmds = append(cmds, DoorLockCommand{DeviceUUID: s.DeviceID, EndpointID: ep, ClusterID: DoorLockCluster, Command: "SetUser", CommandID: CmdSetUser,
			Args: map[string]any{"operationType": OperationAdd, "userIndex": user, "userName": nil, "userUniqueID": nil,
				"userStatus": UserStatusOccupiedEnabled, "userType": UserTypeUnrestricted, "credentialRule": CredentialRuleSingle}})
	}
	cmds = append(cmds, DoorLockCommand{DeviceUUID: s.DeviceID, EndpointID: ep, ClusterID: DoorLockCluster, Command: "SetCredential", CommandID: CmdSetCredential,
		Args: map[string]any{"operationType": op, "credential": map[string]any{"credentialType": CredentialTypePIN, "credentialIndex": cred},
			"credentialData": base64.StdEncoding.EncodeToString([]byte(c.PinCode)), "userIndex": user, "userStatus": nil, "userType": nil}})
	ev := MatterPinSet{DeviceID: s.DeviceID, ThingName: s.ThingName, UserIndex: user, CredentialIndex: cred, Timestamp: ms(c.Now)}
	return []domain.Event{ev}, cmds, nil
}

// firstFree returns the smallest index from 1 up not in used. With at
// most MaxPinSlots in use it is at most MaxPinSlots+1.
func firstFree(used map[int64]bool) int64 {
	i := int64(1)
	for used[i] {
		i++
	}
	return i
}

// doorLockEndpoint returns the endpoint of the reported "<ep>/257/0" key
// (the lowest, when several), else 1.
func (s State) doorLockEndpoint() int {
	best := 0
	for k := range s.Reported {
		p, ok := ParsePath(k)
		if ok && p.Cluster == DoorLockCluster && p.Attribute == 0 && (best == 0 || int(p.Endpoint) < best) {
			best = int(p.Endpoint)
		}
	}
	if best == 0 {
		return 1
	}
	return best
}

// ClearPin asks for a PIN credential to be cleared. CredentialIndex is
// required; UserIndex is optional and must match the slot's when given.
type ClearPin struct {
	CredentialIndex int64
	UserIndex       int64
	Endpoint        int
	Now             time.Time
}

// DecideClearPin returns MatterPinCleared and the Door Lock ClearCredential
// command. A credential index spkey has no slot for is cleared as well (a
// PIN set outside spkey must be removable). It returns NotFound for a
// missing device and Invalid for a missing or out-of-range index or a
// userIndex that is not the slot's.
func DecideClearPin(s State, c ClearPin) ([]domain.Event, []DoorLockCommand, error) {
	if err := notFound(s); err != nil {
		return nil, nil, err
	}
	if c.CredentialIndex == 0 {
		return nil, nil, domain.InvalidField("credentialIndex", "credentialIndex is required")
	}
	if err := checkIndex("credentialIndex", c.CredentialIndex); err != nil {
		return nil, nil, err
	}
	if err := checkIndex("userIndex", c.UserIndex); err != nil {
		return nil, nil, err
	}
	user := c.UserIndex
	if slot, ok := s.Pin(c.CredentialIndex); ok {
		if user != 0 && user != slot.UserIndex {
			return nil, nil, domain.InvalidField("userIndex", fmt.Sprintf("credentialIndex %d belongs to userIndex %d", c.CredentialIndex, slot.UserIndex))
		}
		user = slot.UserIndex
	}
	ep := c.Endpoint
	if ep == 0 {
		ep = s.doorLockEndpoint()
	}
	cmd := DoorLockCommand{DeviceUUID: s.DeviceID, EndpointID: ep, ClusterID: DoorLockCluster, Command: "ClearCredential", CommandID: CmdClearCredential,
		Args: map[string]any{"credential": map[string]any{"credentialType": CredentialTypePIN, "credentialIndex": c.CredentialIndex}}}
	ev := MatterPinCleared{DeviceID: s.DeviceID, ThingName: s.ThingName, UserIndex: user, CredentialIndex: c.CredentialIndex, Timestamp: ms(c.Now)}
	return []domain.Event{ev}, []DoorLockCommand{cmd}, nil
}
