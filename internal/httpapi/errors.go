package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/spkey-dev/spkey/internal/domain"
)

// APIError is the one error envelope of every route:
// {"error","message","code","details":[{"field","message"}]}, plus
// "success": false on command routes and upstream's "errors" list on the
// 404s of query routes.
type APIError struct {
	Success *bool               `json:"success,omitempty"`
	Err     string              `json:"error"`
	Message string              `json:"message"`
	Code    int                 `json:"code"`
	Details []domain.FieldError `json:"details" nullable:"false"`
	Errors  []legacyError       `json:"errors,omitempty" nullable:"false"`
	headers http.Header         // sent with the answer (huma.HeadersError)
}

type legacyError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Message }

// GetHeaders implements huma.HeadersError (Retry-After of a 429).
func (e *APIError) GetHeaders() http.Header {
	if e.headers == nil {
		e.headers = http.Header{}
	}
	return e.headers
}

// GetStatus implements huma.StatusError.
func (e *APIError) GetStatus() int { return e.Code }

func newAPIError(status int, msg string, details []domain.FieldError) *APIError {
	if details == nil {
		details = []domain.FieldError{}
	}
	return &APIError{Err: http.StatusText(status), Message: msg, Code: status, Details: details}
}

// statusOf is the one table from domain error codes to HTTP statuses.
var statusOf = map[domain.Code]int{
	domain.Invalid:       http.StatusBadRequest,
	domain.NotFound:      http.StatusNotFound,
	domain.Conflict:      http.StatusConflict,
	domain.Unauthorized:  http.StatusUnauthorized,
	domain.Forbidden:     http.StatusForbidden,
	domain.Unprocessable: http.StatusUnprocessableEntity,
	domain.TooMany:       http.StatusTooManyRequests,
	domain.BadGateway:    http.StatusBadGateway,
	domain.Unavailable:   http.StatusServiceUnavailable,
	domain.Internal:      http.StatusInternalServerError,
}

// toAPIError turns any error into the envelope. Domain errors keep their
// client-safe message; everything else is logged with the request id and
// answered with a generic 500.
func toAPIError(ctx context.Context, log *slog.Logger, err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var de *domain.Error
	if errors.As(err, &de) {
		st := statusOf[de.Code]
		if st == 0 || st == http.StatusInternalServerError {
			log.ErrorContext(ctx, "request failed", "request_id", requestID(ctx), "err", err)
			return newAPIError(http.StatusInternalServerError, "Internal server error", nil)
		}
		ae := newAPIError(st, de.Message, de.Details)
		if de.RetryAfter > 0 {
			// Whole seconds, rounded up.
			ae.headers = http.Header{"Retry-After": {strconv.FormatInt(int64((de.RetryAfter+time.Second-1)/time.Second), 10)}}
		}
		return ae
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		log.WarnContext(ctx, "request cancelled", "request_id", requestID(ctx), "err", err)
		return newAPIError(http.StatusServiceUnavailable, "Request cancelled or timed out", nil)
	}
	log.ErrorContext(ctx, "request failed", "request_id", requestID(ctx), "err", err)
	return newAPIError(http.StatusInternalServerError, "Internal server error", nil)
}

var requiredRE = regexp.MustCompile(`^expected required property (.+) to be present$`)

// fieldError turns one of huma's error details into ours: the field is the
// member's path in the body (or the parameter's name), also for a missing
// required member (huma reports it at the enclosing object) and for a value
// our JSON decoder refused.
func fieldError(loc, msg string) domain.FieldError {
	field := loc
	for _, p := range []string{"body.", "path.", "query.", "header."} {
		field = strings.TrimPrefix(field, p)
	}
	if field == "body" {
		field = ""
	}
	if m := requiredRE.FindStringSubmatch(msg); m != nil {
		if field != "" {
			field += "."
		}
		return domain.FieldError{Field: field + m[1], Message: field + m[1] + " is required"}
	}
	if f, text, ok := splitBodyErr(msg); ok && field == "" {
		return domain.FieldError{Field: f, Message: f + " " + text}
	}
	return domain.FieldError{Field: field, Message: plain(msg)}
}

// plain keeps Go's type names out of a message: encoding/json's "cannot
// unmarshal ... into Go struct field .x of type int64" becomes a plain
// sentence (our decoder reports such values itself; this is the net).
func plain(msg string) string {
	if strings.Contains(msg, "Go struct field") || strings.Contains(msg, "Go value of type") {
		return "a value in the body has the wrong type or is out of range"
	}
	return msg
}

// hookHumaErrors makes huma's own errors (validation, bad JSON, body too
// large) use our envelope and upstream's 400 instead of 422/413. huma
// exposes this hook only as a package variable; it is set once, the same
// way, by every server.
func hookHumaErrors() {
	// Member names match exactly: "Email" is not "email" (see jsonFormat).
	huma.ValidateStrictCasing = true
	huma.NewErrorWithContext = func(_ huma.Context, status int, msg string, errs ...error) huma.StatusError {
		var details []domain.FieldError
		for _, e := range errs {
			if e == nil {
				continue
			}
			var d *huma.ErrorDetail
			if errors.As(e, &d) {
				details = append(details, fieldError(d.Location, d.Message))
				continue
			}
			details = append(details, domain.FieldError{Message: plain(e.Error())})
		}
		switch status {
		case http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
			status = http.StatusBadRequest
		}
		if status == http.StatusBadRequest {
			if len(details) > 0 && details[0].Field != "" && !strings.HasPrefix(details[0].Message, details[0].Field+" ") {
				msg = "Invalid request: " + details[0].Field + ": " + details[0].Message
			} else if len(details) > 0 {
				msg = "Invalid request: " + details[0].Message
			}
		}
		return newAPIError(status, msg, details)
	}
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		return huma.NewErrorWithContext(nil, status, msg, errs...)
	}
}
