package portal

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/spkey-dev/spkey/internal/domain"
)

// login serves GET /portal/login: it remembers state, nonce and the PKCE
// verifier in a signed cookie and sends the browser to the provider.
func (p *Partner) login(w http.ResponseWriter, r *http.Request) {
	if p.oidc == nil {
		p.notFound(w, r)
		return
	}
	pr, _, err := p.oidc.discover(r.Context())
	if err != nil {
		p.providerDown(w, r, err)
		return
	}
	f := flow{State: randomToken(16), Nonce: randomToken(16), Verifier: oauth2.GenerateVerifier(), Expires: p.cfg.Now().Add(flowTTL).Unix()}
	v, err := p.flows.sign(f)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.setCookie(w, r, flowCookie, v, flowTTL)
	u := p.oidc.oauth(pr, p.base(r)).AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	http.Redirect(w, r, u, http.StatusFound)
}

// callback serves GET /portal/callback, where the provider sends the
// browser back with a code: it checks state, exchanges the code with the
// PKCE verifier, verifies the ID token and its nonce, and signs the
// partner in with the token's verified e-mail address.
func (p *Partner) callback(w http.ResponseWriter, r *http.Request) {
	if p.oidc == nil {
		p.notFound(w, r)
		return
	}
	ctx := r.Context()
	retry := &navLink{Href: "/portal/login", Label: "Sign in again"}
	var f flow
	c, err := r.Cookie(flowCookie)
	if err == nil {
		err = p.flows.open(c.Value, &f)
	}
	// The flow cookie is good for one callback, whatever happens next.
	p.clearCookie(w, r, flowCookie)
	q := r.URL.Query()
	if err != nil || p.cfg.Now().Unix() >= f.Expires || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		p.message(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in was started too long ago, in another browser or tab, or not by you. Please sign in again.", retry)
		return
	}
	if e := q.Get("error"); e != "" {
		text := "Your identity provider did not sign you in (" + e + ")."
		if d := q.Get("error_description"); d != "" {
			text = "Your identity provider did not sign you in: " + d
		}
		p.message(w, r, http.StatusForbidden, "Not signed in", text, retry)
		return
	}
	pr, verifier, err := p.oidc.discover(ctx)
	if err != nil {
		p.providerDown(w, r, err)
		return
	}
	tok, err := p.oidc.oauth(pr, p.base(r)).Exchange(p.oidc.ctx(ctx), q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		p.providerDown(w, r, err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		p.providerDown(w, r, errors.New("token answer without id_token"))
		return
	}
	idt, err := verifier.Verify(p.oidc.ctx(ctx), raw)
	if err != nil || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		p.log.WarnContext(ctx, "partner portal: ID token refused", "err", err)
		p.message(w, r, http.StatusForbidden, "Not signed in", "Your identity provider's answer could not be verified. Please sign in again.", retry)
		return
	}
	var claims struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		p.providerDown(w, r, err)
		return
	}
	email, err := domain.NormalizeEmail("email", claims.Email)
	// Some providers send the flag as a string.
	verified := string(claims.EmailVerified) == "true" || string(claims.EmailVerified) == `"true"`
	if err != nil || !verified {
		p.log.InfoContext(ctx, "partner portal: sign-in without a verified e-mail refused", "subject", idt.Subject)
		p.message(w, r, http.StatusForbidden, "E-mail address not verified",
			"Your identity provider did not confirm an e-mail address for your account, and the portal finds your organization by it. Verify your address with the provider, then sign in again.", retry)
		return
	}
	p.signIn(w, r, email, "oidc")
}

// signIn starts the partner's session (with a new CSRF token) and goes
// home.
func (p *Partner) signIn(w http.ResponseWriter, r *http.Request, email, method string) {
	if _, err := p.startSession(w, r, email); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.InfoContext(r.Context(), "partner portal: signed in", "method", method)
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

// linkPage serves GET /portal/link?token=: a button that posts the token.
// Opening the link spends nothing, so link previews cannot burn it.
func (p *Partner) linkPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	l, err := p.readLink(token)
	if err != nil {
		p.badLink(w, r, err)
		return
	}
	s, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if ok && s.Email == l.Email {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
		return
	}
	if !ok {
		if s, err = p.startSession(w, r, ""); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	p.render(w, r, http.StatusOK, partnerPage{Title: "Sign in", Page: "link", CSRF: s.CSRF, Email: s.Email, LinkEmail: l.Email, LinkToken: token})
}

// useLink serves POST /portal/link: it checks the token again and spends
// its nonce; only the first post signs in.
func (p *Partner) useLink(w http.ResponseWriter, r *http.Request) {
	_, form, ok := p.post(w, r, false)
	if !ok {
		return
	}
	l, err := p.readLink(form.Get("token"))
	if err != nil {
		p.badLink(w, r, err)
		return
	}
	fresh, err := p.svc.UsePortalNonce(r.Context(), l.Nonce, MaxLinkTTL)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !fresh {
		p.message(w, r, http.StatusGone, "Link already used", "This sign-in link has already been used. Each link signs in once: ask for a new one.", &navLink{Href: "/portal/", Label: "Go to the portal"})
		return
	}
	p.signIn(w, r, l.Email, "link")
}

func (p *Partner) badLink(w http.ResponseWriter, r *http.Request, err error) {
	home := &navLink{Href: "/portal/", Label: "Go to the portal"}
	if errors.Is(err, errExpired) {
		p.message(w, r, http.StatusGone, "Link expired", "This sign-in link has expired. Ask for a new one.", home)
		return
	}
	p.message(w, r, http.StatusBadRequest, "Link not valid", "This sign-in link is not valid. Check that you opened the whole link, or ask for a new one.", home)
}

func (p *Partner) providerDown(w http.ResponseWriter, r *http.Request, err error) {
	p.log.ErrorContext(r.Context(), "partner portal: OIDC provider", "err", err)
	p.message(w, r, http.StatusBadGateway, "Sign-in unavailable", "We could not complete sign-in with your identity provider just now. Please try again in a moment.",
		&navLink{Href: "/portal/", Label: "Go to the portal"})
}
