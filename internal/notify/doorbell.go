package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// pgLive is the PostgreSQL notification channel of the live feed between
// nodes; its payload is "node|user,user,...": users whose feed grew.
const pgLive = "spkey_live"

// Delivery is one claimed row with everything a channel needs to send it,
// loaded and checked by the consumer.
type Delivery struct {
	store.Claim
	Event    es.Record       // the event the row is about
	Ring     doorbell.State  // the ring as it is now
	Resident doorbell.Target // the recipient, as the ring named them
	User     store.User      // the recipient's contact details now
}

// Channel sends deliveries of one outbox consumer (e-mail, hook).
type Channel interface {
	// Consumer is the outbox consumer the channel serves.
	Consumer() string
	// Name is the preference channel (user.ChannelEmail, ...).
	Name() string
	// Deliver makes one attempt. It must honour ctx.
	Deliver(ctx context.Context, d Delivery) outbox.Result
}

// deliverer is what the doorbell consumers share.
type deliverer struct {
	st   *store.Store
	hub  *Hub
	log  *slog.Logger
	node string
	now  func() time.Time
}

// Register adds the doorbell's consumers to e: the live feed (each
// claimed batch appended to the residents' feeds in one transaction,
// their streams woken through hub here and on the other nodes) and one
// consumer per channel in chans (the channels the operator configured:
// only those get rows).
func Register(e *outbox.Engine, st *store.Store, hub *Hub, log *slog.Logger, chans ...Channel) {
	d := &deliverer{st: st, hub: hub, log: log, node: e.Node(), now: e.Now}
	live := rows(es.ConsumerDoorbellLive, user.ChannelLive)
	live.DeliverBatch = d.deliverLive
	live.Listen, live.Heard = pgLive, d.heard
	live.Policy = outbox.Policy{Workers: 1}
	e.Register(live)
	for _, c := range chans {
		cons := rows(c.Consumer(), c.Name())
		cons.Deliver = func(ctx context.Context, cl store.Claim) outbox.Result { return d.deliverVia(ctx, c, cl) }
		e.Register(cons)
	}
}

// Rows is the routing alone of the doorbell consumer of channel
// (user.ChannelLive, user.ChannelEmail or user.ChannelHook; the zero
// Consumer for another): a ring gets one row per targeted resident who
// has the channel switched on (and, for e-mail, an address on file); an
// answer or a decline gets one live row per targeted resident.
func Rows(channel string) outbox.Consumer {
	switch channel {
	case user.ChannelLive:
		return rows(es.ConsumerDoorbellLive, channel)
	case user.ChannelEmail:
		return rows(es.ConsumerDoorbellEmail, channel)
	case user.ChannelHook:
		return rows(es.ConsumerDoorbellHook, channel)
	}
	return outbox.Consumer{}
}

func rows(consumer, channel string) outbox.Consumer {
	return outbox.Consumer{Name: consumer, Route: func(ctx context.Context, tx *store.Tx, rec es.Record) ([]string, error) {
		return route(ctx, tx, rec, channel)
	}}
}

// route returns the residents rec is to reach through channel.
func route(ctx context.Context, tx *store.Tx, rec es.Record, channel string) ([]string, error) {
	if rec.AggregateType != doorbell.AggregateType {
		return nil, nil
	}
	switch rec.Type {
	case doorbell.TypeDoorbellRang:
	case doorbell.TypeDoorbellAnswered, doorbell.TypeDoorbellDeclined:
		// Every targeted resident's live stream shows the answer.
		if channel != user.ChannelLive {
			return nil, nil
		}
	default:
		return nil, nil
	}
	snap, found, err := tx.Snapshot(ctx, doorbell.AggregateType, rec.AggregateID)
	if err != nil || !found {
		return nil, err
	}
	var ring doorbell.State
	if err := json.Unmarshal(snap.State, &ring); err != nil {
		return nil, fmt.Errorf("decode ring %s: %w", rec.AggregateID, err)
	}
	var out []string
	for _, t := range ring.Residents {
		prefs, err := userPrefs(ctx, tx, t.UserID)
		if err != nil {
			return nil, err
		}
		if !prefs.Enabled(channel) {
			continue
		}
		if channel == user.ChannelEmail {
			u, found, err := tx.User(ctx, store.ByID, t.UserID)
			if err != nil {
				return nil, err
			}
			if !found || u.Email == "" {
				continue
			}
		}
		out = append(out, t.UserID)
	}
	return out, nil
}

// userPrefs reads a user's notification preferences inside tx (the
// defaults for a user without a stream).
func userPrefs(ctx context.Context, tx *store.Tx, userID string) (user.Preferences, error) {
	snap, found, err := tx.Snapshot(ctx, user.AggregateType, userID)
	if err != nil {
		return user.Preferences{}, err
	}
	var u user.State
	if found {
		if err := json.Unmarshal(snap.State, &u); err != nil {
			return user.Preferences{}, fmt.Errorf("decode %s/%s state: %w", user.AggregateType, userID, err)
		}
	}
	return u.Prefs(), nil
}

// heard wakes this node's streams of the users another node's live
// delivery named.
func (d *deliverer) heard(payload string) {
	node, users, _ := strings.Cut(payload, "|")
	if node == d.node {
		return // this node woke its streams already
	}
	for _, u := range strings.Split(users, ",") {
		d.hub.Publish(u)
	}
}
