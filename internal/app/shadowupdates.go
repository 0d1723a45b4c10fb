package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// Partner Shadow Updates: every update a lock's device makes to its
// classic shadow or to one of its key pages, once the gateway accepted it,
// is sent to the lock's tenant as upstream's "Shadow Update" (source
// spk.iot.shadow), through the partner webhook consumer like every event.
// Its outbox row is written in the update's transaction, so an update
// that rolls back sends nothing and a committed one is delivered at least
// once; only a tenant with a webhook subscribed to "Shadow Update" (or
// "*") gets a row.
//
// spkey's own desired-state writes (the device commands, and the clearing
// of finished requests) send none: the partner already gets the command's
// event (KeyAdded, LockOpenRequested, LockActionUpdated, ...), and the
// device's next report carries the desired state in its Shadow Update. So
// there is at most one Shadow Update per device update, and the queue of
// each webhook is bounded by the fan-out's window like any event's. A get
// is not an update and sends nothing.

// shadowUpdated queues the Shadow Update of doc, shadow shadowName of
// lock st's thing after a device update accepted in tx (ShadowSeen calls
// it for updates of a lock's classic shadow and key pages only), for the
// lock's tenant. A lock without a tenant, a tenant without a matching
// webhook: nothing.
func (s *Service) shadowUpdated(ctx context.Context, tx *store.Tx, st lock.State, thing, shadowName string, doc shadow.Document, now time.Time) error {
	if st.OrgID == "" {
		return nil
	}
	d, err := webhook.NewShadowDetail(st.OrgID, thing, shadowName, doc)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("shadow update of %s: %w", thing, err)
	}
	_, err = tx.EnqueueShadowUpdate(ctx, st.OrgID, webhook.ShadowAggregateID(thing, shadowName), doc.Version, payload, now.UTC().Format(domain.TimeLayout))
	return err
}
