package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// DefaultEmailTimeout bounds one e-mail attempt: dialling, TLS and the
// whole SMTP conversation.
const DefaultEmailTimeout = 30 * time.Second

// EmailConfig configures the e-mail channel.
//
// URL (SPKEY_SMTP_URL) names the relay:
//
//	smtp://host:25                        plain SMTP; no AUTH unless a user is given
//	smtp://user:pass@host:587?starttls=true  STARTTLS, required: a relay that
//	                                      does not offer it is an error
//	smtps://user:pass@host:465            TLS from the first byte (implicit TLS)
//
// The port defaults to 465 for smtps, 587 for smtp with starttls=true and
// 25 otherwise. User and password are percent-decoded and sent with AUTH
// PLAIN, which only ever happens over TLS (smtps or starttls=true), or to a
// relay on a loopback address. The option insecure_skip_verify=true accepts
// any certificate from the relay (a self-signed one on a relay you run
// yourself): the connection is then encrypted but not authenticated, so
// anyone able to intercept it can read the mail and the password. No other
// options are accepted.
//
// From (SPKEY_SMTP_FROM) is the sender, "doorbell@example.com" or
// "Doorbell <doorbell@example.com>"; its domain also names the messages
// (Message-ID). PublicURL, when set, is shown at the foot of each message
// and its host name is what the client greets the relay with (EHLO).
type EmailConfig struct {
	URL, From string
	PublicURL string
	// Timeout bounds one attempt (DefaultEmailTimeout when zero).
	Timeout time.Duration
}

// Email sends one message per ring per resident through an SMTP relay.
// It implements Channel for es.ConsumerDoorbellEmail.
type Email struct {
	addr      string // host:port
	host      string // for TLS verification and AUTH
	implicit  bool   // smtps
	starttls  bool
	insecure  bool
	user      string
	pass      string
	auth      bool
	from      *mail.Address
	domain    string // of from, for Message-ID
	publicURL string
	helo      string
	timeout   time.Duration
	redacted  string
}

// NewEmail checks cfg and returns the channel. Errors name the setting at
// fault (SPKEY_SMTP_URL, SPKEY_SMTP_FROM) and never contain the password.
func NewEmail(cfg EmailConfig) (*Email, error) {
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, errors.New("SPKEY_SMTP_URL is empty: set it to smtp://host:25, smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465")
	}
	// url.Parse errors quote the whole URL, password included: do not wrap.
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("SPKEY_SMTP_URL is not a valid URL (the form is smtp://user:pass@host:587?starttls=true; percent-encode special characters in the user and password)")
	}
	e := &Email{timeout: cfg.Timeout, redacted: u.Redacted()}
	if e.timeout <= 0 {
		e.timeout = DefaultEmailTimeout
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		e.implicit = true
	default:
		return nil, fmt.Errorf("SPKEY_SMTP_URL: scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, errors.New("SPKEY_SMTP_URL: the relay's host is missing (smtp://host:port)")
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("SPKEY_SMTP_URL: a path is not allowed (smtp://host:port?options)")
	}
	for k, vs := range u.Query() {
		v := ""
		if len(vs) > 0 {
			v = vs[len(vs)-1]
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("SPKEY_SMTP_URL: option %s must be true or false, not %q", k, v)
		}
		switch k {
		case "starttls":
			e.starttls = b
		case "insecure_skip_verify":
			e.insecure = b
		default:
			return nil, fmt.Errorf("SPKEY_SMTP_URL: unknown option %q (known: starttls, insecure_skip_verify)", k)
		}
	}
	if e.implicit && e.starttls {
		return nil, errors.New("SPKEY_SMTP_URL: smtps is TLS already; starttls=true goes with smtp:// only")
	}
	e.host = u.Hostname()
	port := u.Port()
	if port == "" {
		switch {
		case e.implicit:
			port = "465"
		case e.starttls:
			port = "587"
		default:
			port = "25"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("SPKEY_SMTP_URL: bad port %q", port)
	}
	e.addr = net.JoinHostPort(e.host, port)
	if u.User != nil {
		e.auth = true
		e.user = u.User.Username()
		e.pass, _ = u.User.Password()
		if !e.implicit && !e.starttls && !isLoopback(e.host) {
			return nil, errors.New("SPKEY_SMTP_URL: a user and password would be sent unencrypted: use smtps:// or ?starttls=true (plain AUTH is allowed to a loopback relay only)")
		}
	}
	if strings.TrimSpace(cfg.From) == "" {
		return nil, errors.New("SPKEY_SMTP_FROM is empty: set the sender address, e.g. Doorbell <doorbell@example.com>")
	}
	from, err := mail.ParseAddress(stripCRLF(cfg.From))
	if err != nil {
		return nil, fmt.Errorf("SPKEY_SMTP_FROM: %q is not an e-mail address: %v", cfg.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 0 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("SPKEY_SMTP_FROM: %q has no domain", cfg.From)
	}
	e.from, e.domain = from, from.Address[at+1:]
	e.publicURL = stripCRLF(strings.TrimSpace(cfg.PublicURL))
	e.helo = "localhost"
	if pu, err := url.Parse(e.publicURL); err == nil && e.publicURL != "" && pu.Hostname() != "" {
		e.helo = pu.Hostname()
	} else if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		e.helo = h
	}
	return e, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String describes the relay with the password masked (for start-up logs).
func (e *Email) String() string { return e.redacted }

// Consumer implements Channel.
func (e *Email) Consumer() string { return es.ConsumerDoorbellEmail }

// Name implements Channel.
func (e *Email) Name() string { return user.ChannelEmail }

// Deliver sends the message of one ring to one resident. A 2xx end of DATA
// is delivered; a permanent (5xx) reply at any step fails the row for good
// with the reply code as StatusCode; a transient (4xx) reply, a network
// error or a timeout is retried. Every attempt carries the same Message-ID
// and Date, so a retry after a lost reply is recognisable as the same
// message.
//
// A resident who has no e-mail address on file any more (it was removed
// after the ring was queued) is skipped, not failed: there is nothing left
// to send, as with a resident removed from the lock.
func (e *Email) Deliver(ctx context.Context, d Delivery) outbox.Result {
	if d.Event.Type != doorbell.TypeDoorbellRang {
		return outbox.Result{Status: store.StatusSkipped, Err: fmt.Errorf("e-mail is sent for rings only, not %s", d.Event.Type)}
	}
	if strings.TrimSpace(d.User.Email) == "" {
		return outbox.Result{Status: store.StatusSkipped, Err: errors.New("the resident has no e-mail address any more")}
	}
	to, err := mail.ParseAddress(stripCRLF(d.User.Email))
	if err != nil {
		return outbox.Result{Status: store.StatusFailed, Err: fmt.Errorf("the resident's e-mail address %q is not valid: %v", d.User.Email, err)}
	}
	msg := e.message(d, to)
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if err := e.send(ctx, to.Address, msg); err != nil {
		return classifySMTP(err)
	}
	return outbox.Result{Status: store.StatusDelivered, StatusCode: 250}
}

// setupError marks a failure before the relay saw the recipient (EHLO,
// STARTTLS, AUTH, MAIL FROM): the relay's or the operator's problem, never
// the message's, so it is retried even on a 5xx (a fixed password or relay
// then delivers what was queued) until the attempts run out.
type setupError struct{ err error }

func (e setupError) Error() string { return e.err.Error() }
func (e setupError) Unwrap() error { return e.err }

// classifySMTP turns a failed conversation into a Result.
func classifySMTP(err error) outbox.Result {
	var tp *textproto.Error
	var setup setupError
	if errors.As(err, &tp) {
		if tp.Code >= 500 && tp.Code < 600 && !errors.As(err, &setup) {
			return outbox.Result{Status: store.StatusFailed, StatusCode: tp.Code, Err: err}
		}
		return outbox.Result{Status: store.OutcomeRetry, StatusCode: tp.Code, Err: err}
	}
	return outbox.Result{Status: store.OutcomeRetry, Err: err}
}

// send runs one SMTP conversation. The connection's deadline is ctx's, and
// ending ctx breaks it off.
func (e *Email) send(ctx context.Context, rcpt string, msg []byte) (err error) {
	dialer := &net.Dialer{Timeout: e.timeout}
	var conn net.Conn
	if e.implicit {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: e.tlsConfig()}).DialContext(ctx, "tcp", e.addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", e.addr)
	}
	if err != nil {
		return fmt.Errorf("connect to %s: %w", e.addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
	}()

	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", e.addr, err)
	}
	defer c.Close()
	if err := c.Hello(e.helo); err != nil {
		return setupError{fmt.Errorf("EHLO: %w", err)}
	}
	if e.starttls {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("relay %s does not offer STARTTLS, which starttls=true requires", e.addr)
		}
		if err := c.StartTLS(e.tlsConfig()); err != nil {
			return setupError{fmt.Errorf("STARTTLS: %w", err)}
		}
	}
	if e.auth {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("relay %s does not offer AUTH, but SPKEY_SMTP_URL has a user", e.addr)
		}
		if err := c.Auth(smtp.PlainAuth("", e.user, e.pass, e.host)); err != nil {
			return setupError{fmt.Errorf("AUTH as %q: %w", e.user, err)}
		}
	}
	if err := c.Mail(e.from.Address); err != nil {
		return setupError{fmt.Errorf("MAIL FROM: %w", err)}
	}
	if err := c.Rcpt(rcpt); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	// The relay has the message: a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

func (e *Email) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: e.host, InsecureSkipVerify: e.insecure, MinVersion: tls.VersionTLS12}
}

// MessageID returns the Message-ID (without angle brackets) of ring
// ringID's message to userID: the same on every attempt.
func (e *Email) MessageID(ringID, userID string) string {
	return "ring-" + stripCRLF(ringID) + "." + stripCRLF(userID) + "@" + e.domain
}

// message builds the whole RFC 5322 message, CRLF line ends, body in
// quoted-printable UTF-8.
func (e *Email) message(d Delivery, to *mail.Address) []byte {
	r := d.Ring
	rang, err := time.Parse(domain.TimeLayout, r.RangAt)
	if err != nil {
		rang = time.Now()
	}
	subject := fmt.Sprintf("Someone is at the door (lock %d)", r.LockID)
	if r.VisitorName != "" {
		// The whole name is in the body; the subject keeps a short one so
		// the encoded header stays far below the 998-byte line limit.
		name := []rune(r.VisitorName)
		if len(name) > 30 {
			name = append(name[:30], '…')
		}
		subject += ": " + string(name)
	}
	var h bytes.Buffer
	header := func(k, v string) { h.WriteString(k + ": " + stripCRLF(v) + "\r\n") }
	header("From", e.from.String())
	header("To", (&mail.Address{Name: stripCRLF(d.Resident.Name), Address: to.Address}).String())
	header("Subject", mime.QEncoding.Encode("utf-8", stripCRLF(subject)))
	header("Date", rang.Format(time.RFC1123Z))
	header("Message-ID", "<"+e.MessageID(r.RingID, d.Claim.Target)+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	h.WriteString("\r\n")

	var b strings.Builder
	name := d.Resident.Name
	if name == "" {
		name = "resident"
	}
	fmt.Fprintf(&b, "Hello %s,\n\n", name)
	fmt.Fprintf(&b, "someone rang the doorbell of lock %d at %s.\n\n", r.LockID, rang.UTC().Format("Mon 2 Jan 2006 15:04:05 MST"))
	if r.VisitorName != "" {
		fmt.Fprintf(&b, "Visitor: %s\n", r.VisitorName)
	}
	if r.Message != "" {
		fmt.Fprintf(&b, "Message: %s\n", r.Message)
	}
	fmt.Fprintf(&b, "Source: %s\n", r.Source)
	b.WriteString("\n-- \nThis message was sent automatically by the doorbell of spkey")
	if e.publicURL != "" {
		b.WriteString(" (" + e.publicURL + ")")
	}
	b.WriteString(".\nYou can switch e-mail notifications off in your notification preferences.\n")

	qw := quotedprintable.NewWriter(&h)
	_, _ = qw.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(b.String(), "\r", ""), "\n", "\r\n")))
	_ = qw.Close()
	return h.Bytes()
}

// stripCRLF replaces line breaks with spaces: nothing from a visitor, a
// user record or the configuration can start a header of its own.
func stripCRLF(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
}
