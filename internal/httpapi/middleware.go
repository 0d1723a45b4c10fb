package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/domain"
)

type ctxKey int

const keyRequest ctxKey = 0

// reqInfo is what the middleware learns of a request, handed to the rest
// of the chain, the handlers and the error log through one context value
// (set by observe): its id and the route pattern that serves it ("" when
// none matches), then, set by authenticate before it calls the next
// handler, the caller and the outcome of the admin key check. Setting them
// in place spares a copy of the request per value.
type reqInfo struct {
	id, pattern string
	p           app.Principal
	// adminKeyOK: a valid X-Admin-API-Key came with the request;
	// adminDenied: with a JWT outside --admin-email-domain.
	adminKeyOK, adminDenied bool
}

// infoOf returns ctx's reqInfo (a blank one outside observe).
func infoOf(ctx context.Context) *reqInfo {
	if h, ok := ctx.Value(keyRequest).(*reqInfo); ok {
		return h
	}
	return &reqInfo{}
}

// patternOf returns the pattern observe found for r ("" when none matches).
func patternOf(r *http.Request) string { return infoOf(r.Context()).pattern }

// route answers unknown paths (404) and wrong methods (405, with Allow) in
// our envelope instead of the mux's plain text.
func (s *Server) route(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if patternOf(r) != "" {
			next.ServeHTTP(w, r)
			return
		}
		var allow []string
		command := false
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := s.mux.Handler(probe); p != "" {
				allow = append(allow, m)
				command = command || s.commands[p]
			}
		}
		if len(allow) == 0 {
			writeError(w, newAPIError(http.StatusNotFound, "No such route: "+r.Method+" "+r.URL.Path, nil), false)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed here; use "+strings.Join(allow, " or "), nil), command)
	})
}

// headerValue is h.Get(key) for a key already in canonical form (Get
// would build the canonical form of "X-API-Key" anew each time).
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func requestID(ctx context.Context) string { return infoOf(ctx).id }

func principal(ctx context.Context) app.Principal { return infoOf(ctx).p }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe gives every request an id, records metrics and logs the line
// the access-log setting asks for; it also turns a panic into a logged
// 500.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header()["X-Request-Id"] = []string{id}
		_, pattern := s.mux.Handler(r)
		info := &reqInfo{id: id, pattern: pattern}
		// One request, one cache fence (at its first read) on PostgreSQL.
		ctx := context.WithValue(app.FreshReads(r.Context()), keyRequest, info)
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic", "request_id", id, "err", v)
				if rec.status == 0 {
					s.refuse(rec, r, newAPIError(http.StatusInternalServerError, "Internal server error", nil))
				}
			}
			route, method := metricLabels(r.Method, info.pattern)
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			s.metrics.observe(route, method, status, d)
			if s.access.logs(status) {
				s.log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("request_id", id), slog.String("method", r.Method),
					slog.String("path", r.URL.Path), slog.String("route", route), slog.Int("status", status),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000))
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// standardMethods are the methods the request metrics name; any other is
// counted as "other".
var standardMethods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true}

// metricLabels returns the route and method labels of a request's metrics,
// both from bounded sets whatever the caller sends: the route is the
// pattern that served it ("unmatched" when none did) and the method is a
// standard one or "other". A request with any other method is counted
// under "unmatched" too: for CONNECT the mux's pattern may echo the
// request's path (its /tree -> /tree/ redirect).
func metricLabels(method, pattern string) (route, m string) {
	if !standardMethods[method] {
		return "unmatched", "other"
	}
	if pattern == "" {
		return "unmatched", method
	}
	return pattern, method
}

// cors answers preflights for the configured origins and marks their
// answers readable by the page.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := s.cfg.CORSOrigins[origin] || s.cfg.CORSOrigins["*"]
		w.Header().Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				// A preflight names the route it asks for by its method.
				probe := r.Clone(r.Context())
				probe.Method = r.Header.Get("Access-Control-Request-Method")
				_, p := s.mux.Handler(probe)
				writeError(w, newAPIError(http.StatusForbidden, "Origin not allowed: add it to SPKEY_CORS_ORIGINS", nil), s.commands[p])
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-API-Key, Idempotency-Key, X-Request-Id, X-Admin-API-Key, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", "X-Request-Id, Idempotent-Replayed")
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate turns the credentials of a request into a Principal. Bad
// credentials are refused here, for every route; a request without any is
// anonymous and each route decides whether that is enough.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if headerValue(r.Header, "X-Org-Id") != "" || headerValue(r.Header, "X-User-Id") != "" {
			s.refuse(w, r, newAPIError(http.StatusBadRequest, "X-Org-Id and X-User-Id are internal headers and must not be sent by clients", nil))
			return
		}
		if tok := s.streamToken(r); tok != "" {
			// The live stream takes a JWT in ?access_token= too: browsers'
			// EventSource cannot send headers. It moves to the header, so the
			// rest (and the stream's re-checks) see one credential, and it
			// leaves the query (the log shows paths only).
			q := r.URL.Query()
			q.Del("access_token")
			r = r.Clone(ctx)
			r.URL.RawQuery = q.Encode()
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		bearer := r.Header.Get("Authorization")
		apiKey := headerValue(r.Header, "X-Api-Key")
		if bearer != "" && apiKey != "" {
			s.refuse(w, r, newAPIError(http.StatusUnauthorized, "Send either a Bearer JWT or an X-API-Key, not both", nil))
			return
		}
		var p app.Principal
		var claims auth.Claims
		switch {
		case bearer != "":
			// The scheme is case-insensitive (RFC 9110 section 11.1).
			scheme, tok, _ := strings.Cut(strings.TrimSpace(bearer), " ")
			tok = strings.TrimSpace(tok)
			if !strings.EqualFold(scheme, "Bearer") || tok == "" {
				s.refuse(w, r, newAPIError(http.StatusUnauthorized, "Authorization header must be 'Bearer <jwt>'", nil))
				return
			}
			// One spelling from here on (the live stream re-reads it).
			if bearer != "Bearer "+tok {
				r = r.Clone(ctx)
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			c, err := s.jwt.Verify(ctx, tok)
			if err != nil {
				msg := "Invalid token"
				if errors.Is(err, auth.ErrInvalid) {
					msg = "Invalid token: " + strings.TrimPrefix(err.Error(), auth.ErrInvalid.Error()+": ")
				}
				s.refuse(w, r, newAPIError(http.StatusUnauthorized, msg, nil))
				return
			}
			claims = c
			p = userPrincipal(c)
			// The person has now signed in: the tenant that created their
			// record loses custody of it (app.authorizeUser). A failure to
			// record it does not fail the request: it is tried again on the
			// person's next one (app.NoteSignIn remembers only successes).
			if err := s.svc.NoteSignIn(ctx, p); err != nil {
				s.log.WarnContext(ctx, "record sign-in", "user_id", p.UserID, "err", err)
			}
		case apiKey != "":
			kp, err := s.svc.AuthenticateKey(ctx, apiKey)
			if err != nil {
				s.refuse(w, r, toAPIError(ctx, s.log, err))
				return
			}
			p = kp
		}
		var adminKeyOK, adminDenied bool
		if adminKey := headerValue(r.Header, "X-Admin-Api-Key"); adminKey != "" {
			if s.cfg.AdminAPIKey == "" || subtle.ConstantTimeCompare([]byte(adminKey), []byte(s.cfg.AdminAPIKey)) != 1 {
				s.refuse(w, r, newAPIError(http.StatusUnauthorized, "Invalid admin API key", nil))
				return
			}
			adminKeyOK = true
			switch {
			case s.cfg.AdminEmailDomain == "":
				p.Admin = true
			case claims.Email != "" && claims.EmailVerified && strings.HasSuffix(claims.Email, "@"+strings.ToLower(s.cfg.AdminEmailDomain)):
				p.Admin = true
			case bearer != "":
				adminDenied = true
			}
		}
		info, ok := ctx.Value(keyRequest).(*reqInfo)
		if !ok {
			info = &reqInfo{}
			r = r.WithContext(context.WithValue(ctx, keyRequest, info))
		}
		info.p, info.adminKeyOK, info.adminDenied = p, adminKeyOK, adminDenied
		next.ServeHTTP(w, r)
	})
}

// userPrincipal is the principal of a verified user token.
func userPrincipal(c auth.Claims) app.Principal {
	return app.Principal{Kind: app.UserCaller, UserID: c.UserID, Email: c.Email, EmailVerified: c.EmailVerified, Phone: c.Phone, PhoneVerified: c.PhoneVerified}
}

// adminCheck returns nil when the request passed the admin check, else the
// right refusal: 403 for a valid JWT outside the admin domain, 401
// otherwise (naming the admin JWT only when --admin-email-domain asks for
// one).
func (s *Server) adminCheck(ctx context.Context) error {
	if principal(ctx).Admin {
		return nil
	}
	if infoOf(ctx).adminDenied {
		return domain.Errorf(domain.Forbidden, "This account's e-mail domain is not allowed to use admin routes")
	}
	if s.cfg.AdminEmailDomain != "" {
		return domain.Errorf(domain.Unauthorized, "Admin credentials required: X-Admin-API-Key and an admin JWT")
	}
	return domain.Errorf(domain.Unauthorized, "Admin credentials required: X-Admin-API-Key")
}

// streamToken returns the access_token query parameter of a live-stream
// request that carries no other credential ("" otherwise). Only JWTs are
// taken this way (they expire); API keys never travel in URLs.
func (s *Server) streamToken(r *http.Request) string {
	if patternOf(r) != streamPattern || r.Header.Get("Authorization") != "" || headerValue(r.Header, "X-Api-Key") != "" {
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// refuse writes e outside huma (middleware refusals), with upstream's
// success:false when r is for a command route.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *APIError) {
	writeError(w, e, s.commands[patternOf(r)])
}

func writeError(w http.ResponseWriter, e *APIError, command bool) {
	if command {
		f := false
		e.Success = &f
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code)
	_ = json.NewEncoder(w).Encode(e)
}
