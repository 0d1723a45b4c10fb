package notify_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestResidentRemovedBeforeDelivery: rows of a resident taken off the lock
// between the ring and a successful delivery end skipped, and neither the
// relay nor the receiver ever hears of them; the other resident's rows go
// out once the receiver is up.
func TestResidentRemovedBeforeDelivery(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			smtpAddr, hookAddr := reserveAddr(t), reserveAddr(t)
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+smtpAddr), newHook(t, "http://"+hookAddr+"/ring", newSecret(t)))
			ringID := f.ring(app.RingInput{VisitorName: "Courier"})
			// Everything is queued and failing: nothing listens yet.
			f.waitFailedAttempt(ringID, f.alice, es.ConsumerDoorbellEmail)
			f.waitFailedAttempt(ringID, f.alice, es.ConsumerDoorbellHook)
			f.waitFailedAttempt(ringID, f.bob, es.ConsumerDoorbellHook)

			alice := f.alice
			if _, err := f.svc.RemoveResident(ctx, app.Call{P: f.key}, 7, app.ResidentInput{UserID: &alice}); err != nil {
				t.Fatal(err)
			}
			// The next attempt after the removal skips Alice's rows. (The
			// receivers come up only then: an attempt checked just before
			// the removal could otherwise still reach them.)
			for _, c := range []string{es.ConsumerDoorbellEmail, es.ConsumerDoorbellHook} {
				d := f.waitDelivery(ringID, f.alice, c, store.StatusSkipped)
				if !strings.Contains(d.LastError, "removed") || d.Attempts < 2 {
					t.Errorf("%s row: %+v", c, d)
				}
				if a := f.attempts(d.OutboxID); a[len(a)-1].Outcome != store.StatusSkipped {
					t.Errorf("%s attempts: %+v", c, a)
				}
			}
			srv := startSMTP(t, &smtpServer{}, smtpAddr, smtpPlain)
			rc := startReceiver(t, &receiver{}, hookAddr)
			f.waitDelivery(ringID, f.bob, es.ConsumerDoorbellHook, store.StatusDelivered)

			if n := len(srv.Messages()); n != 0 {
				t.Errorf("the relay got %d messages for a removed resident", n)
			}
			reqs := rc.Requests()
			if len(reqs) != 1 || reqs[0].ID != "msg_"+ringID+"_"+f.bob {
				t.Errorf("receiver got %d requests: %+v", len(reqs), reqs)
			}
			for _, c := range []string{es.ConsumerDoorbellEmail, es.ConsumerDoorbellHook} {
				if d, _ := f.delivery(ringID, f.alice, c); d.Status != store.StatusSkipped {
					t.Errorf("%s row of the removed resident: %+v", c, d)
				}
			}
		})
	}
}

// TestAnsweredRingNotSentLater: once a ring is answered, e-mail and hook
// rows still waiting for a retry are skipped, not sent.
func TestAnsweredRingNotSentLater(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			hookAddr := reserveAddr(t)
			f := newFixture(t, b, testConfig(), newHook(t, "http://"+hookAddr+"/ring", newSecret(t)))
			ringID := f.ring(app.RingInput{})
			f.waitFailedAttempt(ringID, f.bob, es.ConsumerDoorbellHook)
			if _, err := f.svc.AnswerRing(ctx, app.Call{P: f.user(f.alice)}, ringID); err != nil {
				t.Fatal(err)
			}
			d := f.waitDelivery(ringID, f.bob, es.ConsumerDoorbellHook, store.StatusSkipped)
			if !strings.Contains(d.LastError, "ring already answered") {
				t.Errorf("bob's hook row: %+v", d)
			}
			rc := startReceiver(t, &receiver{}, hookAddr)
			f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellHook, store.StatusSkipped)
			if n := len(rc.Requests()); n != 0 {
				t.Errorf("the receiver got %d requests for an answered ring", n)
			}
		})
	}
}

// quietNow is a quiet-hours window around the current time in a real
// zone off UTC by a half hour (Asia/Kolkata, UTC+5:30, no DST), midnight
// wrap included: 23:30 there gives 22:30-00:30.
func quietNow(t *testing.T) *user.QuietHours {
	loc, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(loc)
	return &user.QuietHours{Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(time.Hour).Format("15:04"), TimeZone: "Asia/Kolkata"}
}

// TestQuietHours: during a resident's quiet hours the e-mail and hook rows
// are skipped while the live feed still gets the ring; the other resident
// is not affected.
func TestQuietHours(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			srv := startSMTP(t, &smtpServer{}, "", smtpPlain)
			rc := startReceiver(t, &receiver{}, "")
			f := newFixture(t, b, testConfig(), newEmail(t, "smtp://"+srv.Addr), newHook(t, rc.URL(), newSecret(t)))
			q := quietNow(t)
			if _, err := f.svc.SetNotificationPreferences(ctx, app.Call{P: f.user(f.alice)}, f.alice, app.PreferencesInput{QuietHours: q}); err != nil {
				t.Fatal(err)
			}
			ringID := f.ring(app.RingInput{})
			for _, c := range []string{es.ConsumerDoorbellEmail, es.ConsumerDoorbellHook} {
				d := f.waitDelivery(ringID, f.alice, c, store.StatusSkipped)
				if d.Attempts != 1 || !strings.Contains(d.LastError, "quiet hours") {
					t.Errorf("%s row in quiet hours %+v: %+v", c, q, d)
				}
			}
			f.waitDelivery(ringID, f.alice, es.ConsumerDoorbellLive, store.StatusDelivered)
			f.waitDelivery(ringID, f.bob, es.ConsumerDoorbellHook, store.StatusDelivered)
			if feed, err := f.st.FeedFor(ctx, f.alice, "", 0, 10); err != nil || len(feed) != 1 || feed[0].RingID != ringID {
				t.Errorf("Alice's feed: %v %+v", err, feed)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("%d e-mails sent in quiet hours", n)
			}
			if reqs := rc.Requests(); len(reqs) != 1 || reqs[0].Payload.Resident.UserID != f.bob {
				t.Errorf("hook requests: %+v", reqs)
			}
		})
	}
}

// TestExactlyOnceAcrossEngines: two engines (two nodes) on one store share
// the work without doubling it: every hook row is POSTed once, has exactly
// one recorded attempt (delivered), and every live row makes one feed
// entry.
func TestExactlyOnceAcrossEngines(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			rc := startReceiver(t, &receiver{Reply: func(_ hookReq, _ int, w http.ResponseWriter) {
				time.Sleep(2 * time.Millisecond) // a receiver that takes a moment: claims overlap
				w.WriteHeader(http.StatusOK)
			}}, "")
			secret := newSecret(t)
			cfg := testConfig()
			cfg.Batch, cfg.Workers = 4, 4
			cfg.Node = "node-a"
			f := newFixture(t, b, cfg, newHook(t, rc.URL(), secret))
			cfg.Node = "node-b"
			other := outbox.New(f.st, cfg, testLogger(t))
			notify.Register(other, f.st, notify.NewHub(), testLogger(t), newHook(t, rc.URL(), secret))
			runEngine(t, other)

			const rings = 30
			ids := make([]string, rings)
			var wg sync.WaitGroup
			errs := make(chan error, rings)
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := f.svc.RingDoorbell(ctx, app.Call{P: f.key}, 7, app.RingInput{Message: fmt.Sprint("ring ", i)})
					if err != nil {
						errs <- err
						return
					}
					ids[i] = res.RingID
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}

			var dels []store.Delivery
			waitFor(t, "every row done", func() (bool, string) {
				var err error
				if dels, err = f.st.Deliveries(ctx, ids, ""); err != nil {
					t.Fatal(err)
				}
				pending := 0
				for _, d := range dels {
					if d.Consumer != es.ConsumerDoorbellEmail && d.Status != store.StatusDelivered {
						pending++
					}
				}
				return pending == 0, fmt.Sprintf("%d of %d rows not delivered", pending, len(dels))
			})
			nodes := map[string]int{}
			hookRows := 0
			for _, d := range dels {
				if d.Consumer == es.ConsumerDoorbellEmail {
					continue // no e-mail channel here: those rows wait
				}
				a := f.attempts(d.OutboxID)
				if d.Attempts != 1 || len(a) != 1 || a[0].Outcome != store.StatusDelivered {
					t.Errorf("row %d (%s): %+v, attempts %+v", d.OutboxID, d.Consumer, d, a)
					continue
				}
				nodes[a[0].Node]++
				if d.Consumer == es.ConsumerDoorbellHook {
					hookRows++
					if n := len(rc.ByID("msg_" + d.RingID + "_" + d.Target)); n != 1 {
						t.Errorf("webhook-id of row %d received %d times", d.OutboxID, n)
					}
				}
			}
			if hookRows != 2*rings {
				t.Errorf("%d hook rows, want %d", hookRows, 2*rings)
			}
			if n := len(rc.Requests()); n != 2*rings {
				t.Errorf("receiver got %d requests, want %d", n, 2*rings)
			}
			for _, u := range []string{f.alice, f.bob} {
				feed, err := f.st.FeedFor(ctx, u, "", 0, 1000)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[int64]bool{}
				for _, e := range feed {
					seen[e.OutboxID] = true
				}
				if len(feed) != rings || len(seen) != rings {
					t.Errorf("feed of %s: %d entries from %d rows, want %d", u, len(feed), len(seen), rings)
				}
			}
			t.Logf("attempts per node: %v", nodes)
		})
	}
}

// TestSlowReceiverNoDoubleSend: with fewer workers than due rows and a
// receiver slower than a row's lease would allow if rows waited for a
// worker after being claimed, every row is still sent once and attempted
// once: a node claims only what its idle workers can start at once.
func TestSlowReceiverNoDoubleSend(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			rc := startReceiver(t, &receiver{Reply: func(_ hookReq, _ int, w http.ResponseWriter) {
				time.Sleep(150 * time.Millisecond)
				w.WriteHeader(http.StatusOK)
			}}, "")
			cfg := testConfig()
			cfg.Batch, cfg.Workers, cfg.Lease = 8, 1, 400*time.Millisecond
			f := newFixture(t, b, cfg, newHook(t, rc.URL(), newSecret(t)))
			const rings = 5 // 10 hook rows: 1.5 s of sending on one worker, lease 0.4 s
			ids := make([]string, rings)
			for i := range ids {
				ids[i] = f.ring(app.RingInput{})
			}
			waitFor(t, "every hook row delivered", func() (bool, string) {
				dels, err := f.st.Deliveries(ctx, ids, "")
				if err != nil {
					t.Fatal(err)
				}
				done := 0
				for _, d := range dels {
					if d.Consumer == es.ConsumerDoorbellHook && d.Status == store.StatusDelivered {
						done++
					}
				}
				return done == 2*rings, fmt.Sprintf("%d of %d hook rows delivered", done, 2*rings)
			})
			dels, err := f.st.Deliveries(ctx, ids, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dels {
				if d.Consumer != es.ConsumerDoorbellHook {
					continue
				}
				if n := len(rc.ByID("msg_" + d.RingID + "_" + d.Target)); n != 1 || d.Attempts != 1 {
					t.Errorf("row %d: sent %d times, %d attempts recorded", d.OutboxID, n, d.Attempts)
				}
			}
			if n := len(rc.Requests()); n != 2*rings {
				t.Errorf("receiver got %d requests, want %d", n, 2*rings)
			}
		})
	}
}
