package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// updateRequest is a parsed and validated /update request.
type updateRequest struct {
	state       map[string]any // the request's state, echoed in /update/accepted
	desired     section
	reported    section
	clientToken string
	version     int64
	hasVersion  bool
}

// parseUpdate validates an /update payload; see Update for the rejections.
func parseUpdate(request []byte, now int64, limits Limits) (updateRequest, *Error) {
	var req updateRequest
	if len(request) > limits.MaxRequestBytes {
		return req, reject(CodePayloadTooLarge, MsgTooLarge, now, "")
	}
	if !utf8.Valid(request) {
		return req, reject(CodeUnsupportedMediaType, MsgUnsupportedEncode, now, "")
	}
	top, ok := decodeObject(request)
	if !ok {
		return req, reject(CodeBadRequest, MsgInvalidJSON, now, "")
	}
	token, terr := clientToken(top, limits)
	if terr != "" {
		return req, reject(CodeBadRequest, terr, now, "")
	}
	req.clientToken = token
	fail := func(code int, msg string) (updateRequest, *Error) {
		return updateRequest{}, reject(code, msg, now, token)
	}

	if v, ok := top["version"]; ok && v != nil {
		n, isNum := v.(json.Number)
		if !isNum {
			return fail(CodeBadRequest, MsgInvalidVersion)
		}
		i, err := n.Int64()
		if err != nil || i < 0 {
			return fail(CodeBadRequest, MsgInvalidVersion)
		}
		req.version, req.hasVersion = i, true
	}

	rawState, ok := top["state"]
	if !ok {
		return fail(CodeBadRequest, MsgMissingState)
	}
	if rawState == nil {
		// AWS: setting the state to null empties the shadow without deleting it.
		rawState = map[string]any{"desired": nil, "reported": nil}
	}
	state, ok := rawState.(map[string]any)
	if !ok {
		return fail(CodeBadRequest, MsgStateNotObject)
	}
	req.state = state
	for k := range state {
		if k != "desired" && k != "reported" {
			return fail(CodeBadRequest, MsgInvalidNode)
		}
	}
	var msg string
	if req.desired, msg = parseSection(state, "desired", MsgDesiredNotObject, limits); msg != "" {
		return fail(CodeBadRequest, msg)
	}
	if req.reported, msg = parseSection(state, "reported", MsgReportedNotObject, limits); msg != "" {
		return fail(CodeBadRequest, msg)
	}
	return req, nil
}

// parseSection reads state[key]; it returns the rejection message when the
// section is not an object or null, holds a null in an array or nests deeper
// than limits.MaxDepth.
func parseSection(state map[string]any, key, notObject string, limits Limits) (section, string) {
	raw, ok := state[key]
	if !ok {
		return section{}, ""
	}
	if raw == nil {
		return section{present: true}, ""
	}
	fields, ok := raw.(map[string]any)
	if !ok {
		return section{}, notObject
	}
	if hasNullInArray(fields, false) {
		return section{}, MsgNullInArray
	}
	if depth(fields) > limits.MaxDepth {
		return section{}, fmt.Sprintf("JSON contains too many levels of nesting; maximum is %d", limits.MaxDepth)
	}
	return section{present: true, fields: fields}, ""
}

// clientToken returns the request's clientToken ("" when absent or null) or
// the rejection message when it is not a string of at most
// limits.MaxClientTokenBytes.
func clientToken(top map[string]any, limits Limits) (string, string) {
	v, ok := top["clientToken"]
	if !ok || v == nil {
		return "", ""
	}
	s, ok := v.(string)
	if !ok || len(s) > limits.MaxClientTokenBytes {
		return "", MsgInvalidClientToken
	}
	return s, ""
}

// decodeObject decodes a payload that must be exactly one JSON object,
// keeping numbers as json.Number.
func decodeObject(b []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data after the object
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// depth is the nesting of v: 1 for an object or array of scalars, plus one
// per level inside.
func depth(v any) int {
	inner := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			inner = max(inner, depth(e))
		}
	case []any:
		for _, e := range v {
			inner = max(inner, depth(e))
		}
	default:
		return 0
	}
	return 1 + inner
}

// hasNullInArray reports whether an array anywhere in v holds a null.
func hasNullInArray(v any, inArray bool) bool {
	switch v := v.(type) {
	case nil:
		return inArray
	case map[string]any:
		for _, e := range v {
			if hasNullInArray(e, false) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasNullInArray(e, true) {
				return true
			}
		}
	}
	return false
}

// The error codes AWS IoT's Device Shadow service answers with (HTTP status
// codes, carried in the "code" field of a /rejected payload).
const (
	CodeBadRequest           = 400
	CodeNotFound             = 404
	CodeConflict             = 409
	CodePayloadTooLarge      = 413
	CodeUnsupportedMediaType = 415
	CodeInternal             = 500
)

// AWS's wording for the rejections this package produces.
const (
	MsgInvalidJSON        = "Invalid JSON"
	MsgMissingState       = "Missing required node: state"
	MsgStateNotObject     = "State node must be an object"
	MsgDesiredNotObject   = "Desired node must be an object"
	MsgReportedNotObject  = "Reported node must be an object"
	MsgInvalidVersion     = "Invalid version"
	MsgInvalidClientToken = "Invalid clientToken"
	MsgInvalidNode        = "State contains an invalid node"
	MsgVersionConflict    = "Version conflict"
	MsgTooLarge           = "The payload exceeds the maximum size allowed"
	// MsgInternal answers a request the service could not process (500),
	// which callers of this package produce (a store failure).
	MsgInternal          = "Internal service failure"
	MsgUnsupportedEncode = "Unsupported documented encoding; supported encoding is UTF-8"
	// MsgNullInArray is not AWS wording: AWS documents that arrays with null
	// elements are rejected but not the message.
	MsgNullInArray = "Arrays can't have null values"
)

// Error is a rejected shadow request: the code and message of AWS's error
// response document, when it was answered and the request's clientToken.
type Error struct {
	Code        int
	Message     string
	Timestamp   int64
	ClientToken string
}

// Error returns the code and message.
func (e *Error) Error() string { return fmt.Sprintf("shadow %d: %s", e.Code, e.Message) }

// Payload returns the /rejected payload:
// {"code":…,"message":…,"timestamp":…,"clientToken":…}, clientToken only
// when the request carried one.
func (e *Error) Payload() []byte {
	return mustEncode(struct {
		Code        int    `json:"code"`
		Message     string `json:"message"`
		Timestamp   int64  `json:"timestamp"`
		ClientToken string `json:"clientToken,omitempty"`
	}{e.Code, e.Message, e.Timestamp, e.ClientToken})
}

func reject(code int, msg string, now int64, token string) *Error {
	return &Error{Code: code, Message: msg, Timestamp: now, ClientToken: token}
}

// NotFoundMessage is AWS's 404 message for a missing shadow: the classic
// shadow is named by its thing, a named shadow by "thing~shadow".
func NotFoundMessage(thing, shadowName string) string {
	name := thing
	if shadowName != "" {
		name = thing + "~" + shadowName
	}
	return fmt.Sprintf("No shadow exists with name: '%s'", name)
}
