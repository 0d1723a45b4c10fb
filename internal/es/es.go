// Package es is the event-store contract: the stored record, the typed
// conflict error, and the small interface every backend implements. The
// conformance suite in package estest holds every backend to it.
package es

import (
	"context"
	"encoding/json"
	"fmt"
)

// Record is one stored event, as upstream stores it:
// {aggregateType, aggregateId, version, type, timestamp, orgId, event}.
type Record struct {
	Seq           int64           `json:"-"` // global position, assigned by the store
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Version       int64           `json:"version"`
	Type          string          `json:"type"`
	Timestamp     string          `json:"timestamp"`
	OrgID         string          `json:"orgId"`
	Data          json.RawMessage `json:"event"`
}

// ConflictError reports that a stream was not at the expected version when
// an append was tried: somebody else appended first. Callers re-run their
// decide step.
type ConflictError struct {
	AggregateType, AggregateID string
	Expected                   int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("es: conflict on %s/%s: expected version %d", e.AggregateType, e.AggregateID, e.Expected)
}

// Snapshot is the folded state of one aggregate as of Version, kept as a
// read model beside the events so a command does not replay its stream.
type Snapshot struct {
	AggregateType string
	AggregateID   string
	Version       int64
	OrgID         string
	State         json.RawMessage
	CreatedAt     string
	UpdatedAt     string
}

// Appender writes events. Append stores recs (one stream, versions
// expected+1, expected+2, ...) together with the stream's new snapshot and
// outbox rows, atomically. It returns *ConflictError when the stream is not
// at version expected.
type Appender interface {
	Append(ctx context.Context, expected int64, snap Snapshot, recs []Record) error
}

// Store is the event-store contract every backend implements.
type Store interface {
	// Update runs fn in one write transaction: everything fn appends or
	// writes commits together or not at all. fn's error is returned as is.
	Update(ctx context.Context, fn func(ctx context.Context, tx Appender) error) error
	// Stream returns the records of one stream with version > after, in
	// version order, at most limit (0 = all).
	Stream(ctx context.Context, aggType, aggID string, after int64, limit int) ([]Record, error)
	// StreamLen returns the current version of a stream (0 when empty).
	StreamLen(ctx context.Context, aggType, aggID string) (int64, error)
	// Outbox returns the pending outbox rows of consumer, oldest first.
	Outbox(ctx context.Context, consumer string, limit int) ([]OutboxRow, error)
}

// OutboxRow is one unit of work for a consumer, written in the same
// transaction as its event.
type OutboxRow struct {
	ID            int64
	Consumer      string
	EventSeq      int64
	AggregateType string
	AggregateID   string
	Version       int64
	OrgID         string
	// Target is the recipient a row is meant for (a user id for doorbell
	// notifications), or empty.
	Target string
}

// ConsumerWebhooks is the outbox consumer for partner webhook deliveries:
// it gets one row per event of an aggregate that belongs to a tenant.
const ConsumerWebhooks = "webhooks"

// The partner webhook consumers downstream of ConsumerWebhooks: one row
// per event and matching subscription (Target = the webhook id), and one
// per verification request.
const (
	ConsumerWebhookSend   = "webhook.send"
	ConsumerWebhookVerify = "webhook.verify"
)

// The doorbell notification consumers: one row per targeted resident per
// channel, Target being the resident's user id.
const (
	ConsumerDoorbellLive  = "doorbell.live"
	ConsumerDoorbellEmail = "doorbell.email"
	ConsumerDoorbellHook  = "doorbell.hook"
)
