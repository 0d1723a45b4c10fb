// Package httpapi is spkey's HTTP face: the SmartphoneKey-compatible JSON
// API (routes.go lists all of it), health and metrics. Handlers decode,
// call the app layer and encode; huma generates the OpenAPI document and
// validates requests.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
)

// Config is what the HTTP layer needs from the server configuration.
type Config struct {
	Version          string
	AdminAPIKey      string
	AdminEmailDomain string
	CORSOrigins      map[string]bool
	// StreamStop, when closed, ends every live stream (server shutdown:
	// streams never finish by themselves).
	StreamStop <-chan struct{}
	// StreamRecheck is how often a live stream checks its caller's
	// credentials and rights again (30s).
	StreamRecheck time.Duration
	// MaxStreams bounds the live streams open on this node (1000),
	// MaxStreamsPerUser those one caller (a user's token, or a tenant's
	// key) has open for one user (5), and MaxStreamsPerKey those one
	// caller has open whatever the users (50); a stream beyond any is
	// refused with 429 and Retry-After.
	MaxStreams, MaxStreamsPerUser, MaxStreamsPerKey int
	// StreamReads bounds how many database reads the live streams of this
	// node run at once (4), whatever their number: their polls and
	// credential checks cannot take the pool from commands.
	StreamReads int
	// AccessLog is the access-log setting (ParseAccessLog): "all" (also
	// when empty), "errors", "off" or a sample rate.
	AccessLog string
	// Mount, if set, adds routes served outside the JSON API (HTML pages).
	Mount func(mux *http.ServeMux)
}

// Pinger reports whether the database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// series holds the children of requests and latency by their labels
	// (a seriesKey): the label sets are bounded (metricLabels) and a map
	// read is cheaper than WithLabelValues' hashing of the strings.
	series sync.Map
}

type seriesKey struct {
	route, method string
	status        int
}

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// observe counts one request and its latency.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	k := seriesKey{route, method, status}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &series{requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)), latency: m.latency.WithLabelValues(route)})
	}
	sr := v.(*series)
	sr.requests.Inc()
	sr.latency.Observe(d.Seconds())
}

// Server is the HTTP handler of the API.
type Server struct {
	cfg     Config
	svc     *app.Service
	jwt     *auth.Verifier
	db      Pinger
	log     *slog.Logger
	access  AccessLog
	metrics metrics
	streams *streamLimits
	handler http.Handler
	huma    huma.API
	mux     *http.ServeMux
	// api and commands hold the "METHOD path" patterns of the JSON API's
	// operations and of those among them that are commands (upstream's
	// success:false on errors); the rest of the mux serves pages.
	api, commands map[string]bool
	// rules holds, per API pattern, what admit checks before huma runs.
	rules map[string]routeRules
}

var hookOnce sync.Once

// New builds the handler. reg receives the HTTP and live stream metrics;
// the handler does not serve them (see MetricsHandler).
func New(cfg Config, svc *app.Service, jwt *auth.Verifier, db Pinger, reg *prometheus.Registry, log *slog.Logger) *Server {
	hookOnce.Do(hookHumaErrors)
	s := &Server{cfg: cfg, svc: svc, jwt: jwt, db: db, log: log, access: AccessLogAll}
	if cfg.AccessLog != "" {
		a, err := ParseAccessLog(cfg.AccessLog)
		if err != nil {
			log.Warn("logging every request", "err", err)
		} else {
			s.access = a
		}
	}
	s.metrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spkey_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "status"})
	s.metrics.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "spkey_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	reg.MustRegister(s.metrics.requests, s.metrics.latency)
	s.streams = newStreamLimits(cfg, reg)

	mux := http.NewServeMux()
	hc := huma.DefaultConfig("spkey — SmartphoneKey-compatible API", cfg.Version)
	hc.CreateHooks = nil // no $schema member in answers: upstream has none
	hc.DocsPath = ""
	hc.SchemasPath = ""
	hc.OpenAPIPath = "/openapi"
	hc.Info.Description = "Self-hostable server speaking the SmartphoneKey B2C and Admin APIs."
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"BearerAuth":  {Type: "http", Scheme: "bearer", BearerFormat: "JWT"},
		"ApiKeyAuth":  {Type: "apiKey", In: "header", Name: "X-API-Key"},
		"AdminApiKey": {Type: "apiKey", In: "header", Name: "X-Admin-API-Key"},
	}
	hc.Transformers = append(hc.Transformers, envelopeTransformer)
	hc.Formats = map[string]huma.Format{"application/json": jsonFormat, "json": jsonFormat}
	s.huma = humago.New(mux, hc)
	s.routes(mux)
	s.mux, s.api, s.commands, s.rules = mux, map[string]bool{}, map[string]bool{}, map[string]routeRules{}
	for path, item := range s.huma.OpenAPI().Paths {
		for _, o := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if o == nil {
				continue
			}
			pattern := o.Method + " " + path
			s.api[pattern] = true
			s.commands[pattern] = slices.Contains(o.Tags, "Command")
			s.rules[pattern] = newRouteRules(o, pattern)
		}
	}
	if cfg.Mount != nil {
		cfg.Mount(mux)
	}
	s.handler = s.observe(s.cors(s.authenticate(s.admit(s.route(mux)))))
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// OpenAPI returns the generated OpenAPI document.
func (s *Server) OpenAPI() *huma.OpenAPI { return s.huma.OpenAPI() }

// envelopeTransformer adds upstream's per-route error extras: success:false
// on commands, and the errors list on the 404s of queries.
func envelopeTransformer(ctx huma.Context, status string, v any) (any, error) {
	e, ok := v.(*APIError)
	if !ok {
		return v, nil
	}
	op := ctx.Operation()
	if op == nil {
		return v, nil
	}
	cp := *e
	for _, t := range op.Tags {
		switch t {
		case "Command":
			f := false
			cp.Success = &f
		case "Query":
			if e.Code == http.StatusNotFound {
				f := false
				cp.Success = &f
				cp.Errors = []legacyError{{Code: e.Code, Message: e.Message}}
			}
		}
	}
	return &cp, nil
}
