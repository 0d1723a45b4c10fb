package netsafe

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The answers of the endpoints spkey calls on behalf of others are read
// with the same care as their URLs are chosen: a bounded, printable
// snippet for the delivery log, a bounded Retry-After, and errors that do
// not repeat a URL that may carry a token.

// Snippet returns the start of a receiver's answer, one line of at most
// 200 bytes of valid UTF-8, for a delivery log.
func Snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// RetryAfter reads a Retry-After header: delay-seconds (at most a year) or
// an HTTP date. Zero when absent, malformed or in the past.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(365*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Redact drops the URL from an HTTP client error: it may carry a token in
// its query or user info.
func Redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
