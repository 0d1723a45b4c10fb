package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
)

// decodedStates keeps, per aggregate, the state last decoded from (or
// encoded to) its snapshot, so that the residents list and the commands
// on a lock decode its JSON once per change instead of once per request
// (a third of the residents handler's CPU; a tenth of a resident write's
// time in the writer). An entry is looked up by the snapshot's bytes: the
// same bytes decode to the same state, so a changed, rebuilt or erased
// snapshot is never answered from an older entry, and an entry written by
// a transaction that then rolled back is still a true decoding of its
// bytes. It is content-addressed, hence one for the process (states).
type decodedStates struct {
	m sync.Map // [2]string{type, id} -> *decodedState
	n atomic.Int64
}

type decodedState struct {
	raw   []byte
	state any
}

// maxDecoded bounds the entries; past it the cache starts over.
const maxDecoded = 10_000

// states holds the shared states of the aggregates registered as shared
// (aggregate.shared) and those read by readShared.
var states decodedStates

func (d *decodedStates) get(typ, id string, raw []byte) (any, bool) {
	v, ok := d.m.Load([2]string{typ, id})
	if !ok {
		return nil, false
	}
	e := v.(*decodedState)
	if !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	return e.state, true
}

func (d *decodedStates) put(typ, id string, raw []byte, state any) {
	if d.n.Load() >= maxDecoded {
		d.m.Clear()
		d.n.Store(0)
	}
	if _, loaded := d.m.Swap([2]string{typ, id}, &decodedState{raw: raw, state: state}); !loaded {
		d.n.Add(1)
	}
}

// readShared is read for queries that only look at the state: the state
// it returns may be shared with other callers and must not be modified
// (nor any slice or map in it).
func readShared[S any](ctx context.Context, s *Service, a aggregate[S], id string) (S, bool, error) {
	var state S
	snap, found, err := s.st.Snapshot(ctx, a.typ, id)
	if err != nil || !found {
		return state, false, err
	}
	state, err = decodeState(a, id, snap.State, true)
	return state, err == nil, err
}

// decodeState decodes raw, the state of aggregate a's stream id. A shared
// state (share) is taken from and kept in states.
func decodeState[S any](a aggregate[S], id string, raw []byte, share bool) (S, error) {
	var state S
	if share {
		if v, ok := states.get(a.typ, id, raw); ok {
			return v.(S), nil
		}
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		return state, fmt.Errorf("decode %s/%s state: %w", a.typ, id, err)
	}
	if share {
		states.put(a.typ, id, raw, state)
	}
	return state, nil
}
