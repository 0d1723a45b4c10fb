package app_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestWebhookReadModelsRebuild: the webhooks table after a history of
// creates, URL changes, verifications, a 410 and a delete is what a
// rebuild from the events gives, and secrets (kept outside the events)
// survive the rebuild.
func TestWebhookReadModelsRebuild(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
			admin := app.Principal{Admin: true, Email: "admin@example.com"}
			if _, err := svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			create := func(url string) app.WebhookAnswer[tenant.WebhookCreated] {
				r, err := svc.CreateWebhook(ctx, app.Call{P: admin}, "acme", app.WebhookInput{URL: url, Events: []string{"LockCreated"}})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			a, bb, c := create("http://127.0.0.1:1/a"), create("http://127.0.0.1:1/b"), create("http://127.0.0.1:1/c")
			if err := svc.RecordVerification(ctx, "acme", a.WebhookID, 1, 204, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.UpdateWebhook(ctx, app.Call{P: admin}, "acme", bb.WebhookID, app.WebhookInput{URL: "http://127.0.0.1:1/b2", Events: []string{"*"}, RotateSecret: true}); err != nil {
				t.Fatal(err)
			}
			if err := svc.DisableWebhook(ctx, "acme", c.WebhookID, 410, "gone", 0); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.DeleteWebhook(ctx, app.Call{P: admin}, "acme", a.WebhookID); err != nil {
				t.Fatal(err)
			}
			hooks, total, err := svc.Webhooks(ctx, admin, "acme", 0, 0)
			if err != nil || total != 2 || hooks[0].ID != bb.WebhookID || hooks[0].Status != tenant.StatusPending || hooks[1].Status != tenant.StatusDisabled {
				t.Fatalf("webhooks: %v %d %+v", err, total, hooks)
			}
			secret, previous, _, err := svc.WebhookSecret(ctx, admin, "acme", bb.WebhookID)
			if err != nil || secret == bb.Secret || previous != bb.Secret {
				t.Fatalf("rotated secret: %v new==old %v previous==old %v", err, secret == bb.Secret, previous == bb.Secret)
			}
			before, err := st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
			after, err := st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("rebuild differs (-live +rebuilt):\n%s", diff)
			}
			if s2, _, _, err := svc.WebhookSecret(ctx, admin, "acme", bb.WebhookID); err != nil || s2 != secret {
				t.Fatalf("secret after rebuild: %v", err)
			}
			row, found, err := st.Webhook(ctx, bb.WebhookID)
			if err != nil || !found || row.URL != "http://127.0.0.1:1/b2" || row.Status != tenant.StatusPending || !row.Matches("KeyAdded") {
				t.Fatalf("webhooks row after rebuild: %v %v %+v", err, found, row)
			}
		})
	}
}

// TestWebhookSameSecretIsNoRotation: PUT with the secret the webhook has
// records nothing and keeps no "previous" secret signing.
func TestWebhookSameSecretIsNoRotation(t *testing.T) {
	ctx := context.Background()
	st := testenv.OpenStore(t, testenv.SQLite)
	svc := app.New(st, app.Options{Safety: netsafe.Policy{AllowHTTP: true, AllowPrivate: true}}, testenv.Discard())
	admin := app.Principal{Admin: true, Email: "admin@example.com"}
	if _, err := svc.RegisterTenant(ctx, app.Call{P: admin}, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	r, err := svc.CreateWebhook(ctx, app.Call{P: admin}, "acme", app.WebhookInput{URL: "http://127.0.0.1:1/a"})
	if err != nil {
		t.Fatal(err)
	}
	same, err := svc.UpdateWebhook(ctx, app.Call{P: admin}, "acme", r.WebhookID, app.WebhookInput{Secret: r.Secret})
	if err != nil || same.Event != nil || same.Version != r.Version || same.Secret != "" {
		t.Fatalf("same secret: %v %+v", err, same)
	}
	w, err := svc.Webhook(ctx, admin, "acme", r.WebhookID)
	if err != nil || w.SecretRotatedAt != "" {
		t.Fatalf("webhook after same secret: %v %+v", err, w)
	}
	if sec, prev, _, err := svc.WebhookSecret(ctx, admin, "acme", r.WebhookID); err != nil || sec != r.Secret || prev != "" {
		t.Fatalf("secrets: %v prev=%q", err, prev)
	}
}
