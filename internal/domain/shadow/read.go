package shadow

import "unicode/utf8"

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

// readToken extracts the clientToken of a /get or /delete request. AWS
// ignores these requests' content (they are often empty), so a payload that
// is not a JSON object simply has no token.
func readToken(request []byte, now int64, limits Limits) (string, *Error) {
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
