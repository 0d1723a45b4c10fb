package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// ShadowSource is the envelope source of a Shadow Update.
const ShadowSource = "spk.iot.shadow"

// ShadowDetail is the detail of upstream's Shadow Update: the fields sit
// on the detail itself (no data wrapper) and the four states are JSON
// text, to be parsed again. ShadowName is ours: the named shadow (a lock's
// key page), absent for the classic shadow (upstream's schema allows
// further fields).
type ShadowDetail struct {
	PartnerID     *string `json:"partnerId"`
	ThingName     string  `json:"thingName"`
	ShadowName    string  `json:"shadowName,omitempty"`
	Version       int64   `json:"version"`
	DesiredState  string  `json:"desiredState"`
	ReportedState string  `json:"reportedState"`
	DeltaState    string  `json:"deltaState"`
	Metadata      string  `json:"metadata"`
}

// NewShadowDetail renders the Shadow Update of doc, shadow shadowName
// ("" for the classic one) of thing, for partner orgID ("" for none: null).
// An absent section is "{}", and so is the delta of a shadow in sync.
func NewShadowDetail(orgID, thing, shadowName string, doc shadow.Document) (ShadowDetail, error) {
	text := func(v any) (string, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("shadow update of %s: %w", thing, err)
		}
		return string(b), nil
	}
	orEmpty := func(m map[string]any) map[string]any {
		if m == nil {
			return map[string]any{}
		}
		return m
	}
	d := ShadowDetail{ThingName: thing, ShadowName: shadowName, Version: doc.Version}
	if orgID != "" {
		d.PartnerID = &orgID
	}
	var err error
	if d.DesiredState, err = text(orEmpty(doc.Desired)); err != nil {
		return d, err
	}
	if d.ReportedState, err = text(orEmpty(doc.Reported)); err != nil {
		return d, err
	}
	if d.DeltaState, err = text(orEmpty(shadow.Delta(doc.Desired, doc.Reported))); err != nil {
		return d, err
	}
	d.Metadata, err = text(doc.Metadata)
	return d, err
}

// ShadowAggregateID is the aggregate_id of the outbox rows of a Shadow
// Update of shadow shadowName of thing: thing, or thing/shadowName.
func ShadowAggregateID(thing, shadowName string) string {
	if shadowName == "" {
		return thing
	}
	return thing + "/" + shadowName
}

// ShadowEnvelope is the envelope of a Shadow Update.
type ShadowEnvelope struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Account    string          `json:"account"`
	Version    string          `json:"version"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// BuildShadow returns the envelope of the Shadow Update of outbox row cl
// (its aggregate_id the shadow, its version the shadow's) whose detail is
// payload. Its id is derived from the shadow and its version (EventID of
// the row): every node and every retry send the same.
func BuildShadow(cl store.Claim, payload []byte, region, account string) (ShadowEnvelope, error) {
	at, err := time.Parse(domain.TimeLayout, cl.CreatedAt)
	if err != nil {
		return ShadowEnvelope{}, fmt.Errorf("shadow update time %q: %w", cl.CreatedAt, err)
	}
	if !json.Valid(payload) {
		return ShadowEnvelope{}, errors.New("shadow update detail is not JSON")
	}
	// As EventID of the row: the delivery log shows the same id.
	id := EventID(es.Record{AggregateType: cl.AggregateType, AggregateID: cl.AggregateID, Version: cl.Version})
	return ShadowEnvelope{
		ID: id, Source: ShadowSource,
		DetailType: store.ShadowUpdateType, Time: at.UTC().Format(time.RFC3339), Region: region, Account: account,
		Version: "0", Resources: []string{}, Detail: payload,
	}, nil
}

// sendShadow delivers the Shadow Update of row cl to t.
func (d *Dispatcher) sendShadow(ctx context.Context, t target, cl store.Claim) outbox.Result {
	if !t.hook.Matches(store.ShadowUpdateType) {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("the webhook's event filter no longer matches " + store.ShadowUpdateType)}
	}
	payload, found, err := d.st.OutboxPayload(ctx, cl.ID)
	if err != nil {
		return outbox.Result{Status: store.OutcomeRetry, Err: err}
	}
	if !found {
		// A redelivery copies no payload: there is nothing to send again.
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("shadow update detail not found")}
	}
	env, err := BuildShadow(cl, payload, d.cfg.Region, d.cfg.Account)
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: err}
	}
	return d.deliver(ctx, t, cl, env.ID, env)
}
