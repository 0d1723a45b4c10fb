package matter_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/matter"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

const (
	dev   = "3c0e9b2a-7d4f-4e1a-9b8c-2d3e4f5a6b7c"
	nowMs = int64(1767323045678)
	nowTS = "2026-01-02T03:04:05.678Z"
)

func fold(s matter.State, evs []domain.Event) matter.State {
	for _, e := range evs {
		s = matter.Apply(s, e)
	}
	return s
}

func created(t *testing.T) matter.State {
	t.Helper()
	evs, err := matter.DecideCreate(matter.State{}, matter.Create{DeviceID: dev, ThingName: dev, HubID: "hub-1", OrgID: "acme", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return fold(matter.State{}, evs)
}

func TestDecideCreate(t *testing.T) {
	evs, err := matter.DecideCreate(matter.State{}, matter.Create{DeviceID: dev, ThingName: dev, HubID: "hub-1", OrgID: "acme", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.Event{
		matter.MatterDeviceCreated{DeviceID: dev, ThingName: dev, HubID: "hub-1", DeviceType: "generic", CreatedAt: nowMs},
		matter.MatterDeviceOrganizationSet{DeviceID: dev, HubID: "hub-1", OrgID: "acme", SetAt: nowMs},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	s := fold(matter.State{}, evs)
	if s.OrgID != "acme" || s.DeviceType != "generic" || !s.Exists() {
		t.Fatalf("state %+v", s)
	}
	again, err := matter.DecideCreate(s, matter.Create{DeviceID: dev, ThingName: dev, HubID: "hub-2", Now: now})
	if err != nil || again != nil {
		t.Fatalf("create of an existing device = %v, %v; want nothing (200, event null)", again, err)
	}
	for name, c := range map[string]matter.Create{
		"no deviceId":   {ThingName: dev, HubID: "h"},
		"no thingName":  {DeviceID: dev, HubID: "h"},
		"no hubId":      {DeviceID: dev, ThingName: dev},
		"bad thingName": {DeviceID: dev, ThingName: "a b", HubID: "h"},
		"long hubId":    {DeviceID: dev, ThingName: dev, HubID: strings.Repeat("h", 129)},
		"bad type":      {DeviceID: dev, ThingName: dev, HubID: "h", DeviceType: "x/y"},
	} {
		if _, err := matter.DecideCreate(matter.State{}, c); domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("%s: err %v, want invalid", name, err)
		}
	}
}

func TestDecideShadows(t *testing.T) {
	s := created(t)
	if _, err := matter.DecideUpdateDesired(matter.State{}, map[string]any{}, now); domain.ErrorCode(err) != domain.NotFound {
		t.Errorf("missing device: %v", err)
	}
	if _, err := matter.DecideUpdateReported(s, nil, now); domain.ErrorCode(err) != domain.Invalid {
		t.Errorf("nil reported: %v", err)
	}
	big := map[string]any{"x": strings.Repeat("a", matter.MaxShadowBytes)}
	if _, err := matter.DecideUpdateDesired(s, big, now); domain.ErrorCode(err) != domain.Invalid {
		t.Errorf("too large: %v", err)
	}
	deep := map[string]any{}
	d := deep
	for range matter.MaxShadowDepth + 1 {
		n := map[string]any{}
		d["a"] = n
		d = n
	}
	if _, err := matter.DecideUpdateDesired(s, deep, now); domain.ErrorCode(err) != domain.Invalid {
		t.Errorf("too deep: %v", err)
	}
	evs, err := matter.DecideUpdateReported(s, map[string]any{"available": true, "1/69/0": true, "cfg": map[string]any{"a": 1.0, "b": 2.0}}, now)
	if err != nil || len(evs) != 1 {
		t.Fatalf("reported: %v %v", evs, err)
	}
	s = fold(s, evs)
	// The same report again changes nothing: no event.
	if evs, err := matter.DecideUpdateReported(s, map[string]any{"1/69/0": true}, now); err != nil || evs != nil {
		t.Fatalf("repeated report: %v %v", evs, err)
	}
	// A null deletes, nested objects merge.
	evs, err = matter.DecideUpdateReported(s, map[string]any{"1/69/0": nil, "cfg": map[string]any{"b": nil, "c": 3.0}}, now)
	if err != nil {
		t.Fatal(err)
	}
	s = fold(s, evs)
	if diff := cmp.Diff(map[string]any{"available": true, "cfg": map[string]any{"a": 1.0, "c": 3.0}}, s.Reported); diff != "" {
		t.Errorf("merged reported (-want +got)\n%s", diff)
	}
	// Desired is always pushed, even unchanged.
	evs, err = matter.DecideUpdateDesired(s, map[string]any{}, now)
	if diff := cmp.Diff([]domain.Event{matter.DesiredShadowUpdated{DeviceID: dev, ThingName: dev, Desired: map[string]any{}, UpdatedAt: nowMs}}, evs); err != nil || diff != "" {
		t.Errorf("desired: %v (-want +got)\n%s", err, diff)
	}
}

func TestDecideSetPin(t *testing.T) {
	s := created(t)
	s = fold(s, []domain.Event{matter.ReportedShadowUpdated{DeviceID: dev, ThingName: dev, Reported: map[string]any{"available": true, "2/257/0": 1.0}}})
	evs, cmds, err := matter.DecideSetPin(s, matter.SetPin{PinCode: "123456", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]domain.Event{matter.MatterPinSet{DeviceID: dev, ThingName: dev, UserIndex: 1, CredentialIndex: 1, Timestamp: nowMs}}, evs); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if len(cmds) != 2 || cmds[0].Command != "SetUser" || cmds[1].Command != "SetCredential" || cmds[0].EndpointID != 2 || cmds[1].ClusterID != 257 {
		t.Fatalf("commands %v", cmds)
	}
	if got := cmds[1].Args["credentialData"]; got != base64.StdEncoding.EncodeToString([]byte("123456")) {
		t.Errorf("credentialData %v", got)
	}
	for _, c := range cmds {
		if strings.Contains(c.String(), "MTIzNDU2") || strings.Contains(fmt.Sprintf("%v %#v", c, c), "MTIzNDU2") {
			t.Errorf("String shows the PIN: %s", c)
		}
	}
	s = fold(s, evs)
	// Next free indexes; a PIN change of slot 1 is a Modify with no SetUser.
	evs, cmds, err = matter.DecideSetPin(s, matter.SetPin{PinCode: "4321", Now: now})
	if err != nil || evs[0].(matter.MatterPinSet).CredentialIndex != 2 || evs[0].(matter.MatterPinSet).UserIndex != 2 || len(cmds) != 2 {
		t.Fatalf("second pin: %v %v %v", evs, cmds, err)
	}
	evs, cmds, err = matter.DecideSetPin(s, matter.SetPin{PinCode: "4321", CredentialIndex: 1, Now: now})
	if err != nil || len(cmds) != 1 || cmds[0].Args["operationType"] != matter.OperationModify || evs[0].(matter.MatterPinSet).UserIndex != 1 {
		t.Fatalf("modify: %v %v %v", evs, cmds, err)
	}
	for name, c := range map[string]matter.SetPin{
		"short pin":         {PinCode: "123"},
		"long pin":          {PinCode: "123456789"},
		"letters":           {PinCode: "12a4"},
		"unicode digits":    {PinCode: "١٢٣٤"},
		"index too big":     {PinCode: "1234", CredentialIndex: 0xFFFF},
		"negative":          {PinCode: "1234", UserIndex: -1},
		"other user's cred": {PinCode: "1234", CredentialIndex: 1, UserIndex: 7},
	} {
		if _, _, err := matter.DecideSetPin(s, c); domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, _, err := matter.DecideSetPin(matter.State{}, matter.SetPin{PinCode: "1234"}); domain.ErrorCode(err) != domain.NotFound {
		t.Errorf("missing device: %v", err)
	}
	// No event ever carries the PIN.
	for _, e := range evs {
		if strings.Contains(fmt.Sprintf("%+v", e), "4321") {
			t.Errorf("event carries the PIN: %+v", e)
		}
	}
}

func TestDecideSetPinBounded(t *testing.T) {
	s := created(t)
	for range matter.MaxPinSlots {
		evs, _, err := matter.DecideSetPin(s, matter.SetPin{PinCode: "1234", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		s = fold(s, evs)
	}
	if _, _, err := matter.DecideSetPin(s, matter.SetPin{PinCode: "1234", Now: now}); domain.ErrorCode(err) != domain.Invalid {
		t.Fatalf("slot %d: %v, want invalid", matter.MaxPinSlots+1, err)
	}
}

func TestDecideClearPin(t *testing.T) {
	s := created(t)
	evs, _, _ := matter.DecideSetPin(s, matter.SetPin{PinCode: "1234", UserIndex: 4, CredentialIndex: 6, Now: now})
	s = fold(s, evs)
	evs, cmds, err := matter.DecideClearPin(s, matter.ClearPin{CredentialIndex: 6, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]domain.Event{matter.MatterPinCleared{DeviceID: dev, ThingName: dev, UserIndex: 4, CredentialIndex: 6, Timestamp: nowMs}}, evs); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if len(cmds) != 1 || cmds[0].Command != "ClearCredential" || cmds[0].CommandID != 38 {
		t.Errorf("commands %v", cmds)
	}
	if got := fold(s, evs).Pins; len(got) != 0 {
		t.Errorf("pins after clear %v", got)
	}
	if _, _, err := matter.DecideClearPin(s, matter.ClearPin{Now: now}); domain.ErrorCode(err) != domain.Invalid {
		t.Errorf("no credentialIndex: %v", err)
	}
	if _, _, err := matter.DecideClearPin(s, matter.ClearPin{CredentialIndex: 6, UserIndex: 5}); domain.ErrorCode(err) != domain.Invalid {
		t.Errorf("wrong userIndex: %v", err)
	}
	// A credential spkey has no slot for is cleared too.
	if evs, _, err := matter.DecideClearPin(s, matter.ClearPin{CredentialIndex: 9, Now: now}); err != nil || len(evs) != 1 {
		t.Errorf("unknown slot: %v %v", evs, err)
	}
}

func TestDecideReportSensorState(t *testing.T) {
	i := func(n int64) *int64 { return &n }
	f := func(n float64) *float64 { return &n }
	type step struct {
		r    matter.SensorReading
		want []domain.Event
	}
	contact := func(v float64) matter.SensorReading {
		return matter.SensorReading{Channel: "boolean_state", MatterPath: "1/69/0", Value: v, DeviceTypeID: 21}
	}
	leak := func(v float64) matter.SensorReading {
		return matter.SensorReading{Channel: "boolean_state", MatterPath: "1/69/0", Value: v, DeviceTypeID: 67}
	}
	smoke := func(v float64) matter.SensorReading {
		return matter.SensorReading{Channel: "smoke", MatterPath: "1/92/1", Value: v}
	}
	trig := func(ch, typ, sev, path string, dt *int64, v float64) domain.Event {
		return matter.AlarmTriggered{DeviceID: dev, Channel: ch, AlarmType: typ, Severity: sev, MatterPath: path, DeviceTypeID: dt, RawValue: f(v), Timestamp: nowTS}
	}
	clr := func(ch, typ, path string, dt *int64, v float64) domain.Event {
		return matter.AlarmCleared{DeviceID: dev, Channel: ch, AlarmType: typ, MatterPath: path, DeviceTypeID: dt, RawValue: f(v), Timestamp: nowTS}
	}
	for name, steps := range map[string][]step{
		"contact closed is normal": {{contact(1), nil}},
		"contact opens and closes": {{contact(0), []domain.Event{trig("boolean_state", "contact", "warning", "1/69/0", i(21), 0)}}, {contact(0), nil},
			{contact(1), []domain.Event{clr("boolean_state", "contact", "1/69/0", i(21), 1)}}, {contact(1), nil}},
		"leak": {{leak(0), nil}, {leak(1), []domain.Event{trig("boolean_state", "water_leak", "critical", "1/69/0", i(67), 1)}}, {leak(1), nil},
			{leak(0), []domain.Event{clr("boolean_state", "water_leak", "1/69/0", i(67), 0)}}},
		"smoke warning then critical then back": {{smoke(1), []domain.Event{trig("smoke", "smoke", "warning", "1/92/1", nil, 1)}},
			{smoke(2), []domain.Event{trig("smoke", "smoke", "critical", "1/92/1", nil, 2)}}, {smoke(2), nil},
			{smoke(1), []domain.Event{trig("smoke", "smoke", "warning", "1/92/1", nil, 1)}},
			{smoke(0), []domain.Event{clr("smoke", "smoke", "1/92/1", nil, 0)}}, {smoke(0), nil}},
	} {
		t.Run(name, func(t *testing.T) {
			s := created(t)
			for n, st := range steps {
				evs, err := matter.DecideReportSensorState(s, st.r, now)
				if err != nil {
					t.Fatalf("step %d: %v", n, err)
				}
				if diff := cmp.Diff(st.want, evs); diff != "" {
					t.Fatalf("step %d (-want +got)\n%s", n, diff)
				}
				s = fold(s, evs)
			}
		})
	}
	s := created(t)
	for name, r := range map[string]matter.SensorReading{
		"no device type":    {Channel: "boolean_state", MatterPath: "1/69/0", Value: 1},
		"other device type": {Channel: "boolean_state", MatterPath: "1/69/0", Value: 1, DeviceTypeID: 68},
		"boolean 2":         {Channel: "boolean_state", MatterPath: "1/69/0", Value: 2, DeviceTypeID: 21},
		"smoke 3":           smoke(3),
		"smoke 0.5":         smoke(0.5),
		"bad channel":       {Channel: "co", MatterPath: "1/92/2", Value: 1},
		"bad path":          {Channel: "smoke", MatterPath: "1/92", Value: 1},
		"long path":         {Channel: "smoke", MatterPath: "1/92/" + strings.Repeat("1", 40), Value: 1},
		"bad timestamp":     {Channel: "smoke", MatterPath: "1/92/1", Value: 1, Timestamp: "yesterday"},
	} {
		if _, err := matter.DecideReportSensorState(s, r, now); domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := matter.DecideReportSensorState(matter.State{}, smoke(1), now); domain.ErrorCode(err) != domain.NotFound {
		t.Errorf("missing device: %v", err)
	}
	evs, err := matter.DecideReportSensorState(s, matter.SensorReading{Channel: "smoke", MatterPath: "1/92/1", Value: 2, Timestamp: "2026-05-01T10:00:00+02:00"}, now)
	if err != nil || evs[0].(matter.AlarmTriggered).Timestamp != "2026-05-01T08:00:00.000Z" {
		t.Errorf("reading's timestamp: %v %v", evs, err)
	}
}

func TestValidatePairingCode(t *testing.T) {
	for code, ok := range map[string]bool{
		"34970112332": true, "749701123365521327694": true, "MT:Y.K9042C00KA0648G00": true,
		"": false, "3497011233": false, "MT:": false, "MT:abc": false, "mt:Y.K9": false, "34970112332\n": false,
		"MT:" + strings.Repeat("A", 300): false,
	} {
		if got := matter.ValidatePairingCode(code) == ""; got != ok {
			t.Errorf("ValidatePairingCode(%q) valid = %v, want %v", code, got, ok)
		}
	}
}
