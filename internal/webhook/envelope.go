// Package webhook delivers stored events to partners: upstream's
// EventBridge-style envelope, signed (Standard Webhooks) and retried from
// the outbox, and the verification of a webhook's URL.
package webhook

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
)

// Source is the envelope source of every event spkey sends to partners.
const Source = "spk.api"

// Envelope is upstream's webhook envelope.
type Envelope struct {
	ID         string   `json:"id"`
	Source     string   `json:"source"`
	DetailType string   `json:"detail-type"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Account    string   `json:"account"`
	Version    string   `json:"version"`
	Resources  []string `json:"resources"`
	Detail     Detail   `json:"detail"`
}

// Detail is the domain-event part of the envelope.
type Detail struct {
	PartnerID     string          `json:"partnerId"`
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Version       int64           `json:"version"`
	Timestamp     int64           `json:"timestamp"` // epoch milliseconds
	Data          json.RawMessage `json:"data"`      // {type, ...event fields}
}

// Build returns the envelope of rec for partner orgID. Its id is derived
// from the stream position (type, id, version), so every node and every
// retry produce the same id: the receiver's deduplication key. region and
// account fill the EventBridge fields upstream sends. It returns an error
// for a record whose timestamp or payload cannot be read.
func Build(rec es.Record, orgID, region, account string) (Envelope, error) {
	ts, err := time.Parse(domain.TimeLayout, rec.Timestamp)
	if err != nil {
		return Envelope{}, fmt.Errorf("event timestamp %q: %w", rec.Timestamp, err)
	}
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(rec.Data))
	dec.UseNumber() // large ids stay exact
	if err := dec.Decode(&fields); err != nil {
		return Envelope{}, fmt.Errorf("decode %s: %w", rec.Type, err)
	}
	fields["type"] = rec.Type
	data, err := json.Marshal(fields)
	if err != nil {
		return Envelope{}, err
	}
	// Upstream names aggregate types in lower case (lock, user, hub, ...),
	// as the store does.
	aggType := rec.AggregateType
	return Envelope{
		ID: EventID(rec), Source: Source, DetailType: rec.Type, Time: ts.UTC().Format(time.RFC3339),
		Region: region, Account: account, Version: "0", Resources: []string{},
		Detail: Detail{PartnerID: orgID, AggregateType: aggType, AggregateID: rec.AggregateID, Version: rec.Version, Timestamp: ts.UnixMilli(), Data: data},
	}, nil
}

// EventID is the stable UUID (name-based, SHA-1, RFC 9562 version 5 layout)
// of one stored event.
func EventID(rec es.Record) string {
	h := sha1.Sum([]byte(fmt.Sprintf("spkey:%s/%s/%d", rec.AggregateType, rec.AggregateID, rec.Version)))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// sign sets the Standard Webhooks headers of a delivery: webhook-id,
// webhook-timestamp (now, in Unix seconds) and webhook-signature, with one
// signature per secret given (the current one and, while a rotation
// overlaps, the previous one), space-separated as the specification allows.
// Empty secrets are skipped; no secret, no webhook-signature header.
//
// The standard-webhooks library signs with one secret at a time, so the
// joining of the rotation's two signatures is ours. A partner's secret is
// always "whsec_" and the base64 of 24 to 64 bytes (app checks it before
// storing it); the library decodes it as the specification says.
func sign(h http.Header, id string, now time.Time, body []byte, secrets ...string) error {
	var sigs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if !strings.HasPrefix(s, "whsec_") {
			return errors.New(`webhook secret: not a "whsec_" secret`)
		}
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil || s == "whsec_" {
			return errors.New(`webhook secret: after "whsec_" must come the key in standard base64`)
		}
		sig, err := wh.Sign(id, now, body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	if len(sigs) > 0 {
		h.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(sigs, " "))
	}
	return nil
}
