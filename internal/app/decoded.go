package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
)

// decodedStates keeps, per aggregate, the state last decoded from its
// committed snapshot by a hot query (readShared), so that the residents
// list decodes a lock's JSON once per change instead of once per request
// (it was a third of the handler's CPU). An entry is looked up by the
// snapshot's bytes: the same bytes decode to the same state, so a changed,
// rebuilt or erased snapshot is never answered from an older entry.
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
	if v, ok := s.decoded.get(a.typ, id, snap.State); ok {
		return v.(S), true, nil
	}
	if err := json.Unmarshal(snap.State, &state); err != nil {
		return state, false, fmt.Errorf("decode %s/%s state: %w", a.typ, id, err)
	}
	s.decoded.put(a.typ, id, snap.State, state)
	return state, true, nil
}
