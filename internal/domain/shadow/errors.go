package shadow

import "fmt"

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
	MsgUnsupportedEncode  = "Unsupported documented encoding; supported encoding is UTF-8"
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
