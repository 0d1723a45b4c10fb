package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

const eventBridgeSchemas = "../../../shared/upstream/eventbridge-schemas.yaml"

// envelopeSchema compiles upstream's WebhookEvent envelope with its detail
// held to DomainEventEnvelope (upstream's detail list predates the
// doorbell, so the oneOf over known events cannot name DoorbellRang).
func envelopeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := upstreamCompiler(t)
	if c == nil {
		t.Skipf("upstream schema %s is absent", eventBridgeSchemas)
	}
	return compileUpstream(t, c, "WebhookEvent")
}

// upstreamCompiler loads upstream's EventBridge schemas, WebhookEvent's
// detail held to DomainEventEnvelope, as the resource eventbridge.json;
// nil when the upstream file is absent.
func upstreamCompiler(t testing.TB) *jsonschema.Compiler {
	t.Helper()
	raw, err := os.ReadFile(eventBridgeSchemas)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", eventBridgeSchemas, err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	env := schemas["WebhookEvent"].(map[string]any)
	env["properties"].(map[string]any)["detail"] = map[string]any{"$ref": "#/components/schemas/DomainEventEnvelope"}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("eventbridge.json", parsed); err != nil {
		t.Fatal(err)
	}
	return c
}

// compileUpstream compiles upstream's components/schemas/name.
func compileUpstream(t testing.TB, c *jsonschema.Compiler, name string) *jsonschema.Schema {
	t.Helper()
	sch, err := c.Compile("eventbridge.json#/components/schemas/" + name)
	if err != nil {
		t.Fatalf("compile upstream schema %s: %v", name, err)
	}
	return sch
}

// TestDoorbellRangQueuedForPartners: a ring on the lock of a tenant with a
// webhook queues a partner outbox row whose envelope is upstream's, with a stable id.
func TestDoorbellRangQueuedForPartners(t *testing.T) {
	sch := envelopeSchema(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
			admin := app.Call{P: app.Principal{Admin: true}}
			if _, err := svc.RegisterTenant(ctx, admin, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			// A tenant's events are queued for partners while it has a
			// webhook (no dispatcher runs here: the row stays queued).
			if _, err := svc.CreateWebhook(ctx, admin, "acme", app.WebhookInput{URL: "http://127.0.0.1:9/", Events: []string{"*"}}); err != nil {
				t.Fatal(err)
			}
			key := app.Principal{Kind: app.TenantCaller, OrgID: "acme"}
			if _, err := svc.CreateLock(ctx, app.Call{P: key}, 5, app.CreateLockInput{Index: 1, UUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
				t.Fatal(err)
			}
			res, err := svc.RingDoorbell(ctx, app.Call{P: key}, 5, app.RingInput{VisitorName: "Courier"})
			if err != nil {
				t.Fatal(err)
			}
			rows, err := st.Outbox(ctx, es.ConsumerWebhooks, 100)
			if err != nil {
				t.Fatal(err)
			}
			var row *es.OutboxRow
			for i := range rows {
				if rows[i].AggregateID == res.RingID {
					row = &rows[i]
				}
			}
			if row == nil || row.OrgID != "acme" || row.Version != 1 {
				t.Fatalf("no webhook row for the ring among %+v", rows)
			}
			rec, found, err := st.Event(ctx, row.EventSeq)
			if err != nil || !found {
				t.Fatalf("event %d: %v %v", row.EventSeq, found, err)
			}
			env, err := webhook.Build(rec, row.OrgID, "local", "spkey")
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.Marshal(env)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Fatalf("envelope %s does not match upstream's schema: %v", js, err)
			}
			var data map[string]any
			_ = json.Unmarshal(env.Detail.Data, &data)
			if env.DetailType != "DoorbellRang" || env.Source != "spk.api" || env.Detail.PartnerID != "acme" || env.Detail.AggregateType != "doorbell-ring" ||
				data["type"] != "DoorbellRang" || data["ringId"] != res.RingID || data["visitorName"] != "Courier" || data["lockId"] != float64(5) {
				t.Fatalf("envelope: %s", js)
			}
			again, _ := webhook.Build(rec, row.OrgID, "local", "spkey")
			if again.ID != env.ID || len(env.ID) != 36 {
				t.Fatalf("envelope ids %q and %q: want one stable UUID", env.ID, again.ID)
			}
		})
	}
}
