package shadow

import "unicode/utf8"

// UpdateResult is an accepted update: the new document and the payloads to
// publish on /update/accepted, /update/delta (nil when desired and reported
// do not differ) and /update/documents.
type UpdateResult struct {
	Document  Document
	Accepted  []byte
	Delta     []byte
	Documents []byte
}

// Update applies an /update request to cur at now (Unix seconds), following
// AWS IoT: a field set to null is deleted, "desired": null or
// "reported": null removes the section, objects merge field by field, arrays
// and other values replace; the new version is the previous one plus one
// (a shadow deleted less than DeletedVersionTTL ago continues its numbers).
//
// It returns an *Error, and leaves cur unchanged, when the request is
// refused: 413 when it, or the resulting state, exceeds limits; 415 when it is
// not UTF-8; 400 when it is not JSON, lacks "state", has a state, desired or
// reported that is not an object, a version that is not a non-negative
// integer, a clientToken that is not a string of at most
// limits.MaxClientTokenBytes, a state key other than desired and reported, a
// null inside an array or too deep a nesting; 409 when it carries a version
// other than the current one.
func Update(cur Document, request []byte, now int64, limits Limits) (UpdateResult, *Error) {
	limits = limits.orDefaults()
	req, rerr := parseUpdate(request, now, limits)
	if rerr != nil {
		return UpdateResult{}, rerr
	}
	base := cur.versionBase(now)
	if req.hasVersion && req.version != base {
		return UpdateResult{}, reject(CodeConflict, MsgVersionConflict, now, req.clientToken)
	}

	next := Document{Exists: true, Version: base + 1, Timestamp: now}
	if cur.Exists {
		next.Desired, next.Reported = copyObject(cur.Desired), copyObject(cur.Reported)
		next.Metadata.Desired = copyObject(cur.Metadata.Desired)
		next.Metadata.Reported = copyObject(cur.Metadata.Reported)
	}
	next.Desired, next.Metadata.Desired = applySection(next.Desired, next.Metadata.Desired, req.desired, now)
	next.Reported, next.Metadata.Reported = applySection(next.Reported, next.Metadata.Reported, req.reported, now)
	if stateSize(next) > limits.MaxStateBytes {
		return UpdateResult{}, reject(CodePayloadTooLarge, MsgTooLarge, now, req.clientToken)
	}

	res := UpdateResult{Document: next}
	res.Accepted = mustEncode(responseDoc{
		State:       req.state,
		Metadata:    requestMeta(req.state, now),
		Version:     next.Version,
		Timestamp:   now,
		ClientToken: req.clientToken,
	})
	if delta, meta := deltaWithMeta(next.Desired, next.Reported, next.Metadata.Desired); delta != nil {
		res.Delta = mustEncode(responseDoc{
			State:       delta,
			Metadata:    meta,
			Version:     next.Version,
			Timestamp:   now,
			ClientToken: req.clientToken,
		})
	}
	var previous *fullDoc
	if cur.Exists {
		p := snapshot(cur)
		previous = &p
	}
	res.Documents = mustEncode(documentsDoc{
		Previous:    previous,
		Current:     snapshot(next),
		Timestamp:   now,
		ClientToken: req.clientToken,
	})
	return res, nil
}

// Get answers a /get request for the shadow thing/shadowName ("" for the
// classic shadow) at now: the /get/accepted payload with the desired and
// reported state, their delta (when they differ), the metadata, version,
// timestamp and the request's clientToken.
//
// The request's content is ignored except for a clientToken. It returns a
// 404 *Error when the shadow does not exist (never created or deleted), 400
// when the clientToken is not a string of at most limits.MaxClientTokenBytes
// and 413 when the request exceeds limits.MaxRequestBytes.
func Get(cur Document, thing, shadowName string, request []byte, now int64, limits Limits) ([]byte, *Error) {
	token, rerr := readToken(request, now, limits)
	if rerr != nil {
		return nil, rerr
	}
	if !cur.Exists {
		return nil, reject(CodeNotFound, NotFoundMessage(thing, shadowName), now, token)
	}
	full := snapshot(cur)
	if delta := Delta(cur.Desired, cur.Reported); delta != nil {
		full.State["delta"] = delta
	}
	return mustEncode(responseDoc{
		State:       full.State,
		Metadata:    full.Metadata,
		Version:     cur.Version,
		Timestamp:   now,
		ClientToken: token,
	}), nil
}

// Delete answers a /delete request for the shadow thing/shadowName at now:
// the deleted document, which keeps its version so that a shadow created
// again within DeletedVersionTTL continues it, and the /delete/accepted
// payload {"version","timestamp","clientToken"}.
//
// The request's content is ignored except for a clientToken. It returns a
// 404 *Error when the shadow does not exist, 400 when the clientToken is not
// a string of at most limits.MaxClientTokenBytes and 413 when the request
// exceeds limits.MaxRequestBytes; cur is then unchanged.
func Delete(cur Document, thing, shadowName string, request []byte, now int64, limits Limits) (Document, []byte, *Error) {
	token, rerr := readToken(request, now, limits)
	if rerr != nil {
		return cur, nil, rerr
	}
	if !cur.Exists {
		return cur, nil, reject(CodeNotFound, NotFoundMessage(thing, shadowName), now, token)
	}
	deleted := Document{Version: cur.Version, Timestamp: now, DeletedAt: now}
	payload := mustEncode(struct {
		Version     int64  `json:"version"`
		Timestamp   int64  `json:"timestamp"`
		ClientToken string `json:"clientToken,omitempty"`
	}{cur.Version, now, token})
	return deleted, payload, nil
}

// section is one of desired or reported in a request.
type section struct {
	present bool           // the key was in the request
	fields  map[string]any // nil with present: the section is set to null
}

// applySection merges a request section into a stored one and returns the
// new state and metadata; empty objects left behind are dropped, so a
// section whose fields were all deleted disappears.
func applySection(state, meta map[string]any, s section, now int64) (map[string]any, map[string]any) {
	if !s.present {
		return state, meta
	}
	if s.fields == nil {
		return nil, nil
	}
	if state == nil {
		state, meta = map[string]any{}, map[string]any{}
	}
	if meta == nil {
		meta = map[string]any{} // a stored document without metadata
	}
	mergeObject(state, meta, s.fields, now)
	if len(state) == 0 {
		return nil, nil
	}
	return state, meta
}

// mergeObject applies patch to state (and meta beside it) in place.
func mergeObject(state, meta, patch map[string]any, now int64) {
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
		case map[string]any:
			// A scalar's metadata is an object too ({"timestamp": …}), so
			// the metadata is reused only when the state was an object.
			sub, isObj := state[k].(map[string]any)
			subMeta, isMetaObj := meta[k].(map[string]any)
			if !isObj {
				sub, subMeta = map[string]any{}, map[string]any{}
			} else if !isMetaObj {
				subMeta = map[string]any{}
			}
			mergeObject(sub, subMeta, v, now)
			if len(sub) == 0 {
				delete(state, k)
				delete(meta, k)
				continue
			}
			state[k], meta[k] = sub, subMeta
		default:
			state[k] = copyJSON(v)
			meta[k] = leafMeta(v, now)
		}
	}
}

// requestMeta is the metadata of an /update/accepted payload: a timestamp
// for every field of the request, nulls included.
func requestMeta(state map[string]any, now int64) map[string]any {
	meta := map[string]any{}
	for k, v := range state {
		meta[k] = leafMeta(v, now)
	}
	return meta
}

// stateSize is what counts against MaxStateBytes: the encoded desired and
// reported sections.
func stateSize(d Document) int {
	n := 0
	if d.Desired != nil {
		n += len(mustEncode(d.Desired))
	}
	if d.Reported != nil {
		n += len(mustEncode(d.Reported))
	}
	return n
}

// responseDoc is the /update/accepted, /update/delta and /get/accepted
// payload.
type responseDoc struct {
	State       map[string]any `json:"state"`
	Metadata    map[string]any `json:"metadata"`
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// fullDoc is a whole shadow inside a /update/documents payload.
type fullDoc struct {
	State    map[string]any `json:"state"`
	Metadata map[string]any `json:"metadata"`
	Version  int64          `json:"version"`
}

// documentsDoc is the /update/documents payload; previous is null when the
// shadow did not exist before the update.
type documentsDoc struct {
	Previous    *fullDoc `json:"previous"`
	Current     fullDoc  `json:"current"`
	Timestamp   int64    `json:"timestamp"`
	ClientToken string   `json:"clientToken,omitempty"`
}

// snapshot is d's desired and reported state and metadata, sections present
// only when they are.
func snapshot(d Document) fullDoc {
	state, meta := map[string]any{}, map[string]any{}
	if d.Desired != nil {
		state["desired"], meta["desired"] = d.Desired, d.Metadata.Desired
	}
	if d.Reported != nil {
		state["reported"], meta["reported"] = d.Reported, d.Metadata.Reported
	}
	return fullDoc{State: state, Metadata: meta, Version: d.Version}
}

// readToken extracts the clientToken of a /get or /delete request. AWS
// ignores these requests' content (they are often empty), so a payload that
// is not a JSON object simply has no token.
// RequestToken is the clientToken of request, for an answer built outside
// this package (a 500): "" when request is too large, no JSON object, or
// its clientToken is no string within limits.
func RequestToken(request []byte, limits Limits) string {
	t, _ := readToken(request, 0, limits)
	return t
}

func readToken(request []byte, now int64, limits Limits) (string, *Error) {
	limits = limits.orDefaults()
	if len(request) > limits.MaxRequestBytes {
		return "", reject(CodePayloadTooLarge, MsgTooLarge, now, "")
	}
	if len(request) == 0 || !utf8.Valid(request) {
		return "", nil
	}
	top, ok := decodeObject(request)
	if !ok {
		return "", nil
	}
	token, msg := clientToken(top, limits)
	if msg != "" {
		return "", reject(CodeBadRequest, msg, now, "")
	}
	return token, nil
}
