package httpapi

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
)

// AccessLog says which requests get an info line ("request", with
// request_id, method, path, route, status and duration_ms) in the log.
// Whatever it says, a request that fails with a 5xx also gets its error
// line ("request failed", with request_id) and every answer carries
// X-Request-Id.
type AccessLog struct {
	// Errors logs every request answered with a status of 400 or more.
	Errors bool
	// Sample is the share of the other requests logged: 1 logs them all,
	// 0 none.
	Sample float64
}

// Access-log policies by name (ParseAccessLog).
var (
	AccessLogAll    = AccessLog{Errors: true, Sample: 1}
	AccessLogErrors = AccessLog{Errors: true}
	AccessLogOff    = AccessLog{}
)

// DefaultAccessLog is `spkey serve`'s: a line per request answered 4xx or
// 5xx and none for the others. A line per request cost about 11% of a
// residents read's CPU (docs/benchmarks.md) and 100 MB in 10 minutes of
// load; the metrics count every request anyway.
const DefaultAccessLog = "errors"

// ParseAccessLog reads an access-log setting: "all", "errors", "off", or
// a sample rate between 0 and 1 ("0.01": the errors and 1% of the other
// requests).
func ParseAccessLog(s string) (AccessLog, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "all":
		return AccessLogAll, nil
	case "errors":
		return AccessLogErrors, nil
	case "off", "none":
		return AccessLogOff, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f >= 0 && f <= 1) {
		return AccessLog{}, fmt.Errorf("access log %q: want all, errors, off or a sample rate between 0 and 1", s)
	}
	return AccessLog{Errors: true, Sample: f}, nil
}

// String is the setting's name, as ParseAccessLog reads it.
func (a AccessLog) String() string {
	switch a {
	case AccessLogAll:
		return "all"
	case AccessLogErrors:
		return "errors"
	case AccessLogOff:
		return "off"
	}
	return strconv.FormatFloat(a.Sample, 'g', -1, 64)
}

// logs reports whether a request answered with status gets its line.
func (a AccessLog) logs(status int) bool {
	if status >= http.StatusBadRequest && a.Errors {
		return true
	}
	switch {
	case a.Sample >= 1:
		return true
	case a.Sample <= 0:
		return false
	}
	return rand.Float64() < a.Sample
}
