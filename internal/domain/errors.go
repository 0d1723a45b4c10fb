// Package domain holds what every aggregate shares: the error type with its
// codes, the event catalogue (Catalog), identifier normalisation and PII
// masking. It imports nothing of ours.
package domain

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an Error; the HTTP layer owns the one table that maps a
// Code to a status.
type Code string

// The error codes used across the domain.
const (
	Invalid       Code = "invalid"       // malformed input or a broken business rule
	NotFound      Code = "not_found"     // the aggregate or a referenced thing is missing
	Conflict      Code = "conflict"      // the request clashes with existing state
	Unauthorized  Code = "unauthorized"  // no or bad credentials
	Forbidden     Code = "forbidden"     // credentials fine, action not allowed
	Unprocessable Code = "unprocessable" // well-formed but not acceptable (idempotency key reuse)
	TooMany       Code = "too_many"      // over a rate or concurrency limit: may be retried after RetryAfter
	BadGateway    Code = "bad_gateway"   // a device or outside service could not take the request; nothing was recorded
	Unavailable   Code = "unavailable"   // the feature is not configured on this server
	Internal      Code = "internal"      // anything else; details never reach the client
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type of the domain: a code, a client-safe message
// and optional per-field details.
type Error struct {
	Code    Code
	Message string
	Details []FieldError
	// RetryAfter, for TooMany, is when the request may be made again.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidField builds an Invalid error about one field.
func InvalidField(field, msg string) *Error {
	return &Error{Code: Invalid, Message: msg, Details: []FieldError{{Field: field, Message: msg}}}
}

// ErrorCode returns the Code of err, or Internal when err is not an *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// TimeLayout is upstream's ISO timestamp form: UTC, milliseconds, "Z".
const TimeLayout = "2006-01-02T15:04:05.000Z"
