package httpapi

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves reg's metrics at GET /metrics, for a listener of
// its own (spkey serve --metrics-addr): the API's listener does not serve
// them. With a token, a scrape must send "Authorization: Bearer <token>"
// (401 otherwise). Every other path is 404.
func MetricsHandler(reg *prometheus.Registry, token string) http.Handler {
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				writeError(w, newAPIError(http.StatusUnauthorized, "Metrics need Authorization: Bearer <the --metrics-token>", nil), false)
				return
			}
		}
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newAPIError(http.StatusNotFound, "No such route: "+r.Method+" "+r.URL.Path+" (this listener serves GET /metrics)", nil), false)
	})
	return mux
}
