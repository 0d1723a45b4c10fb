package portal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/skip2/go-qrcode"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
)

// QR code sizes in pixels (?size=).
const (
	qrMinSize     = 128
	qrMaxSize     = 1024
	qrDefaultSize = 256
)

// pageData is everything templates/doorbell.html shows. Residents carry a
// name and an id only: the template cannot leak what it is not given.
type pageData struct {
	Title                string
	CSS                  template.CSS
	Self                 string // the page's URL relative to itself ("7")
	Residents            []residentItem
	VisitorName, Message string
	Error, ErrorField    string
	MaxName, MaxMessage  int
	Rang, Notice         *notice
}

type residentItem struct{ UserID, Name string }

type notice struct{ Heading, Text string }

// ringForm is the body of POST /doorbell/{lockId}.
type ringForm struct{ ResidentUserID, VisitorName, Message string }

// page serves GET /doorbell/{lockId}.
func (d *Doorbell) page(w http.ResponseWriter, r *http.Request) {
	id, ok := lockID(r)
	if !ok {
		d.notFound(w, r)
		return
	}
	residents, err := d.svc.Residents(r.Context(), app.Principal{}, id)
	if err != nil {
		d.fail(w, r, id, err)
		return
	}
	d.render(w, r, http.StatusOK, formPage(id, residents, ringForm{}))
}

// ring serves POST /doorbell/{lockId}: it checks where the post comes
// from, the lock, the input and the rate limits, in that order, then
// rings and shows a confirmation (200) on the same URL.
func (d *Doorbell) ring(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := lockID(r)
	if !ok {
		d.notFound(w, r)
		return
	}
	if err := d.sameOrigin(r); err != nil {
		d.log.InfoContext(ctx, "doorbell: cross-site ring refused", "lock_id", id, "err", err,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		d.render(w, r, http.StatusForbidden, pageData{Title: "Ring from the doorbell page", Self: self(id), Notice: &notice{
			Heading: "Ring from the doorbell page",
			Text:    "This ring was sent from another website, so nobody was rung. Scan the QR code at the door to open the doorbell page.",
		}})
		return
	}
	residents, err := d.svc.Residents(ctx, app.Principal{}, id)
	if err != nil {
		d.fail(w, r, id, err)
		return
	}
	form, status, err := readForm(w, r)
	if err != nil {
		p := formPage(id, residents, ringForm{})
		p.Error = "We could not read what you sent. Please try again."
		d.render(w, r, status, p)
		return
	}
	field, msg := form.normalize()
	p := formPage(id, residents, form)
	if msg != "" {
		p.Error, p.ErrorField = msg, field
		d.render(w, r, http.StatusBadRequest, p)
		return
	}
	var target *residentItem
	if form.ResidentUserID != "" {
		for i, res := range p.Residents {
			if strings.EqualFold(res.UserID, form.ResidentUserID) {
				target = &p.Residents[i]
			}
		}
		if target == nil {
			p.Error = "That person is not listed at this door any more. Please choose again."
			d.render(w, r, http.StatusBadRequest, p)
			return
		}
	}
	addr := clientAddr(r, d.cfg.TrustProxy)
	if ok, wait := d.lim.take(id, addr); !ok {
		secs := retryAfterSeconds(wait)
		unit := "seconds"
		if secs == 1 {
			unit = "second"
		}
		d.log.InfoContext(ctx, "doorbell: ring rate limited", "lock_id", id, "client", addr, "retry_after_s", secs)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		p.Error = fmt.Sprintf("Please wait %d %s before ringing again.", secs, unit)
		d.render(w, r, http.StatusTooManyRequests, p)
		return
	}
	res, err := d.svc.RingFromVisitor(ctx, id, form.ResidentUserID, form.VisitorName, form.Message)
	if err != nil {
		d.lim.refund(id, addr)
		var de *domain.Error
		if errors.As(err, &de) && de.Code == domain.Invalid {
			p.Error = de.Message
			if len(de.Details) > 0 {
				p.ErrorField = de.Details[0].Field
			}
			d.render(w, r, http.StatusBadRequest, p)
			return
		}
		d.fail(w, r, id, err)
		return
	}
	d.log.InfoContext(ctx, "doorbell: visitor rang", "lock_id", id, "ring_id", res.RingID, "notified", res.Notified)
	n := confirmation(target, res.Notified)
	d.render(w, r, http.StatusOK, pageData{Title: n.Heading, Self: self(id), Rang: &n})
}

func confirmation(target *residentItem, notified int) notice {
	switch {
	case target != nil:
		return notice{Heading: "Ringing " + target.Name + "…", Text: "We let " + target.Name + " know you are at the door."}
	case notified == 0:
		return notice{Heading: "Ring recorded", Text: "Nobody is listed at this door yet, so nobody was notified, but your ring was recorded."}
	case notified == 1:
		return notice{Heading: "Ringing…", Text: "We told 1 resident you are at the door."}
	}
	return notice{Heading: "Ringing everybody…", Text: fmt.Sprintf("We told %d residents you are at the door.", notified)}
}

// readForm reads the url-encoded body (the only encoding the page sends).
func readForm(w http.ResponseWriter, r *http.Request) (ringForm, int, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		return ringForm{}, http.StatusUnsupportedMediaType, errors.New("not a url-encoded form")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return ringForm{}, http.StatusBadRequest, err
	}
	f := r.PostForm
	return ringForm{ResidentUserID: strings.TrimSpace(f.Get("residentUserId")), VisitorName: f.Get("visitorName"), Message: f.Get("message")}, 0, nil
}

// normalize trims the form as the service will and checks it, returning
// the field at fault and a message for the visitor ("" when fine).
// Browsers send a textarea's line breaks as CRLF; they count as one.
func (f *ringForm) normalize() (field, msg string) {
	f.VisitorName = strings.TrimSpace(f.VisitorName)
	f.Message = strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(f.Message, "\r\n", "\n"), "\r", "\n"))
	if m := checkText("Your name", f.VisitorName, maxVisitorName, false); m != "" {
		return "visitorName", m
	}
	if m := checkText("Your message", f.Message, maxMessage, true); m != "" {
		return "message", m
	}
	return "", ""
}

func checkText(what, s string, limit int, multiline bool) string {
	if !utf8.ValidString(s) {
		return what + " contains characters we cannot read."
	}
	if n := utf8.RuneCountInString(s); n > limit {
		return fmt.Sprintf("%s is too long: %d characters, at most %d.", what, n, limit)
	}
	for _, c := range s {
		if unicode.IsControl(c) && !(multiline && (c == '\n' || c == '\t')) {
			if multiline {
				return what + " contains a control character."
			}
			return what + " must be one line of text."
		}
	}
	return ""
}

// errCrossSite is the answer of sameOrigin to a post from another site.
var errCrossSite = errors.New("cross-site form post")

// sameOrigin refuses form posts sent by other sites (403).
//
// The page has no session, so there is nothing a CSRF token could be tied
// to (any site can fetch the public page and copy a token from it). Yet a
// page on another site could make its own visitors' browsers ring our
// doors: harassing residents from addresses the rate limit cannot pin on
// the attacker. Browsers say where a post comes from, so we check that:
//
//   - Sec-Fetch-Site (every current browser): same-origin or none passes,
//     anything else is refused. This is http.CrossOriginProtection.
//   - Else Origin: its host must be this request's Host or PublicURL's.
//     "Origin: null" is let through, because it is what our own page's
//     posts carry in such older browsers: the page is served with
//     Referrer-Policy: no-referrer, under which the Fetch standard sends
//     a navigation POST's origin as null.
//   - Else (no Origin either) Referer, when present, must name this host.
//   - A request with none of them does not come from a browser's form and
//     passes (curl, tests, kiosks).
func (d *Doorbell) sameOrigin(r *http.Request) error {
	if r.Header.Get("Sec-Fetch-Site") == "" {
		switch r.Header.Get("Origin") {
		case "", "null":
			ref := r.Header.Get("Referer")
			if ref == "" {
				return nil
			}
			if u, err := url.Parse(ref); err == nil && u.Host != "" && (u.Host == r.Host || u.Host == d.pubHost) {
				return nil
			}
			return errCrossSite
		}
	}
	if err := d.cop.Check(r); err != nil {
		return fmt.Errorf("%w: %v", errCrossSite, err)
	}
	return nil
}

// qr serves GET /doorbell/{lockId}/qr.png.
func (d *Doorbell) qr(w http.ResponseWriter, r *http.Request) {
	id, ok := lockID(r)
	if !ok {
		d.notFound(w, r)
		return
	}
	size := qrDefaultSize
	if v, set := r.URL.Query()["size"]; set {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < qrMinSize || n > qrMaxSize {
			http.Error(w, fmt.Sprintf("size must be a whole number of pixels from %d to %d", qrMinSize, qrMaxSize), http.StatusBadRequest)
			return
		}
		size = n
	}
	if _, err := d.svc.Residents(r.Context(), app.Principal{}, id); err != nil {
		d.fail(w, r, id, err)
		return
	}
	u := d.pageURL(r, id)
	png, err := qrcode.Encode(u, qrcode.Medium, size)
	if err != nil {
		d.fail(w, r, id, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	if d.publicURL != "" {
		h.Set("Cache-Control", "public, max-age=86400")
	} else {
		// The URL comes from the request's Host (part of any cache key)
		// and, behind a trusted proxy, from X-Forwarded-Proto.
		h.Set("Cache-Control", "public, max-age=3600")
		if d.cfg.TrustProxy {
			h.Set("Vary", "X-Forwarded-Proto")
		}
	}
	sum := sha256.Sum256([]byte("qr1\x00" + u + "\x00" + strconv.Itoa(size)))
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(png))
}

func self(id int64) string { return strconv.FormatInt(id, 10) }

func formPage(id int64, residents []app.ResidentView, f ringForm) pageData {
	p := pageData{Title: "Doorbell", Self: self(id), VisitorName: f.VisitorName, Message: f.Message,
		Residents: make([]residentItem, 0, len(residents))}
	for _, r := range residents {
		name := strings.TrimSpace(r.Name)
		if name == "" {
			name = "Resident"
		}
		p.Residents = append(p.Residents, residentItem{UserID: r.UserID, Name: name})
	}
	return p
}

// fail answers an error of the service: the 404 page for an unknown lock,
// else a logged 500 page.
func (d *Doorbell) fail(w http.ResponseWriter, r *http.Request, id int64, err error) {
	if domain.ErrorCode(err) == domain.NotFound {
		d.notFound(w, r)
		return
	}
	d.log.ErrorContext(r.Context(), "doorbell", "lock_id", id, "method", r.Method, "err", err)
	d.render(w, r, http.StatusInternalServerError, pageData{Title: "Something went wrong", Self: self(id), Notice: &notice{
		Heading: "Something went wrong",
		Text:    "We could not ring just now. Please try again in a moment.",
	}})
}

func (d *Doorbell) notFound(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusNotFound, pageData{Title: "No doorbell here", Notice: &notice{
		Heading: "No doorbell here",
		Text:    "This link does not belong to a doorbell on this server. Please check the QR code at the door.",
	}})
}

// render writes page p with status; it renders into memory first so a
// template error is a clean 500.
func (d *Doorbell) render(w http.ResponseWriter, r *http.Request, status int, p pageData) {
	p.CSS = template.CSS(pageCSS)
	p.MaxName, p.MaxMessage = maxVisitorName, maxMessage
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		d.log.ErrorContext(r.Context(), "doorbell: render", "err", err)
		http.Error(w, "Internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
