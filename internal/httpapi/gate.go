package httpapi

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// gate is who may call a route, decided from its credentials alone before
// anything of the request is read or validated.
type gate int

const (
	gatePublic  gate = iota // anyone
	gateUser                // a JWT or an API key (or the admin)
	gatePartner             // a tenant's X-API-Key
	gateAdmin               // X-Admin-API-Key (and an admin JWT when --admin-email-domain is set)
	gateHook                // POST /users: X-Admin-API-Key alone
)

// hookPattern is the admin sign-up hook, the one admin route a machine
// calls with the admin key alone.
const hookPattern = "POST /users"

// gateOf reads a route's gate from its OpenAPI security requirements.
func gateOf(pattern string, sec []map[string][]string) gate {
	if pattern == hookPattern {
		return gateHook
	}
	g := gatePublic
	for _, req := range sec {
		_, bearer := req["BearerAuth"]
		_, key := req["ApiKeyAuth"]
		switch _, admin := req["AdminApiKey"]; {
		case admin:
			return gateAdmin
		case bearer:
			g = gateUser
		case key && g == gatePublic:
			g = gatePartner
		}
	}
	return g
}

// idRule checks one path parameter; it returns an Invalid error naming it.
type idRule func(name, value string) error

func uuidRule(name, v string) error {
	_, err := domain.CanonicalUUID(name, v)
	return err
}

func intRule(name, v string) error {
	_, err := domain.ParseID(name, v)
	return err
}

// requestIDRule: a device action's id (and a workflow run's) is 1 to 128
// characters of one line (lock.MaxRequestIDLen, as the commands take it).
func requestIDRule(name, v string) error {
	if v == "" {
		return domain.InvalidField(name, name+" is required")
	}
	return domain.CheckText(name, v, lock.MaxRequestIDLen, false)
}

func orgRule(name, v string) error {
	if !domain.ValidOrgID(v) {
		return domain.InvalidField(name, name+" must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit")
	}
	return nil
}

// pathRule returns the rule for parameter name of a route whose path
// starts with prefix. Every path parameter of the API must have one: New
// panics otherwise, so no route takes an unchecked id.
func pathRule(path, name string) idRule {
	switch {
	case name == "id" && strings.HasPrefix(path, "/locks/"):
		return intRule // a lock id
	case name == "id" && strings.HasPrefix(path, "/users/"):
		return uuidRule // a user id
	case name == "id" && strings.HasPrefix(path, "/hubs/"):
		return uuidRule // a hub id
	case name == "ringId", name == "webhookId":
		return uuidRule
	case name == "deliveryId":
		return intRule
	case name == "orgId":
		return orgRule
	case name == "requestId", name == "instanceId":
		return requestIDRule
	}
	panic(fmt.Sprintf("httpapi: no id rule for {%s} in %s", name, path))
}

// routeRules is what admit checks for one route.
type routeRules struct {
	gate gate
	// ids[i], when set, checks path segment i.
	ids []idRule
	// names[i] is the parameter name of segment i.
	names []string
	// body: the method may carry a JSON body.
	body bool
}

func newRouteRules(o *huma.Operation, pattern string) routeRules {
	rr := routeRules{gate: gateOf(pattern, o.Security)}
	segs := strings.Split(o.Path, "/")
	rr.ids, rr.names = make([]idRule, len(segs)), make([]string, len(segs))
	for i, seg := range segs {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(name, "}")
			rr.ids[i], rr.names[i] = pathRule(o.Path, name), name
		}
	}
	switch o.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		rr.body = true
	}
	return rr
}

// admit decides, for a route of the JSON API, in this order and before
// huma reads anything: whether the credentials are enough for the route
// (401/403), whether the path ids are well formed (400) and whether a body
// is JSON (415). Routes then validate their bodies knowing the caller may
// call them.
func (s *Server) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rr, ok := s.rules[patternOf(r)]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if err := s.checkGate(r.Context(), rr.gate, patternOf(r)); err != nil {
			s.refuse(w, r, toAPIError(r.Context(), s.log, err))
			return
		}
		if err := checkPathIDs(r, rr); err != nil {
			s.refuse(w, r, toAPIError(r.Context(), s.log, err))
			return
		}
		if rr.body && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			ct := r.Header.Get("Content-Type")
			if ct == "" {
				// A body without a type (curl --data-binary with -H
				// removed, some HTTP libraries) is read as JSON.
				r.Header.Set("Content-Type", "application/json")
			} else if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				s.refuse(w, r, newAPIError(http.StatusUnsupportedMediaType,
					"Unsupported Content-Type "+quoteHeader(ct)+": this route takes a JSON body; send Content-Type: application/json", nil))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// quoteHeader quotes a header value for a message, cut to 100 bytes.
func quoteHeader(v string) string {
	if len(v) > 100 {
		v = v[:100] + "…"
	}
	return fmt.Sprintf("%q", v)
}

// checkGate refuses a caller whose credentials cannot call a route of gate
// g, whatever the request says: 401 without (or with the wrong kind of)
// credentials, 403 with credentials that authenticate but may not.
func (s *Server) checkGate(ctx context.Context, g gate, pattern string) error {
	p := principal(ctx)
	switch g {
	case gateUser:
		if p.Kind == app.Anonymous && !p.Admin {
			return domain.Errorf(domain.Unauthorized, "Authentication required: send a Bearer JWT or an X-API-Key")
		}
	case gatePartner:
		switch {
		case p.Kind == app.TenantCaller:
		case p.Kind == app.Anonymous:
			return domain.Errorf(domain.Unauthorized, "Authentication required: send your X-API-Key")
		case pattern == "POST /api-keys/rotate":
			return domain.Errorf(domain.Forbidden, "Only an API key can rotate itself: send it in X-API-Key")
		case p.Admin:
			return domain.Errorf(domain.Forbidden, "Admins manage a tenant's webhooks under /tenants/{orgId}/webhooks")
		default:
			return domain.Errorf(domain.Forbidden, "Only the partner's API key or an admin can manage webhooks")
		}
	case gateAdmin:
		return s.adminCheck(ctx)
	case gateHook:
		if !infoOf(ctx).adminKeyOK {
			return domain.Errorf(domain.Unauthorized, "X-Admin-API-Key required")
		}
		if infoOf(ctx).adminDenied {
			return domain.Errorf(domain.Forbidden, "This account's e-mail domain is not allowed to use admin routes")
		}
	}
	return nil
}

// checkPathIDs applies the id rules of rr to r's path segments, as the mux
// will see them (each segment unescaped on its own: "..%2F.." is one
// segment).
func checkPathIDs(r *http.Request, rr routeRules) error {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	if len(segs) != len(rr.ids) {
		return nil // the mux will not match it either
	}
	for i, rule := range rr.ids {
		if rule == nil {
			continue
		}
		v, err := url.PathUnescape(segs[i])
		if err != nil {
			return domain.InvalidField(rr.names[i], rr.names[i]+" is not a valid URL path segment")
		}
		if err := rule(rr.names[i], v); err != nil {
			return err
		}
	}
	return nil
}
