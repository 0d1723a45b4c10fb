package devices

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
)

// UpdateDesired sets the desired state of the shadow thing/shadowName (""
// for the classic shadow) inside the caller's transaction tx, as an AWS
// update request {"state":{"desired":desired},"clientToken":clientToken}
// at now (Unix seconds) would: it reads the shadow, applies shadow.Update,
// writes the new document expecting the version read and logs the request
// as a command (store.ShadowCommand). A nil or null desired removes the
// desired section; a field set to null in desired is removed.
//
// It returns after, which publishes /update/delta (when desired and
// reported differ) and /update/documents: call it only once the caller's
// transaction has committed, and, since a store.Write job may run twice,
// only the after of the job's last run. Publication failures are logged,
// not returned: the shadow is committed, the device catches up on its next
// get.
//
// It returns a *shadow.Error (find it with errors.As) when the shadow
// rules refuse the update (desired not an object, limits exceeded), an
// error wrapping store.ErrShadowMoved when another writer changed the
// shadow meanwhile (run the transaction again), and the store's other
// errors, wrapped; tx is then unchanged by this call.
func (g *Gateway) UpdateDesired(ctx context.Context, tx *store.Tx, thing, shadowName string, desired json.RawMessage, clientToken string, now int64) (after func(), err error) {
	var req desiredRequest
	req.State.Desired, req.ClientToken = desired, clientToken
	return g.update(ctx, tx, thing, shadowName, req, clientToken, now)
}

// UpdateState is UpdateDesired of both sections: desired and reported
// (neither nil) are merged into the shadow in one update, as a request
// {"state":{"desired":desired,"reported":reported}} would. spkey uses it
// to take a finished request out of both sections at once, so that the
// device need not report it gone.
func (g *Gateway) UpdateState(ctx context.Context, tx *store.Tx, thing, shadowName string, desired, reported json.RawMessage, now int64) (after func(), err error) {
	var req stateRequest
	req.State.Desired, req.State.Reported = desired, reported
	return g.update(ctx, tx, thing, shadowName, req, "", now)
}

// update applies the update request req (encoded) to the shadow inside
// tx; see UpdateDesired.
func (g *Gateway) update(ctx context.Context, tx *store.Tx, thing, shadowName string, req any, clientToken string, now int64) (after func(), err error) {
	request, err := json.Marshal(req)
	if err != nil {
		// Only a desired that is not JSON fails to encode.
		return nil, fmt.Errorf("devices: update desired of %s/%q: %w", thing, shadowName,
			&shadow.Error{Code: shadow.CodeBadRequest, Message: shadow.MsgInvalidJSON, Timestamp: now, ClientToken: clientToken})
	}
	cur, err := loadShadow(ctx, tx, thing, shadowName)
	if err != nil {
		return nil, err
	}
	res, rerr := shadow.Update(cur, request, now, g.cfg.Limits)
	if rerr != nil {
		return nil, fmt.Errorf("devices: update desired of %s/%q: %w", thing, shadowName, rerr)
	}
	stamp := time.Unix(now, 0).UTC().Format(domain.TimeLayout)
	if err := putShadow(ctx, tx, thing, shadowName, res.Document, cur.Version, stamp); err != nil {
		return nil, err
	}
	if err := tx.LogShadowMessage(ctx, thing, store.ShadowCommand, request, stamp); err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	pubs := updateAnswers(thing, shadowName, res, false)
	return func() { g.publish(thing, pubs) }, nil
}

// desiredRequest is the update request UpdateDesired applies and logs.
type desiredRequest struct {
	State struct {
		Desired json.RawMessage `json:"desired"`
	} `json:"state"`
	ClientToken string `json:"clientToken,omitempty"`
}

// stateRequest is the update request UpdateState applies and logs.
type stateRequest struct {
	State struct {
		Desired  json.RawMessage `json:"desired"`
		Reported json.RawMessage `json:"reported"`
	} `json:"state"`
}

// loadShadow reads the shadow thing/shadowName inside tx: the document, or
// the zero Document when the shadow has no row. Its Version is the one
// putShadow must expect (0: no row). It returns the store's error, or an
// error for a stored document that does not decode, wrapped.
func loadShadow(ctx context.Context, tx *store.Tx, thing, shadowName string) (shadow.Document, error) {
	raw, found, err := tx.Shadow(ctx, thing, shadowName)
	if err != nil {
		return shadow.Document{}, fmt.Errorf("devices: %w", err)
	}
	if !found {
		return shadow.Document{}, nil
	}
	doc, err := shadow.Unmarshal(raw)
	if err != nil {
		return shadow.Document{}, fmt.Errorf("devices: shadow %s/%q: %w", thing, shadowName, err)
	}
	return doc, nil
}

// putShadow stores doc as the shadow thing/shadowName, expecting the
// version of the document loadShadow returned. It returns the store's errors, wrapped
// (store.ErrShadowMoved among them).
func putShadow(ctx context.Context, tx *store.Tx, thing, shadowName string, doc shadow.Document, expected int64, stamp string) error {
	b, err := shadow.Marshal(doc)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	if err := tx.PutShadow(ctx, thing, shadowName, b, doc.Version, expected, stamp); err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	return nil
}
