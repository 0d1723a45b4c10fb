package portal

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
)

// The number of deliveries the webhook card lists.
const deliveriesShown = 20

// partnerPage is everything templates/partner/partner.html shows; Page
// picks the body.
type partnerPage struct {
	Title string
	CSS   template.CSS
	Page  string // landing, link, onboard, dashboard, message
	// Email and CSRF are set when a session exists (Email when signed in).
	Email, CSRF string
	// Notice is a confirmation, Error what went wrong (with the field at
	// fault on the onboarding form).
	Notice, Error, ErrorField string
	// Landing page.
	OIDCName string
	// Link page.
	LinkEmail, LinkToken string
	// Onboarding form.
	OrgID, OrgName string
	// Dashboard.
	Org  app.TenantView
	Key  keyCard
	Hook hookCard
	// Message page.
	Heading, Text string
	Back          *navLink
}

type navLink struct{ Href, Label string }

// keyCard is the API key card: the full key only in the answer of the
// post that issued it.
type keyCard struct {
	Revealed                                       string
	KeyID, Masked, CreatedAt, CreatedBy, ExpiresAt string
	Super                                          bool
}

// hookCard is the webhook card: the org's first webhook, its last
// deliveries and the URL form.
type hookCard struct {
	Exists                                                      bool
	Status, StatusText, URL, VerifiedAt, LastError, LastErrorAt string
	QueueFullSince                                              string // its queue is full: later events wait
	Others                                                      int    // further webhooks, set up by the operator
	Input, Error                                                string
	Unavailable                                                 bool
	Deliveries                                                  []deliveryRow
}

type deliveryRow struct {
	At, EventType, Aggregate, Status, Error string
	Code, Attempts                          int
}

var hookStatusText = map[string]string{
	"pending":  "Waiting for your endpoint to answer the verification POST with a 2xx status.",
	"active":   "Events are being delivered.",
	"disabled": "Deliveries are switched off. Save the URL again to re-verify it.",
}

// home serves GET /portal/: the landing page before sign-in, the
// onboarding form for an e-mail without an organization, else the
// dashboard.
func (p *Partner) home(w http.ResponseWriter, r *http.Request) {
	s, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !ok || !s.signedIn() {
		if _, err := r.Cookie(SessionCookie); err == nil && !ok {
			// An expired or tampered cookie goes now, so it cannot keep
			// sending the partner round in circles.
			p.clearCookie(w, r, SessionCookie)
		}
		pg := partnerPage{Title: "Partner Portal", Page: "landing"}
		if p.oidc != nil {
			pg.OIDCName = p.oidc.cfg.Name
		}
		if r.URL.Query().Get("signedout") != "" {
			pg.Notice = "You are signed out."
		}
		p.render(w, r, http.StatusOK, pg)
		return
	}
	ctx := r.Context()
	pr, found, err := p.account(ctx, s)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !found {
		p.render(w, r, http.StatusOK, p.onboardPage(s, "", ""))
		return
	}
	pg, err := p.dashboard(ctx, s, pr)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if r.URL.Query().Get("saved") == "webhook" {
		pg.Notice = "Webhook URL saved. It is verified with a test POST; reload this page to see its status."
	}
	p.render(w, r, http.StatusOK, pg)
}

// account finds the signed-in partner's organization on every request:
// the principal's org comes from the session's e-mail, never from a form.
func (p *Partner) account(ctx context.Context, s session) (app.Principal, bool, error) {
	org, found, err := p.svc.PortalAccount(ctx, s.Email)
	if err != nil || !found {
		return app.Principal{}, false, err
	}
	return app.Principal{Kind: app.TenantCaller, OrgID: org, Email: s.Email}, true, nil
}

func (p *Partner) onboardPage(s session, orgID, orgName string) partnerPage {
	return partnerPage{Title: "Set up your organization", Page: "onboard", Email: s.Email, CSRF: s.CSRF, OrgID: orgID, OrgName: orgName}
}

// dashboard loads the three cards. The webhook card degrades on its own:
// a failure there still shows the organization and key.
func (p *Partner) dashboard(ctx context.Context, s session, pr app.Principal) (partnerPage, error) {
	tv, err := p.svc.PortalOrg(ctx, pr)
	if err != nil {
		return partnerPage{}, err
	}
	pg := partnerPage{Title: "Partner Portal — " + tv.OrgID, Page: "dashboard", Email: s.Email, CSRF: s.CSRF, Org: tv}
	if k := tv.Key; k != nil {
		pg.Key = keyCard{KeyID: k.KeyID, Masked: k.Masked, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy, ExpiresAt: k.ExpiresAt, Super: k.Super}
	}
	hooks, total, err := p.svc.Webhooks(ctx, pr, pr.OrgID, 1, 0)
	if err != nil {
		p.log.ErrorContext(ctx, "partner portal: list webhooks", "org_id", pr.OrgID, "err", err)
		pg.Hook.Unavailable = true
		return pg, nil
	}
	if len(hooks) == 0 {
		return pg, nil
	}
	h := hooks[0]
	pg.Hook = hookCard{Exists: true, Status: h.Status, StatusText: hookStatusText[h.Status], URL: h.URL, Input: h.URL,
		VerifiedAt: h.VerifiedAt, LastError: h.LastError, LastErrorAt: h.LastErrorAt, QueueFullSince: h.QueueFullSince, Others: total - 1}
	dels, _, err := p.svc.Deliveries(ctx, pr, pr.OrgID, h.ID, 0, deliveriesShown)
	if err != nil {
		p.log.ErrorContext(ctx, "partner portal: list deliveries", "org_id", pr.OrgID, "err", err)
		pg.Hook.Unavailable = true
		return pg, nil
	}
	for _, d := range dels {
		at := d.LastAttemptAt
		if at == "" {
			at = d.CreatedAt
		}
		row := deliveryRow{At: at, EventType: d.EventType, Aggregate: d.AggregateType + " " + d.AggregateID, Status: d.Status,
			Error: d.LastError, Code: d.LastStatusCode, Attempts: len(d.Attempts)}
		pg.Hook.Deliveries = append(pg.Hook.Deliveries, row)
	}
	return pg, nil
}

// onboard serves POST /portal/onboard: it registers the org and issues its
// first key, and answers the dashboard with the key revealed (no redirect:
// the key is shown by this answer only).
func (p *Partner) onboard(w http.ResponseWriter, r *http.Request) {
	s, form, ok := p.post(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	if _, found, err := p.account(ctx, s); err != nil {
		p.fail(w, r, err)
		return
	} else if found {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
		return
	}
	orgID, orgName := strings.TrimSpace(form.Get("orgId")), strings.TrimSpace(form.Get("orgName"))
	k, err := p.svc.Onboard(ctx, s.Email, orgID, orgName)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) && (de.Code == domain.Invalid || de.Code == domain.Conflict) {
			pg := p.onboardPage(s, orgID, orgName)
			pg.Error = de.Message
			if len(de.Details) > 0 {
				pg.ErrorField = de.Details[0].Field
			}
			status := http.StatusBadRequest
			if de.Code == domain.Conflict {
				status = http.StatusConflict
			}
			p.render(w, r, status, pg)
			return
		}
		p.fail(w, r, err)
		return
	}
	p.log.InfoContext(ctx, "partner portal: organization registered", "org_id", k.OrgID)
	p.revealed(w, r, s, k, "Your organization "+k.OrgID+" is registered.")
}

// rotate serves POST /portal/key/rotate.
func (p *Partner) rotate(w http.ResponseWriter, r *http.Request) {
	s, form, pr, ok := p.memberPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	k, err := p.svc.RotateOwnKey(ctx, pr, form.Get("keyId"))
	if domain.ErrorCode(err) == domain.Conflict {
		pg, err := p.dashboard(ctx, s, pr)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		pg.Error = "The API key changed since that page was shown, so nothing was rotated. This is the key that is active now."
		p.render(w, r, http.StatusConflict, pg)
		return
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.InfoContext(ctx, "partner portal: API key rotated", "org_id", pr.OrgID)
	p.revealed(w, r, s, k, "A new API key was issued; the previous one no longer works.")
}

// revealed answers the dashboard with key k inside the reveal toggle.
func (p *Partner) revealed(w http.ResponseWriter, r *http.Request, s session, k app.IssuedKey, notice string) {
	pg, err := p.dashboard(r.Context(), s, app.Principal{Kind: app.TenantCaller, OrgID: k.OrgID, Email: s.Email})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	pg.Key.Revealed = k.APIKey
	pg.Notice = notice
	p.render(w, r, http.StatusOK, pg)
}

// setWebhook serves POST /portal/webhook: it creates the org's webhook or
// changes its URL, then goes home (a bad URL shows the form again, 400).
func (p *Partner) setWebhook(w http.ResponseWriter, r *http.Request) {
	s, form, pr, ok := p.memberPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	u := strings.TrimSpace(form.Get("url"))
	if _, err := p.svc.PortalSetWebhookURL(ctx, pr, u); err != nil {
		var de *domain.Error
		if !errors.As(err, &de) || de.Code == domain.Internal {
			p.fail(w, r, err)
			return
		}
		pg, err := p.dashboard(ctx, s, pr)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		pg.Hook.Input, pg.Hook.Error = u, de.Message
		p.render(w, r, http.StatusBadRequest, pg)
		return
	}
	p.log.InfoContext(ctx, "partner portal: webhook URL set", "org_id", pr.OrgID)
	http.Redirect(w, r, "/portal/?saved=webhook", http.StatusSeeOther)
}

// logout serves POST /portal/logout.
func (p *Partner) logout(w http.ResponseWriter, r *http.Request) {
	_, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !ok {
		// Nothing to end (and nothing a forged post could harm).
		p.clearCookie(w, r, SessionCookie)
		http.Redirect(w, r, "/portal/?signedout=1", http.StatusSeeOther)
		return
	}
	s, _, ok := p.post(w, r, false)
	if !ok {
		return
	}
	if err := p.svc.EndPortalSession(r.Context(), s.ID, MaxLinkTTL); err != nil {
		p.fail(w, r, err)
		return
	}
	p.clearCookie(w, r, SessionCookie)
	http.Redirect(w, r, "/portal/?signedout=1", http.StatusSeeOther)
}

// memberPost is post for a partner whose organization exists: it also
// returns the partner's principal. Without an organization it sends the
// browser home (to onboarding). ok is false when it has answered.
func (p *Partner) memberPost(w http.ResponseWriter, r *http.Request) (session, url.Values, app.Principal, bool) {
	s, form, ok := p.post(w, r, true)
	if !ok {
		return s, form, app.Principal{}, false
	}
	pr, found, err := p.account(r.Context(), s)
	if err != nil {
		p.fail(w, r, err)
		return s, form, pr, false
	}
	if !found {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
		return s, form, pr, false
	}
	return s, form, pr, true
}

// post checks a form post before anything happens: it must come from this
// site, be a url-encoded form, and carry the CSRF token of a valid
// session (signed in when signedIn). It answers the refusal itself.
func (p *Partner) post(w http.ResponseWriter, r *http.Request, signedIn bool) (session, url.Values, bool) {
	ctx := r.Context()
	home := &navLink{Href: "/portal/", Label: "Go to the portal"}
	if err := p.cop.Check(r); err != nil {
		p.log.InfoContext(ctx, "partner portal: cross-site post refused", "path", r.URL.Path, "err", err,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		p.message(w, r, http.StatusForbidden, "Request refused", "This form was sent from another website, so nothing was changed.", home)
		return session{}, nil, false
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && ct == "application/x-www-form-urlencoded" {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		err = r.ParseForm()
	} else if err == nil {
		err = errors.New("not a url-encoded form")
	}
	if err != nil {
		p.message(w, r, http.StatusBadRequest, "Request not understood", "We could not read what you sent. Please go back and try again.", home)
		return session{}, nil, false
	}
	s, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, err)
		return session{}, nil, false
	}
	if !ok {
		p.message(w, r, http.StatusForbidden, "Session expired", "Your session has expired, so nothing was changed. Please sign in again.", home)
		return session{}, nil, false
	}
	if !csrfOK(s, r.PostForm.Get("csrf")) {
		p.log.InfoContext(ctx, "partner portal: post without a valid CSRF token refused", "path", r.URL.Path)
		p.message(w, r, http.StatusForbidden, "Request refused", "This form is out of date or was not sent by the portal, so nothing was changed. Please reload the page and try again.", home)
		return session{}, nil, false
	}
	if signedIn && !s.signedIn() {
		p.message(w, r, http.StatusForbidden, "Not signed in", "Please sign in first.", home)
		return session{}, nil, false
	}
	return s, r.PostForm, true
}

func (p *Partner) notFound(w http.ResponseWriter, r *http.Request) {
	p.message(w, r, http.StatusNotFound, "Page not found", "There is no such page in the Partner Portal.", &navLink{Href: "/portal/", Label: "Go to the portal"})
}

// fail answers a logged 500 page.
func (p *Partner) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.log.ErrorContext(r.Context(), "partner portal", "method", r.Method, "path", r.URL.Path, "err", err)
	p.message(w, r, http.StatusInternalServerError, "Something went wrong", "We could not do that just now. Please try again in a moment.",
		&navLink{Href: "/portal/", Label: "Go to the portal"})
}

func (p *Partner) message(w http.ResponseWriter, r *http.Request, status int, heading, text string, back *navLink) {
	p.render(w, r, status, partnerPage{Title: heading, Page: "message", Heading: heading, Text: text, Back: back})
}

// render writes page pg with status, rendered into memory first so a
// template error is a clean 500.
func (p *Partner) render(w http.ResponseWriter, r *http.Request, status int, pg partnerPage) {
	pg.CSS = template.CSS(partnerCSS)
	var buf bytes.Buffer
	if err := partnerTmpl.ExecuteTemplate(&buf, "partner.html", pg); err != nil {
		p.log.ErrorContext(r.Context(), "partner portal: render", "page", pg.Page, "err", err)
		http.Error(w, "Internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
