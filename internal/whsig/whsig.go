// Package whsig signs outgoing requests the Standard Webhooks way
// (https://www.standardwebhooks.com): webhook-id, webhook-timestamp and
// webhook-signature headers, the signature being "v1," and the base64 of
// HMAC-SHA256(key, id + "." + timestamp + "." + body).
package whsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Prefix starts a secret given as the base64 of its key.
const Prefix = "whsec_"

// ErrSecret reports a secret that is "whsec_" without a base64 key after it.
var ErrSecret = errors.New(`after "whsec_" must come the key in standard base64`)

// Key returns the signing key of secret: the decoded base64 after "whsec_",
// or the secret's own bytes when it has no such prefix.
func Key(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, Prefix)
	if !ok {
		return []byte(secret), nil
	}
	k, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(k) == 0 {
		return nil, ErrSecret
	}
	return k, nil
}

// Sign returns one "v1,<base64>" signature of body under key.
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SetHeaders sets the three Standard Webhooks headers on h, with one
// signature per key (space-separated, as the specification allows while a
// secret is being rotated). No keys: no webhook-signature header.
func SetHeaders(h http.Header, id string, ts int64, body []byte, keys ...[]byte) {
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	sigs := make([]string, 0, len(keys))
	for _, k := range keys {
		sigs = append(sigs, Sign(k, id, ts, body))
	}
	if len(sigs) > 0 {
		h.Set("webhook-signature", strings.Join(sigs, " "))
	}
}

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

// RetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// Zero when absent, malformed or in the past.
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
