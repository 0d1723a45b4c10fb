package devices

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
)

// loadShadow reads the shadow thing/shadowName inside tx: the document (the
// zero Document when the shadow has no row) and the version PutShadow must
// expect (0 for no row). It returns the store's error, or an error for a
// stored document that does not decode, wrapped.
func loadShadow(ctx context.Context, tx *store.Tx, thing, shadowName string) (shadow.Document, int64, error) {
	raw, found, err := tx.Shadow(ctx, thing, shadowName)
	if err != nil {
		return shadow.Document{}, 0, fmt.Errorf("devices: %w", err)
	}
	if !found {
		return shadow.Document{}, 0, nil
	}
	doc, err := shadow.Unmarshal(raw)
	if err != nil {
		return shadow.Document{}, 0, fmt.Errorf("devices: shadow %s/%q: %w", thing, shadowName, err)
	}
	return doc, doc.Version, nil
}

// putShadow stores doc as the shadow thing/shadowName, expecting the
// version loadShadow returned. It returns the store's errors, wrapped
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

// requestToken is the clientToken of a request, for an answer the shadow
// package did not build (a 500): "" when the payload is no JSON object or
// its clientToken is no string within limits.
func requestToken(payload []byte, limits shadow.Limits) string {
	d := shadow.DefaultLimits()
	maxToken, maxRequest := limits.MaxClientTokenBytes, limits.MaxRequestBytes
	if maxToken == 0 {
		maxToken = d.MaxClientTokenBytes
	}
	if maxRequest == 0 {
		maxRequest = d.MaxRequestBytes
	}
	if len(payload) > maxRequest {
		return ""
	}
	var req struct {
		ClientToken any `json:"clientToken"`
	}
	if json.Unmarshal(payload, &req) != nil {
		return ""
	}
	s, ok := req.ClientToken.(string)
	if !ok || len(s) > maxToken {
		return ""
	}
	return s
}
