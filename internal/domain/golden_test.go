package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/hub"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/matter"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/domain/user"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the fixtures")

const goldenDir = "testdata/golden"

// upstreamSchemas is upstream's event schema file, beside the repository.
const upstreamSchemas = "../../../shared/upstream/event-schemas.json"

// fixture is one fixed instance of a stored event.
type fixture struct {
	pkg      string // the aggregate package that owns the event
	upstream bool   // upstream defines the event (lock, user); tenant events are spkey's own
	ev       domain.Event
	events   *domain.Catalog
	// shape, when set, names a further stored shape of an event type that
	// has a fixture already (an older or fuller form): its golden file is
	// {type}.{shape}.json.
	shape string
}

// typ is the stored type name of the fixture's event.
func (f fixture) typ() string { return f.events.Name(f.ev) }

// golden is the name of the fixture's golden file.
func (f fixture) golden() string {
	if f.shape != "" {
		return f.typ() + "." + f.shape + ".json"
	}
	return f.typ() + ".json"
}

func i64(n int64) *int64 { return &n }

const (
	ts     = "2026-01-02T03:04:05.678Z"
	lockID = int64(1001)
	lockU  = "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40"
	userA  = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
	userB  = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	ringID = "7e57d004-4a1b-4c2d-9e3f-5a6b7c8d9e0f"
	hubU   = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
	tsMs   = int64(1767323045678) // ts in epoch milliseconds, as hub events carry time
)

// fixtures holds one instance of every event type, every optional field
// filled, so the golden files pin every field name.
func fixtures() []fixture {
	l := func(e domain.Event) fixture { return fixture{pkg: "lock", upstream: true, ev: e, events: lock.Events} }
	u := func(e domain.Event) fixture { return fixture{pkg: "user", upstream: true, ev: e, events: user.Events} }
	tn := func(e domain.Event) fixture { return fixture{pkg: "tenant", ev: e, events: tenant.Events} }
	d := func(e domain.Event) fixture { return fixture{pkg: "doorbell", ev: e, events: doorbell.Events} }
	h := func(e domain.Event) fixture { return fixture{pkg: "hub", upstream: true, ev: e, events: hub.Events} }
	mt := func(e domain.Event) fixture {
		return fixture{pkg: "matter", upstream: true, ev: e, events: matter.Events}
	}
	seed := []lock.Key{{UUID: "0b9f1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d", IndexNumber: i64(0), UserID: userA}, {UUID: "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", IndexNumber: i64(1)}}
	return []fixture{
		// LockCreated as spkey stored it before it recorded device things.
		l(lock.LockCreated{LockID: lockID, UUID: lockU, SerialNumber: "SN-0001001", Keys: seed, OwnerID: userA, Timestamp: ts}),
		{pkg: "lock", upstream: true, shape: "thing", events: lock.Events, ev: lock.LockCreated{LockID: lockID, UUID: lockU, SerialNumber: "SN-0001001", Keys: seed, OwnerID: userA, Timestamp: ts,
			ThingName: "lock-1001", ThingArn: "arn:aws:iot:eu-central-1:123456789012:thing/lock-1001"}},
		l(lock.OwnerSet{LockID: lockID, UUID: lockU, Timestamp: ts, UserID: userB}),
		l(lock.OrganizationSet{LockID: lockID, UUID: lockU, Timestamp: ts, OrgID: "acme"}),
		l(lock.ResidentAdded{LockID: lockID, UUID: lockU, Timestamp: ts, UserID: userB, Name: "Bob Example", Email: "b***@example.com"}),
		l(lock.ResidentRemoved{LockID: lockID, UUID: lockU, Timestamp: ts, UserID: userB, Email: "b***@example.com"}),
		l(lock.KeyAdded{LockID: lockID, UUID: lockU, Timestamp: ts, KeyUUID: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", KeyIndexNumber: i64(2), UserID: userB}),
		l(lock.KeyRemoved{LockID: lockID, UUID: lockU, Timestamp: ts, KeyUUID: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", KeyIndexNumber: i64(2)}),
		l(lock.KeyWriteRequested{LockID: lockID, UUID: lockU, Timestamp: ts, KeyUUID: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", KeyIndexNumber: i64(2)}),
		l(lock.LockOpenRequested{LockID: lockID, UUID: lockU, Timestamp: ts, Reason: "Parcel for flat 4", RequestID: "req-42"}),
		{pkg: "lock", events: lock.Events, ev: lock.LockActionUpdated{LockID: lockID, UUID: lockU, Timestamp: ts, RequestID: "req-42", Action: lock.ActionOpenLock, Status: lock.StatusFailed, At: 1767323045, Error: "jammed"}}, // spkey's own: upstream has no action records
		{pkg: "lock", events: lock.Events, ev: lock.LockDeviceConnected{LockID: lockID, UUID: lockU, Timestamp: ts}},                                                                                                             // spkey's own: upstream has no presence events
		{pkg: "lock", events: lock.Events, ev: lock.LockDeviceDisconnected{LockID: lockID, UUID: lockU, Timestamp: ts}},                                                                                                          // spkey's own
		l(lock.LockUUIDChanged{LockID: lockID, UUID: lockU, Timestamp: ts, NewUUID: "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", PreviousUUID: lockU}),
		u(user.UserCreated{UserID: userA, Status: user.StatusActive}),
		u(user.UserEmailUpdated{UserID: userA, Action: "set", MaskedEmail: "a***@example.com", Timestamp: ts}),
		u(user.UserPhoneNumberUpdated{UserID: userA, Action: "set", MaskedPhoneNumber: "***4567", Timestamp: ts}),
		tn(tenant.TenantRegistered{OrgID: "acme", OrgName: "Acme Ltd", OwnerEmail: "o***@acme.example", RegisteredAt: ts}),
		tn(tenant.APIKeyIssued{OrgID: "acme", KeyID: "3f2e1d0c-9b8a-4765-8432-10fedcba9876",
			Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Masked: "sk_l***wxyz",
			Super: true, CreatedAt: ts, CreatedBy: "admin@spkey.example", ExpiresAt: "2027-01-01T00:00:00.000Z"}),
		tn(tenant.APIKeyRevoked{OrgID: "acme", KeyID: "3f2e1d0c-9b8a-4765-8432-10fedcba9876", Reason: "rotated", RevokedAt: ts}),
		tn(tenant.WebhookCreated{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", URL: "https://hooks.acme.example/spkey",
			Events: []string{"LockCreated", "KeyAdded"}, AuthType: tenant.AuthAPIKeyHeader, AuthHeader: "X-Acme-Token", CreatedAt: ts}),
		tn(tenant.WebhookUpdated{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", URL: "https://hooks2.acme.example/spkey",
			Events: []string{"*"}, AuthType: tenant.AuthAPIKeyHeader, AuthHeader: "X-Acme-Token", SecretRotated: true, UpdatedAt: ts}),
		tn(tenant.WebhookDeleted{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", DeletedAt: ts}),
		tn(tenant.WebhookVerified{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", URLVersion: 2, StatusCode: 204, VerifiedAt: ts}),
		tn(tenant.WebhookVerificationFailed{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", URLVersion: 2, StatusCode: 500,
			Error: "HTTP 500: upstream down", FailedAt: ts}),
		tn(tenant.WebhookDisabled{OrgID: "acme", WebhookID: "5b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", StatusCode: 410, Reason: "HTTP 410 Gone", DisabledAt: ts}),
		fixture{pkg: "user", events: user.Events, ev: user.NotificationPreferencesSet{UserID: userA, Timestamp: ts,
			Preferences: user.Preferences{Live: true, Email: false, Hook: true, QuietHours: &user.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Europe/Warsaw"}}}},
		d(doorbell.DoorbellRang{RingID: ringID, LockID: lockID, UUID: lockU, OrgID: "acme", Timestamp: ts,
			Residents: []doorbell.Target{{UserID: userA, Name: "Ann"}, {UserID: userB, Name: "Bob Example"}},
			Source:    doorbell.SourceVisitorPage, VisitorName: "Courier", Message: "Parcel for flat 4"}),
		d(doorbell.DoorbellAnswered{RingID: ringID, LockID: lockID, Timestamp: ts, UserID: userA, Name: "Ann"}),
		d(doorbell.DoorbellDeclined{RingID: ringID, LockID: lockID, Timestamp: ts, UserID: userB, Name: "Bob Example"}),
		h(hub.HubProvisioned{HubID: hubU, Serial: "HUB-0001", Model: "spk-hub-2", ThingName: "hub-0001", VendorName: "SmartphoneKey", ProvisionedAt: tsMs}),
		h(hub.HubClaimed{HubID: hubU, OrgID: "acme", SiteID: "site-1", ClaimedBy: userA, ClaimedAt: tsMs}),
		h(hub.HubReClaimed{HubID: hubU, PreviousOrgID: "acme", PreviousSiteID: "site-1", NewOrgID: "beta", NewSiteID: "site-9",
			ReclaimedBy: userA, Reason: "Moved to the new building", ReclaimedAt: tsMs}),
		h(hub.HubRoleSet{HubID: hubU, IsPrimary: true, SetBy: userA, SetAt: tsMs}),
		h(hub.HubSuspended{HubID: hubU, Reason: "Reported stolen", SuspendedBy: userA, SuspendedAt: tsMs}),
		// matter: the Matter device aggregate.
		mt(matter.MatterDeviceCreated{DeviceID: matterID, ThingName: matterID, HubID: "hub-0001", DeviceType: "contact_sensor", CreatedAt: tsMs}),
		{pkg: "matter", events: matter.Events, ev: matter.MatterDeviceOrganizationSet{DeviceID: matterID, HubID: "hub-0001", OrgID: "acme", SetAt: tsMs}}, // spkey's own: upstream's events carry no org
		mt(matter.DesiredShadowUpdated{DeviceID: matterID, ThingName: matterID, Desired: map[string]any{"1/6/0": true, "light": map[string]any{"level": float64(42)}}, UpdatedAt: tsMs}),
		mt(matter.ReportedShadowUpdated{DeviceID: matterID, ThingName: matterID, Reported: map[string]any{"available": true, "1/69/0": false, "1/29/0": "n/a"}, UpdatedAt: tsMs}),
		mt(matter.MatterPinSet{DeviceID: matterID, ThingName: matterID, UserIndex: 3, CredentialIndex: 5, Timestamp: tsMs}),
		mt(matter.MatterPinCleared{DeviceID: matterID, ThingName: matterID, UserIndex: 3, CredentialIndex: 5, Timestamp: tsMs}),
		mt(matter.AlarmTriggered{DeviceID: matterID, Channel: matter.ChannelSmoke, AlarmType: matter.AlarmSmoke, Severity: matter.SeverityCritical, MatterPath: "1/92/1",
			DeviceTypeID: i64(118), RawValue: f64(2), Timestamp: ts}),
		mt(matter.AlarmCleared{DeviceID: matterID, Channel: matter.ChannelSmoke, AlarmType: matter.AlarmSmoke, MatterPath: "1/92/1", DeviceTypeID: i64(118), RawValue: f64(0), Timestamp: ts}),
	}
}

// matterID is the Matter device of the matter fixtures.
const matterID = "3c0e9b2a-7d4f-4e1a-9b8c-2d3e4f5a6b7c"

func f64(f float64) *float64 { return &f }

// decided returns more events the schema must accept: the ones the decide
// functions make with optional fields left out.
func decided(t *testing.T) []domain.Event {
	t.Helper()
	var out []domain.Event
	add := func(evs []domain.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	add(lock.DecideCreate(lock.State{}, lock.Create{LockID: 7, UUID: lockU, Now: ts}))
	created := lock.Apply(lock.State{}, out[0])
	add(lock.DecideAddResident(created, userA, "Ann", "", ts))
	withAnn := lock.Apply(created, out[len(out)-1])
	add(lock.DecideRemoveResident(withAnn, userA, ts))
	add(lock.DecideAddKey(created, lock.AddKey{KeyUUID: "k-1", Now: ts}))
	withKey := lock.Apply(created, out[len(out)-1])
	add(lock.DecideRemoveKey(withKey, lock.RemoveKey{KeyUUID: "k-1", Now: ts}))
	add(lock.DecideWriteKey(created, lock.WriteKey{KeyUUID: "k-1", Now: ts}))
	add(lock.DecideOpenLock(created, lock.OpenLock{Now: ts}))
	add(lock.DecideChangeUUID(created, userB, ts))
	add(user.DecideCreate(user.State{}, user.Create{UserID: userA, Now: ts}))
	u := user.Apply(user.State{}, user.UserCreated{UserID: userA, Status: user.StatusActive})
	add(user.DecideUpdatePhone(u, "+48123454567", "", ts))
	add(user.DecideUpdateEmail(u, "ann@example.com", ts))
	// Hubs: thingName defaulted, no vendorName; a demotion.
	add(hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubU, Serial: "S", Model: "M", Now: tsMs}))
	hs := hub.Apply(hub.State{}, out[len(out)-1])
	add(hub.DecideClaim(hs, hub.Claim{OrgID: "acme", SiteID: "site-1", UserID: userA, Now: tsMs}))
	hs = hub.Apply(hs, out[len(out)-1])
	add(hub.DecideSetRole(hs, hub.SetRole{IsPrimary: true, UserID: userA, Now: tsMs}))
	hs = hub.Apply(hs, out[len(out)-1])
	out = append(out, hub.DecideDemote(hs, userB, "acme", "site-1", userA, tsMs)...)
	add(hub.DecideReClaim(hs, hub.ReClaim{NewOrgID: "beta", NewSiteID: "s", Reason: "r", UserID: userA, Now: tsMs}))
	add(hub.DecideSuspend(hs, hub.Suspend{Reason: "r", UserID: userA, Now: tsMs}))
	// matter: decided events with optional fields left out.
	mnow := time.UnixMilli(tsMs)
	mc, err := matter.DecideCreate(matter.State{}, matter.Create{DeviceID: matterID, ThingName: matterID, HubID: "hub-0001", Now: mnow})
	add(mc, err)
	md := matter.Apply(matter.State{}, mc[0])
	add(matter.DecideUpdateDesired(md, map[string]any{}, mnow))
	add(matter.DecideUpdateReported(md, map[string]any{"available": true}, mnow))
	pin, _, err := matter.DecideSetPin(md, matter.SetPin{PinCode: "1234", Now: mnow})
	add(pin, err)
	clr, _, err := matter.DecideClearPin(md, matter.ClearPin{CredentialIndex: 9, Now: mnow})
	add(clr, err)
	leak, err := matter.DecideReportSensorState(md, matter.SensorReading{Channel: matter.ChannelBooleanState, MatterPath: "1/69/0", Value: 1, DeviceTypeID: 67}, mnow)
	add(leak, err)
	add(matter.DecideReportSensorState(matter.Apply(md, leak[0]), matter.SensorReading{Channel: matter.ChannelBooleanState, MatterPath: "1/69/0", Value: 0, DeviceTypeID: 67}, mnow))
	return out
}

// nameOf returns the stored type name of e from its aggregate's catalogue.
func nameOf(e domain.Event) string {
	for _, c := range []*domain.Catalog{lock.Events, user.Events, tenant.Events, doorbell.Events, hub.Events, matter.Events} {
		if n := c.Name(e); n != "" {
			return n
		}
	}
	return ""
}

func TestGoldenEvents(t *testing.T) {
	fx := fixtures()
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("every event type has a fixture", func(t *testing.T) {
		declared := declaredEventTypes(t)
		var have []string
		for _, f := range fx {
			if f.shape == "" {
				have = append(have, f.pkg+"."+f.typ())
			}
		}
		sort.Strings(have)
		if diff := cmp.Diff(declared, have); diff != "" {
			t.Errorf("event types declared in the aggregate packages vs fixtures here (-declared +fixtures):\n%s", diff)
		}
	})

	for _, f := range fx {
		typ := f.typ()
		t.Run(strings.TrimSuffix(f.golden(), ".json"), func(t *testing.T) {
			b, err := json.Marshal(f.ev)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got := append(b, '\n')
			path := filepath.Join(goldenDir, f.golden())
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file: %v (run `go test ./internal/domain -run TestGoldenEvents -update` to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("stored encoding of %s changed (-golden +now):\n%s\nStored events are forever: keep the old encoding decodable, or run with -update only if the change is intended.", typ, diff)
			}
			// The golden payload, as stored in old databases, decodes to
			// the same event.
			dec, err := f.events.Decode(typ, want)
			if err != nil {
				t.Fatalf("decode golden %s: %v", typ, err)
			}
			if diff := cmp.Diff(f.ev, dec); diff != "" {
				t.Errorf("golden %s decodes differently (-want +got):\n%s", typ, diff)
			}
		})
	}

	t.Run("no stale golden files", func(t *testing.T) {
		known := map[string]bool{}
		for _, f := range fx {
			known[f.golden()] = true
		}
		entries, err := os.ReadDir(goldenDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !known[e.Name()] {
				t.Errorf("%s has no fixture: an event type was renamed or removed (stored events must stay decodable)", filepath.Join(goldenDir, e.Name()))
			}
		}
	})

	t.Run("upstream schema", func(t *testing.T) {
		doc, err := os.ReadFile(upstreamSchemas)
		if errors.Is(err, fs.ErrNotExist) {
			t.Skipf("upstream event schemas not found at %s (the shared/upstream checkout beside the repository): not validating lock and user events against upstream", upstreamSchemas)
		}
		if err != nil {
			t.Fatal(err)
		}
		schemas := compileUpstream(t, doc)
		// The validator does reject: a payload with an unknown field and
		// without a required one fails.
		if sch, ok := schemas[lock.TypeOwnerSet]; ok {
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(`{"lockId":1,"uuid":"u","userId":"x","rawEmail":"ann@example.com"}`))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err == nil {
				t.Fatalf("upstream's %s schema accepted a payload with an unknown field and no timestamp: validation is not wired", lock.TypeOwnerSet)
			}
		}
		events := decided(t)
		for _, f := range fx {
			if f.upstream {
				events = append(events, f.ev)
			}
		}
		for i, e := range events {
			typ := nameOf(e)
			t.Run(typ+"/"+strconv.Itoa(i), func(t *testing.T) {
				sch, ok := schemas[typ]
				if !ok {
					t.Fatalf("upstream has no schema for %s", typ)
				}
				b, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if err := sch.Validate(inst); err != nil {
					t.Errorf("%s %s breaks upstream's schema:\n%v", typ, b, err)
				}
			})
		}
	})
}

// compileUpstream compiles every event schema of upstream's file.
func compileUpstream(t *testing.T, doc []byte) map[string]*jsonschema.Schema {
	t.Helper()
	var file struct {
		Version     string                     `json:"version"`
		SchemaDraft string                     `json:"schemaDraft"`
		Events      map[string]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(doc, &file); err != nil {
		t.Fatalf("parse %s: %v", upstreamSchemas, err)
	}
	if len(file.Events) == 0 {
		t.Fatalf("%s has no events", upstreamSchemas)
	}
	t.Logf("upstream event schemas version %s, draft %s", file.Version, file.SchemaDraft)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	out := map[string]*jsonschema.Schema{}
	for name, raw := range file.Events {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		url := "mem://upstream/events/" + name + ".json"
		if err := c.AddResource(url, v); err != nil {
			t.Fatalf("add schema %s: %v", name, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			t.Fatalf("compile schema %s: %v", name, err)
		}
		out[name] = sch
	}
	return out
}

// declaredEventTypes reads the Type* string constants of the aggregate
// packages from their source, so that a new event type without a fixture
// (and so without a golden file) fails this test.
func declaredEventTypes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pkg := range []string{"lock", "user", "tenant", "doorbell", "hub", "matter"} {
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(pkg, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if !strings.HasPrefix(n.Name, "Type") || i >= len(vs.Values) {
							continue
						}
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue
						}
						v, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, pkg+"."+v)
					}
				}
			}
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("found no Type* event constants in lock, user and tenant")
	}
	return out
}
