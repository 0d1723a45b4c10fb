package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// doorbellFixture is a tenant "acme" owning lock 7 with two residents
// (one with an e-mail address, one with a phone only).
type doorbellFixture struct {
	svc        *app.Service
	st         *store.Store
	key        app.Principal
	alice, bob string
	queued     chan []string
}

func newDoorbellFixture(t *testing.T, b testenv.Backend) doorbellFixture {
	t.Helper()
	st := testenv.OpenStore(t, b)
	f := doorbellFixture{st: st, queued: make(chan []string, 64)}
	// The doorbell consumers' routing, with every channel configured; the
	// after-commit wake-up goes to f.queued.
	e := outbox.New(st, outbox.Config{}, testenv.Discard())
	for _, ch := range []string{user.ChannelLive, user.ChannelEmail, user.ChannelHook} {
		e.Register(notify.Rows(ch))
	}
	st.SetRouter(wakeTo{e, f.queued})
	f.svc = app.New(st, app.Options{Channels: app.Channels{Email: true, Hook: true}}, testenv.Discard())
	d := testenv.SeedDoorbell(t, f.svc)
	f.key, f.alice, f.bob = d.Key, d.Alice, d.Bob
	return f
}

// wakeTo routes as its Router does and sends each after-commit wake-up to
// a channel.
type wakeTo struct {
	store.Router
	queued chan []string
}

func (w wakeTo) WakeLocal(c []string) { w.queued <- c }

func TestRingQueuesOneDeliveryPerResidentPerChannel(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			f := newDoorbellFixture(t, b)
			res, err := f.svc.RingDoorbell(ctx, app.Call{P: f.key}, 7, app.RingInput{VisitorName: "Courier", Message: "Parcel"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Notified != 2 || res.RingID == "" || res.Event == nil || res.Event.Type != "DoorbellRang" {
				t.Fatalf("ring answer: %+v", res)
			}
			select {
			case c := <-f.queued:
				if diff := cmp.Diff([]string{es.ConsumerDoorbellLive, es.ConsumerDoorbellEmail, es.ConsumerDoorbellHook}, c); diff != "" {
					t.Errorf("queued consumers (-want +got):\n%s", diff)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no after-commit signal")
			}
			// Bob has no e-mail: live+hook for him, live+email+hook for Alice.
			counts := map[string]int{}
			for _, c := range []string{es.ConsumerDoorbellLive, es.ConsumerDoorbellEmail, es.ConsumerDoorbellHook} {
				rows, err := f.st.Outbox(ctx, c, 100)
				if err != nil {
					t.Fatal(err)
				}
				counts[c] = len(rows)
			}
			if diff := cmp.Diff(map[string]int{es.ConsumerDoorbellLive: 2, es.ConsumerDoorbellEmail: 1, es.ConsumerDoorbellHook: 2}, counts); diff != "" {
				t.Errorf("outbox rows (-want +got):\n%s", diff)
			}

			// Claim the e-mail row, fail once, then deliver.
			now := time.Now()
			cl, err := f.st.Claim(ctx, es.ConsumerDoorbellEmail, "n1", now, time.Minute, 10)
			if err != nil || len(cl) != 1 || cl[0].Target != f.alice {
				t.Fatalf("claim: %v %+v", err, cl)
			}
			if again, _ := f.st.Claim(ctx, es.ConsumerDoorbellEmail, "n2", now, time.Minute, 10); len(again) != 0 {
				t.Fatalf("a leased row was claimed twice: %+v", again)
			}
			if err := f.st.Finish(ctx, cl[0], "n1", store.Outcome{Status: store.OutcomeRetry, At: now, NextAttempt: now.Add(time.Second), Error: "dial: refused"}); err != nil {
				t.Fatal(err)
			}
			if early, _ := f.st.Claim(ctx, es.ConsumerDoorbellEmail, "n1", now, time.Minute, 10); len(early) != 0 {
				t.Fatalf("a row was claimed before its next attempt: %+v", early)
			}
			cl, err = f.st.Claim(ctx, es.ConsumerDoorbellEmail, "n2", now.Add(2*time.Second), time.Minute, 10)
			if err != nil || len(cl) != 1 || cl[0].Attempts != 1 {
				t.Fatalf("reclaim: %v %+v", err, cl)
			}
			if err := f.st.Finish(ctx, cl[0], "n1", store.Outcome{Status: store.StatusDelivered, At: now}); err != store.ErrLeaseLost {
				t.Fatalf("finish by a node without the lease: %v", err)
			}
			if err := f.st.Finish(ctx, cl[0], "n2", store.Outcome{Status: store.StatusDelivered, At: now, StatusCode: 250}); err != nil {
				t.Fatal(err)
			}
			page, err := f.svc.LockRings(ctx, f.key, 7, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Rings) != 1 || page.Rings[0].Status != "ringing" || len(page.Rings[0].Residents) != 2 {
				t.Fatalf("rings: %+v", page)
			}
			var email *app.ChannelDelivery
			for _, r := range page.Rings[0].Residents {
				for i, d := range r.Deliveries {
					if r.UserID == f.alice && d.Channel == "email" {
						email = &r.Deliveries[i]
					}
				}
			}
			if email == nil || email.Status != "delivered" || email.Attempts != 2 || email.LastError != "" {
				t.Fatalf("alice's e-mail delivery: %+v", email)
			}
			atts, err := f.st.Attempts(ctx, cl[0].ID)
			if err != nil || len(atts) != 2 || atts[0].Outcome != "retry" || atts[0].Error != "dial: refused" || atts[1].StatusCode != 250 {
				t.Fatalf("attempts: %v %+v", err, atts)
			}

			// Answering: a stranger, an API key, the first answer, a late one.
			alice := app.Principal{Kind: app.UserCaller, UserID: f.alice}
			bob := app.Principal{Kind: app.UserCaller, UserID: f.bob}
			stranger := app.Principal{Kind: app.UserCaller, UserID: "99999999-2222-4333-8444-555555555555"}
			wantCode := func(err error, code domain.Code) {
				t.Helper()
				if domain.ErrorCode(err) != code {
					t.Fatalf("got %v, want %s", err, code)
				}
			}
			_, err = f.svc.AnswerRing(ctx, app.Call{P: stranger}, res.RingID)
			wantCode(err, domain.Forbidden)
			_, err = f.svc.AnswerRing(ctx, app.Call{P: f.key}, res.RingID)
			wantCode(err, domain.Forbidden)
			_, err = f.svc.AnswerRing(ctx, app.Call{P: alice}, "00000000-2222-4333-8444-555555555555")
			wantCode(err, domain.NotFound)
			if _, err := f.svc.DeclineRing(ctx, app.Call{P: bob}, res.RingID); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.AnswerRing(ctx, app.Call{P: bob}, res.RingID)
			wantCode(err, domain.Conflict)
			if _, err := f.svc.AnswerRing(ctx, app.Call{P: alice}, res.RingID); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.AnswerRing(ctx, app.Call{P: alice}, res.RingID)
			wantCode(err, domain.Conflict)
			mine, err := f.svc.Notifications(ctx, bob, f.bob, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(mine.Rings) != 1 || mine.Rings[0].Status != "answered" || mine.Rings[0].AnsweredBy == nil || mine.Rings[0].AnsweredBy.Name != "Alice" ||
				len(mine.Rings[0].Residents) != 1 || mine.Rings[0].Residents[0].UserID != f.bob {
				t.Fatalf("bob's notifications: %+v", mine)
			}
			_, err = f.svc.Notifications(ctx, bob, f.alice, "", 10)
			wantCode(err, domain.Forbidden)

			// Preferences: e-mail off, quiet hours, unknown zone refused.
			_, err = f.svc.SetNotificationPreferences(ctx, app.Call{P: alice}, f.alice, app.PreferencesInput{QuietHours: &user.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Mars/Olympus"}})
			wantCode(err, domain.Invalid)
			if _, err := f.svc.SetNotificationPreferences(ctx, app.Call{P: alice}, f.alice, app.PreferencesInput{Channels: map[string]bool{"email": false},
				QuietHours: &user.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Europe/Warsaw"}}); err != nil {
				t.Fatal(err)
			}
			p, err := f.svc.NotificationPreferences(ctx, alice, f.alice)
			if err != nil || p.Email || !p.Live || p.QuietHours == nil || p.QuietHours.TimeZone != "Europe/Warsaw" {
				t.Fatalf("preferences: %v %+v", err, p)
			}

			// Rebuild gives the same read models.
			before, err := f.st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.svc.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
			after, err := f.st.DumpReadModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("rebuild differs (-live +rebuilt):\n%s", diff)
			}
		})
	}
}
