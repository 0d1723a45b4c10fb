package app

import (
	"context"
	"encoding/json"

	"github.com/spkey-dev/spkey/internal/es"

	"github.com/spkey-dev/spkey/internal/store"
)

// userVault reads the user vault, the store of people's addresses (PII):
// a store.Store outside a transaction, a store.Tx inside one.
type userVault interface {
	// User finds the user whose column by equals key.
	User(ctx context.Context, by store.UserBy, key string) (store.User, bool, error)
	// UserStanding says what ties userID to tenant orgID.
	UserStanding(ctx context.Context, userID, orgID string) (store.Standing, error)
}

var (
	_ userVault = (*store.Store)(nil)
	_ userVault = (*store.Tx)(nil)
)

// eventTx is the event store inside one write transaction, as the command
// path (load, save) uses it: a stream's snapshot, and an append with its
// expected version (which also runs the projections and the outbox
// routing). store.Tx implements it.
type eventTx interface {
	// Snapshot returns the stored state of one aggregate; found is false
	// when it has no events yet.
	Snapshot(ctx context.Context, aggType, aggID string) (es.Snapshot, bool, error)
	es.Appender
}

// eventReader reads committed snapshots outside a transaction (read).
// store.Store implements it.
type eventReader interface {
	Snapshot(ctx context.Context, aggType, aggID string) (es.Snapshot, bool, error)
}

var (
	_ eventTx     = (*store.Tx)(nil)
	_ eventReader = (*store.Store)(nil)
)

// shadowLog reads a device's shadow message log outside a transaction:
// up to limit messages per direction, newest first, and how many the log
// holds in both directions. store.Store implements it.
type shadowLog interface {
	ShadowMessages(ctx context.Context, thing string, limit int) (command, status []store.ShadowMessage, total int, err error)
}

var _ shadowLog = (*store.Store)(nil)

// FreshReads marks ctx as one request's, once, where the request starts:
// its reads may then use the node's read cache, which on PostgreSQL first
// waits (once per request) until every write answered before, on any node,
// is reflected in it. Reads under a context without it go to the database
// on PostgreSQL.
func FreshReads(ctx context.Context) context.Context { return store.WithFreshReads(ctx) }

// DeviceShadows is the device gateway as the device commands use it:
// internal/devices.Gateway implements it.
type DeviceShadows interface {
	// UpdateDesired merges desired into the desired section of shadow
	// shadowName ("" for the classic shadow) of thing inside tx, echoing
	// clientToken, at now (Unix seconds). It returns what publishes the
	// change once tx has committed, a *shadow.Error when the shadow rules
	// refuse it, or the store's error.
	UpdateDesired(ctx context.Context, tx *store.Tx, thing, shadowName string, desired json.RawMessage, clientToken string, now int64) (after func(), err error)
	// UpdateState merges desired and reported into shadow shadowName of
	// thing in one update inside tx, at now; errors as UpdateDesired.
	UpdateState(ctx context.Context, tx *store.Tx, thing, shadowName string, desired, reported json.RawMessage, now int64) (after func(), err error)
	// Online reports whether thing is connected.
	Online(thing string) bool
}
