package app

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/tenant"
)

// TestStoredAnswers: Idempotency-Key records written as the one catch-all
// answer of before still decode into each command's typed answer, and the
// stored form of a typed answer keeps no raw e-mail address or secret.
func TestStoredAnswers(t *testing.T) {
	old := `{"created":false,"aggregateId":"7","version":3,"event":{"type":"ResidentAdded","data":{"lockId":7,"uuid":"u","timestamp":"t","userId":"x","name":"Ann","email":"a***@example.com"}}}`
	var r ResidentAnswer[lock.ResidentAdded]
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	if r.AggregateID != "7" || r.Version != 3 || r.Event == nil || r.Event.Type != lock.TypeResidentAdded || r.Replayed {
		t.Errorf("decoded %+v", r)
	}
	if b, err := json.Marshal(r); err != nil || string(b) != old {
		t.Errorf("re-encoded %s (%v), want %s", b, err, old)
	}
	r.Email = "ann@example.com"
	if r.forget(); r.Email != "" {
		t.Errorf("stored resident answer keeps the address %q", r.Email)
	}
	if r.markReplayed(); !r.Replayed {
		t.Error("markReplayed does not mark the answer replayed")
	}

	oldHook := `{"created":true,"aggregateId":"acme","version":2,"event":{"type":"WebhookCreated","data":{}},"webhookId":"w1","status":"pending"}`
	var w WebhookAnswer[tenant.WebhookCreated]
	if err := json.Unmarshal([]byte(oldHook), &w); err != nil {
		t.Fatal(err)
	}
	want := WebhookAnswer[tenant.WebhookCreated]{Answer: Answer[tenant.WebhookCreated]{Created: true, AggregateID: "acme", Version: 2,
		Event: &Event[tenant.WebhookCreated]{Type: "WebhookCreated", Data: json.RawMessage(`{}`)}}, WebhookID: "w1", Status: "pending"}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("decoded webhook answer (-want +got):\n%s", diff)
	}
	w.Secret = "whsec_x"
	if w.forget(); w.Secret != "" {
		t.Errorf("stored webhook answer keeps the secret %q", w.Secret)
	}
}
