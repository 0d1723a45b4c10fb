package notify_test

import (
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const testFrom = "Doorbell <doorbell@door.example.org>"

func newEmail(t testing.TB, url string) *notify.Email {
	t.Helper()
	e, err := notify.NewEmail(notify.EmailConfig{URL: url, From: testFrom, PublicURL: "https://spkey.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func messageID(ringID, userID string) string {
	return "<ring-" + ringID + "." + userID + "@door.example.org>"
}

func decodeBody(t testing.TB, m smtpMsg) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEmailDelivered: one message per ring to the resident with an
// address, with the documented headers (a non-ASCII subject encoded, a
// stable Message-ID), the ring in the body, and a visitor name carrying a
// line break unable to add a header or a recipient.
func TestEmailDelivered(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := startSMTP(t, &smtpServer{}, "", smtpPlain)
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+srv.Addr))

			ringID := f.ring(app.RingInput{VisitorName: "Zoë Łukasz", Message: "Paket für dich"})
			d := f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellEmail, store.StatusDelivered)
			if d.Attempts != 1 {
				t.Errorf("attempts: %d", d.Attempts)
			}
			if a := f.attempts(d.OutboxID); len(a) != 1 || a[0].StatusCode != 250 || a[0].Outcome != store.StatusDelivered {
				t.Errorf("recorded attempts: %+v", a)
			}
			if _, found := f.delivery(ringID, f.bob, es.ConsumerDoorbellEmail); found {
				t.Error("Bob has no e-mail address but got an e-mail row")
			}
			msgs := srv.Accepted()
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.From != "doorbell@door.example.org" || !cmp.Equal(m.To, []string{"alice@example.com"}) {
				t.Errorf("envelope: from %q to %q", m.From, m.To)
			}
			h := m.Header(t)
			subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil {
				t.Fatal(err)
			}
			if subject != "Someone is at the door (lock 7): Zoë Łukasz" || !strings.HasPrefix(h.Get("Subject"), "=?utf-8?q?") {
				t.Errorf("subject %q (raw %q)", subject, h.Get("Subject"))
			}
			from, err := h.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Address != "doorbell@door.example.org" || from[0].Name != "Doorbell" {
				t.Errorf("From: %q %v", h.Get("From"), err)
			}
			to, err := h.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Address != "alice@example.com" {
				t.Errorf("To: %q %v", h.Get("To"), err)
			}
			for k, want := range map[string]string{
				"Message-Id":     messageID(ringID, f.alice),
				"Mime-Version":   "1.0",
				"Content-Type":   "text/plain; charset=utf-8",
				"Auto-Submitted": "auto-generated",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if _, err := h.Date(); err != nil {
				t.Errorf("Date %q: %v", h.Get("Date"), err)
			}
			body := decodeBody(t, m)
			for _, want := range []string{"Hello Alice", "lock 7", "Visitor: Zoë Łukasz", "Message: Paket für dich", "Source: api", "https://spkey.example.org"} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}

			// A visitor name with a line break never reaches a subject: it
			// is refused at the door (rings recorded before that rule are
			// still kept on one line by stripCRLF, email_internal_test.go).
			_, err = f.svc.RingDoorbell(context.Background(), app.Call{P: f.key}, 7, app.RingInput{VisitorName: "Eve\r\nBcc: mallory@example.net", Source: "visitor-page"})
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.Invalid || len(de.Details) != 1 || de.Details[0].Field != "visitorName" {
				t.Errorf("ring with a CRLF visitor name: %v, want Invalid naming visitorName", err)
			}
		})
	}
}

// TestEmailRelayDownThenUp: while nothing listens at the relay's address
// the row stays pending with the error recorded; once a relay comes up the
// message goes out exactly once.
func TestEmailRelayDownThenUp(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			addr := reserveAddr(t)
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+addr))
			ringID := f.ring(app.RingInput{})
			d := f.waitFailedAttempt(ringID, f.alice, es.ConsumerDoorbellEmail)
			if !strings.Contains(d.LastError, "connect") || d.NextAttemptAt == "" {
				t.Errorf("pending row: %+v", d)
			}
			srv := startSMTP(t, &smtpServer{}, addr, smtpPlain)
			d = f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellEmail, store.StatusDelivered)
			if d.Attempts < 2 || d.LastError != "" {
				t.Errorf("delivered row: %+v", d)
			}
			a := f.attempts(d.OutboxID)
			if len(a) != d.Attempts || a[0].Outcome != store.OutcomeRetry || a[len(a)-1].Outcome != store.StatusDelivered {
				t.Errorf("attempts: %+v", a)
			}
			if n := len(srv.Messages()); n != 1 {
				t.Errorf("the relay got %d messages, want 1", n)
			}
		})
	}
}

// TestEmailTransientReplyRetried: a 451 at the end of DATA is retried, and
// the retry is the same message (same Message-ID); it is accepted once.
func TestEmailTransientReplyRetried(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := startSMTP(t, &smtpServer{DataReply: func(n int) error {
				if n == 0 {
					return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
				}
				return nil
			}}, "", smtpPlain)
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+srv.Addr))
			ringID := f.ring(app.RingInput{VisitorName: "Courier"})
			d := f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellEmail, store.StatusDelivered)
			a := f.attempts(d.OutboxID)
			if len(a) != 2 || a[0].Outcome != store.OutcomeRetry || a[0].StatusCode != 451 || !strings.Contains(a[0].Error, "451") ||
				a[1].Outcome != store.StatusDelivered {
				t.Fatalf("attempts: %+v", a)
			}
			msgs := srv.Messages()
			if len(msgs) != 2 || msgs[0].Accepted || !msgs[1].Accepted {
				t.Fatalf("messages: %+v", msgs)
			}
			id0, id1 := msgs[0].Header(t).Get("Message-Id"), msgs[1].Header(t).Get("Message-Id")
			if id0 != messageID(ringID, f.alice) || id0 != id1 {
				t.Errorf("Message-IDs %q and %q", id0, id1)
			}
			if string(msgs[0].Data) != string(msgs[1].Data) {
				t.Error("the retry is not the same message")
			}
		})
	}
}

// TestEmailPermanentReplyFails: a 550 fails the row after one attempt,
// with the reply code recorded, and it is not retried.
func TestEmailPermanentReplyFails(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := startSMTP(t, &smtpServer{DataReply: func(int) error {
				return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox"}
			}}, "", smtpPlain)
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+srv.Addr))
			ringID := f.ring(app.RingInput{})
			d := f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellEmail, store.StatusFailed)
			if d.Attempts != 1 || !strings.Contains(d.LastError, "550") || !strings.Contains(d.LastError, "No such mailbox") || d.DoneAt == "" {
				t.Errorf("failed row: %+v", d)
			}
			if a := f.attempts(d.OutboxID); len(a) != 1 || a[0].Outcome != store.StatusFailed || a[0].StatusCode != 550 {
				t.Errorf("attempts: %+v", a)
			}
			// A later ring's row is handled, and the failed one was not
			// picked up again meanwhile.
			later := f.ring(app.RingInput{})
			f.waitDelivery(later, f.alice, es.ConsumerDoorbellEmail, store.StatusFailed)
			if d, _ := f.delivery(ringID, f.alice, es.ConsumerDoorbellEmail); d.Attempts != 1 {
				t.Errorf("the failed row was retried: %+v", d)
			}
			if n := len(srv.Messages()); n != 2 {
				t.Errorf("the relay saw %d messages, want 2 (one per ring)", n)
			}
		})
	}
}

// ringDelivery is a Delivery as the engine hands it over, for the tests
// that talk to a channel directly.
func ringDelivery() notify.Delivery {
	const ringID, alice = "aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-2222-4333-8444-555555555555"
	return notify.Delivery{
		Claim: store.Claim{OutboxRow: es.OutboxRow{ID: 1, Consumer: es.ConsumerDoorbellEmail, AggregateType: doorbell.AggregateType, AggregateID: ringID, Target: alice}},
		Event: es.Record{Type: doorbell.TypeDoorbellRang, AggregateType: doorbell.AggregateType, AggregateID: ringID},
		Ring: doorbell.State{RingID: ringID, LockID: 7, Residents: []doorbell.Target{{UserID: alice, Name: "Alice"}}, Source: "api",
			RangAt: "2026-03-01T12:00:00.000Z", Status: doorbell.StatusRinging, VisitorName: "Courier"},
		Resident: doorbell.Target{UserID: alice, Name: "Alice"},
		User:     store.User{UserID: alice, Email: "alice@example.com"},
	}
}

// TestEmailTLSAndAuth: STARTTLS and implicit TLS relays that require AUTH
// get the message over TLS with the URL's (percent-decoded) credentials;
// starttls=true refuses a relay without STARTTLS, and a self-signed
// certificate is refused unless insecure_skip_verify=true.
func TestEmailTLSAndAuth(t *testing.T) {
	ctx := context.Background()
	d := ringDelivery()
	deliver := func(url string) outbox.Result {
		t.Helper()
		return newEmail(t, url).Deliver(ctx, d)
	}

	starttls := startSMTP(t, &smtpServer{User: "door", Pass: "p@ss:w/rd"}, "", smtpSTARTTLS)
	if r := deliver("smtp://door:p%40ss%3Aw%2Frd@" + starttls.Addr + "?starttls=true&insecure_skip_verify=true"); r.Status != store.StatusDelivered {
		t.Fatalf("STARTTLS: %+v", r)
	}
	if m := starttls.Accepted(); len(m) != 1 || !m[0].TLS || m[0].User != "door" {
		t.Fatalf("STARTTLS relay got %+v", m)
	}
	r := deliver("smtp://door:p%40ss%3Aw%2Frd@" + starttls.Addr + "?starttls=true")
	if r.Status != store.OutcomeRetry || r.Err == nil || !strings.Contains(r.Err.Error(), "certificate") {
		t.Errorf("self-signed certificate without insecure_skip_verify: %+v", r)
	}
	r = deliver("smtp://door:wrong@" + starttls.Addr + "?starttls=true&insecure_skip_verify=true")
	// An operator's mistake, not the message's: retried (until the
	// attempts run out), so fixing the password delivers what was queued.
	if r.Status != store.OutcomeRetry || r.StatusCode != 535 || strings.Contains(r.Err.Error(), "wrong") {
		t.Errorf("bad password: %+v", r)
	}

	implicit := startSMTP(t, &smtpServer{User: "door", Pass: "secret"}, "", smtpImplicit)
	if r := deliver("smtps://door:secret@" + implicit.Addr + "?insecure_skip_verify=true"); r.Status != store.StatusDelivered {
		t.Fatalf("smtps: %+v", r)
	}
	if m := implicit.Accepted(); len(m) != 1 || !m[0].TLS || m[0].User != "door" {
		t.Fatalf("smtps relay got %+v", m)
	}

	plain := startSMTP(t, &smtpServer{}, "", smtpPlain)
	r = deliver("smtp://" + plain.Addr + "?starttls=true")
	if r.Status != store.OutcomeRetry || !strings.Contains(r.Err.Error(), "STARTTLS") {
		t.Errorf("starttls=true against a relay without it: %+v", r)
	}
	if n := len(plain.Messages()); n != 0 {
		t.Errorf("the message went out in clear: %d", n)
	}

	// A user whose address was removed after the ring is skipped.
	d.User.Email = ""
	if r := deliver("smtp://" + plain.Addr); r.Status != store.StatusSkipped {
		t.Errorf("no address: %+v", r)
	}
}

// TestNewEmailValidation: bad settings are refused naming the setting,
// without echoing the password.
func TestNewEmailValidation(t *testing.T) {
	for _, c := range []struct{ url, from, want string }{
		{"", testFrom, "SPKEY_SMTP_URL"},
		{"http://relay.example.com", testFrom, "SPKEY_SMTP_URL: scheme"},
		{"smtp://", testFrom, "SPKEY_SMTP_URL: the relay's host is missing"},
		{"smtp:relay.example.com", testFrom, "SPKEY_SMTP_URL: the relay's host is missing"},
		{"smtp://u:hunter2@relay.example.com:bad", testFrom, "SPKEY_SMTP_URL is not a valid URL"},
		{"smtp://relay.example.com:70000", testFrom, "SPKEY_SMTP_URL: bad port"},
		{"smtp://relay.example.com?tls=1", testFrom, "unknown option"},
		{"smtp://relay.example.com?starttls=maybe", testFrom, "starttls must be true or false"},
		{"smtps://relay.example.com?starttls=true", testFrom, "SPKEY_SMTP_URL: smtps"},
		{"smtp://u:hunter2@relay.example.com", testFrom, "unencrypted"},
		{"smtp://relay.example.com", "", "SPKEY_SMTP_FROM"},
		{"smtp://relay.example.com", "not an address", "SPKEY_SMTP_FROM"},
	} {
		_, err := notify.NewEmail(notify.EmailConfig{URL: c.url, From: c.from})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewEmail(%q, %q) = %v, want an error with %q", c.url, c.from, err, c.want)
		}
	}
	for _, u := range []string{"smtp://relay.example.com", "smtp://u:p@relay.example.com:587?starttls=true", "smtps://u:p@relay.example.com",
		"smtp://u:p@127.0.0.1:25", "smtps://relay.example.com:465?insecure_skip_verify=true"} {
		e, err := notify.NewEmail(notify.EmailConfig{URL: u, From: "doorbell@example.com"})
		if err != nil {
			t.Errorf("NewEmail(%q): %v", u, err)
			continue
		}
		if strings.Contains(e.String(), ":p@") {
			t.Errorf("String() shows the password: %s", e)
		}
		if e.Consumer() != es.ConsumerDoorbellEmail || e.Name() != "email" {
			t.Errorf("channel names %q %q", e.Consumer(), e.Name())
		}
	}
}
