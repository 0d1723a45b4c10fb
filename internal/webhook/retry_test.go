package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// TestFailingReceiverRecovers: a receiver that answers 503 to its first
// requests and 2xx afterwards ends up with every event of several
// interleaved locks exactly once, each lock's in version order (a later
// version is never tried before the earlier one is delivered), and the
// delivery log accounts for every request it got. With a window of 2 the
// webhook is parked while the receiver fails, and what it missed is
// queued, in order, as its queue drains.
func TestFailingReceiverRecovers(t *testing.T) {
	const failures = 8
	for _, b := range testenv.Backends(t) {
		for _, window := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/window-%d", b, window), func(t *testing.T) {
				failingReceiverRecovers(t, b, window, failures)
			})
		}
	}
}

func failingReceiverRecovers(t *testing.T, b testenv.Backend, window, failures int) {
	rcv := newReceiver(t, false)
	rcv.Answer(func(n int, _ request) (int, http.Header) {
		if n < failures {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	srv := testenv.NewServer(t, b, testenv.Options{Webhooks: webhook.Config{RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Window: window}})
	p := newPartner(t, srv, "acme")
	id, secret := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
	want := p.Traffic([]int64{11, 12, 13}, 4)
	log := p.LogDone(id, len(want))
	got := rcv.Events()
	checkSigned(t, secret, got...)
	checkOrder(t, got, false)
	delivered := rcv.Delivered()
	checkOrder(t, delivered, true)
	checkOnce(t, delivered, want)
	if len(got) != len(want)+failures {
		t.Errorf("receiver got %d requests, want %d events + %d failures", len(got), len(want), failures)
	}
	attempts, retried := 0, 0
	for _, d := range log {
		if d.Status != "delivered" {
			t.Errorf("delivery %d of %s v%d: %s", d.ID, d.AggregateID, d.Version, d.Status)
		}
		for i, a := range d.Attempts {
			attempts++
			last := i == len(d.Attempts)-1
			switch {
			case last && (a.Outcome != "delivered" || a.StatusCode == nil || *a.StatusCode != 200 || a.Error != nil):
				t.Errorf("last attempt of delivery %d: %+v", d.ID, a)
			case !last && (a.Outcome != "retry" || a.StatusCode == nil || *a.StatusCode != 503 || a.Error == nil || !strings.Contains(*a.Error, "503")):
				t.Errorf("failed attempt of delivery %d: %+v", d.ID, a)
			}
			if !last {
				retried++
			}
		}
	}
	if attempts != len(got) || retried != failures {
		t.Errorf("log shows %d attempts (%d retried), receiver got %d requests (%d refused)", attempts, retried, len(got), failures)
	}
}

// TestTimeoutRetried: a receiver that does not answer within the timeout
// is retried; the attempt shows no status code and the timeout.
func TestTimeoutRetried(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{Webhooks: webhook.Config{Timeout: 300 * time.Millisecond}})
			rcv := newReceiver(t, false)
			stuck := make(chan struct{})
			t.Cleanup(func() { close(stuck) })
			rcv.Answer(func(n int, _ request) (int, http.Header) {
				if n == 0 {
					<-stuck
				}
				return http.StatusNoContent, nil
			})
			p := newPartner(t, srv, "acme")
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			p.Lock(51)
			d := p.LogDone(id, 1)[0]
			if d.Status != "delivered" || len(d.Attempts) != 2 {
				t.Fatalf("delivery after a timeout: %+v", d)
			}
			a := d.Attempts[0]
			if a.Outcome != "retry" || a.StatusCode != nil || a.Error == nil || !strings.Contains(*a.Error, "deadline exceeded") || a.LatencyMS < 300 {
				t.Errorf("timed-out attempt: %+v", a)
			}
		})
	}
}

// TestAnswerClasses: 400 fails at once and the next events flow; 429 with
// Retry-After: 1 is retried no sooner than a second later; 408 is
// retried; 410 disables the webhook, drops what was queued for it and
// stops its deliveries.
func TestAnswerClasses(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{})
			firstThen := func(status int, hdr http.Header) answerFunc {
				return func(n int, _ request) (int, http.Header) {
					if n == 0 {
						return status, hdr
					}
					return http.StatusNoContent, nil
				}
			}
			code := func(a attemptEntry) int {
				if a.StatusCode == nil {
					return 0
				}
				return *a.StatusCode
			}

			t.Run("400", func(t *testing.T) {
				rcv := newReceiver(t, false)
				rcv.Answer(firstThen(http.StatusBadRequest, nil))
				p := newPartner(t, srv, "org-400")
				id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
				p.Lock(41)
				p.Toggle(41)
				want, _ := p.Expected(41)
				log := p.LogDone(id, 2)
				failed, ok := log[1], log[0] // newest first
				if failed.Status != "failed" || len(failed.Attempts) != 1 || code(failed.Attempts[0]) != 400 || failed.Attempts[0].Outcome != "failed" ||
					failed.LastError == nil || !strings.Contains(*failed.LastError, "400") {
					t.Errorf("delivery answered 400: %+v", failed)
				}
				if ok.Status != "delivered" || len(ok.Attempts) != 1 {
					t.Errorf("next delivery: %+v", ok)
				}
				if got := ids(rcv.Events()); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("receiver got %v, want each of %v once", got, want)
				}
			})

			t.Run("429", func(t *testing.T) {
				rcv := newReceiver(t, false)
				rcv.Answer(firstThen(http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}))
				p := newPartner(t, srv, "org-429")
				id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
				p.Lock(42)
				d := p.LogDone(id, 1)[0]
				if d.Status != "delivered" || len(d.Attempts) != 2 || code(d.Attempts[0]) != 429 || d.Attempts[0].Outcome != "retry" || code(d.Attempts[1]) != 204 {
					t.Fatalf("delivery answered 429 then 204: %+v", d)
				}
				first, err1 := time.Parse(domain.TimeLayout, d.Attempts[0].At)
				second, err2 := time.Parse(domain.TimeLayout, d.Attempts[1].At)
				if err1 != nil || err2 != nil {
					t.Fatalf("attempt times: %v %v", err1, err2)
				}
				if gap := second.Sub(first); gap < 990*time.Millisecond {
					t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
				}
			})

			t.Run("408", func(t *testing.T) {
				rcv := newReceiver(t, false)
				rcv.Answer(firstThen(http.StatusRequestTimeout, nil))
				p := newPartner(t, srv, "org-408")
				id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
				p.Lock(43)
				d := p.LogDone(id, 1)[0]
				if d.Status != "delivered" || len(d.Attempts) != 2 || code(d.Attempts[0]) != 408 || d.Attempts[0].Outcome != "retry" {
					t.Errorf("delivery answered 408 then 204: %+v", d)
				}
				if n := len(rcv.Events()); n != 2 {
					t.Errorf("receiver got %d requests, want 2", n)
				}
			})

			t.Run("410 beside another delivery", func(t *testing.T) {
				// Two locks' events in flight at once; one answer is 410.
				// The other, answered 2xx after the webhook was disabled,
				// is logged as delivered, not as dropped.
				rcv := newReceiver(t, false)
				release := make(chan struct{})
				var hook atomic.Value
				var inflight atomic.Int32
				rcv.Answer(func(_ int, q request) (int, http.Header) {
					inflight.Add(1)
					<-release
					if q.Env.Detail.AggregateID == "46" {
						return http.StatusGone, nil
					}
					deadline := time.Now().Add(wait)
					for time.Now().Before(deadline) {
						w, _, _ := srv.Store.Webhook(context.Background(), hook.Load().(string))
						if w.Status == "disabled" {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
					return http.StatusOK, nil
				})
				p := newPartner(t, srv, "org-410b")
				id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
				hook.Store(id)
				p.Lock(45)
				p.Lock(46)
				eventually(t, wait, "both events in flight", func() bool { return inflight.Load() == 2 })
				close(release)
				p.WaitStatus(id, "disabled")
				byLock := map[string]deliveryEntry{}
				for _, d := range p.LogDone(id, 2) {
					byLock[d.AggregateID] = d
				}
				if d := byLock["46"]; d.Status != "failed" || len(d.Attempts) != 1 || code(d.Attempts[0]) != 410 {
					t.Errorf("delivery answered 410: %+v", d)
				}
				if d := byLock["45"]; d.Status != "delivered" || len(d.Attempts) != 1 || code(d.Attempts[0]) != 200 {
					t.Errorf("delivery answered 200 while the webhook was being disabled: %+v", d)
				}
			})

			t.Run("410", func(t *testing.T) {
				gone, control := newReceiver(t, false), newReceiver(t, false)
				release := make(chan struct{})
				gone.Answer(func(int, request) (int, http.Header) {
					<-release
					return http.StatusGone, nil
				})
				p := newPartner(t, srv, "org-410")
				id, _ := p.ActiveHook(map[string]any{"url": gone.URL("/")})
				p.ActiveHook(map[string]any{"url": control.URL("/")})
				p.Lock(44)
				p.Toggle(44)
				want, _ := p.Expected(44)
				// Both events are queued for both webhooks once the control
				// has them; the first is in flight at the 410 receiver.
				eventually(t, wait, "the control webhook's events", func() bool { return len(control.Delivered()) == len(want) })
				close(release)
				v := p.WaitStatus(id, "disabled")
				if v.DisabledAt == nil || v.LastStatusCode == nil || *v.LastStatusCode != 410 {
					t.Errorf("disabled webhook: %+v", v)
				}
				log := p.LogDone(id, 2)
				sent, dropped := log[1], log[0]
				if sent.Status != "failed" || len(sent.Attempts) != 1 || code(sent.Attempts[0]) != 410 {
					t.Errorf("delivery answered 410: %+v", sent)
				}
				if dropped.Status != "skipped" || len(dropped.Attempts) != 0 || dropped.LastError == nil || !strings.Contains(*dropped.LastError, "disabled") {
					t.Errorf("delivery queued behind the 410: %+v", dropped)
				}
				p.Toggle(44)
				eventually(t, wait, "the next event at the control webhook", func() bool { return len(control.Delivered()) == len(want)+1 })
				if n := len(p.AllLog(id)); n != 2 {
					t.Errorf("disabled webhook got %d deliveries queued, want still 2", n)
				}
				if n := len(gone.Events()); n != 1 {
					t.Errorf("the 410 receiver got %d requests, want 1", n)
				}
				if r := p.do("POST", "/tenants/org-410/webhooks/"+id+"/verify", adminHdr(), nil); r.Status != http.StatusConflict {
					t.Errorf("verify a disabled webhook: %d %s", r.Status, r.Raw)
				}

				// A new URL brings it back: verified again, then events flow.
				gone.Answer(nil)
				p.must(http.StatusOK, "PUT", "/tenants/org-410/webhooks/"+id, adminHdr(), map[string]any{"url": gone.URL("/back")})
				if v := p.WaitStatus(id, "active"); v.DisabledAt != nil || v.LastStatusCode != nil {
					t.Errorf("re-enabled webhook: %+v", v)
				}
				p.Toggle(44)
				all, _ := p.Expected(44)
				eventually(t, wait, "the event after re-enabling", func() bool { return len(gone.Delivered()) == 1 })
				if got := gone.Delivered()[0].Env.ID; got != all[len(all)-1] {
					t.Errorf("re-enabled webhook got %s, want the newest event %s", got, all[len(all)-1])
				}
			})
		})
	}
}

// TestQueueWindow: while a receiver is down, a webhook's queue never holds
// more than its window, the webhook shows since when its queue is full,
// and the events after that wait; once the receiver is back every event
// arrives once, each lock's in order, and the queue is no longer full.
func TestQueueWindow(t *testing.T) {
	const window = 3
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			var up atomic.Bool
			rcv := newReceiver(t, false)
			rcv.Answer(func(int, request) (int, http.Header) {
				if up.Load() {
					return http.StatusNoContent, nil
				}
				return http.StatusServiceUnavailable, nil
			})
			srv := testenv.NewServer(t, b, testenv.Options{Webhooks: webhook.Config{RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Window: window}})
			p := newPartner(t, srv, "acme")
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			want := p.Traffic([]int64{21, 22}, 3)
			var full hookView
			eventually(t, wait, "the webhook's queue to be full", func() bool { full = p.Hook(id); return full.QueueFullSince != nil })
			if _, err := time.Parse(domain.TimeLayout, *full.QueueFullSince); err != nil {
				t.Errorf("queueFullSince %q: %v", *full.QueueFullSince, err)
			}
			if n := len(p.AllLog(id)); n > window {
				t.Errorf("%d deliveries queued while the receiver is down, window %d", n, window)
			}
			up.Store(true)
			log := p.LogDone(id, len(want))
			if v := p.Hook(id); v.QueueFullSince != nil {
				t.Errorf("queueFullSince %q after every event was delivered", *v.QueueFullSince)
			}
			delivered := rcv.Delivered()
			checkOrder(t, delivered, true)
			checkOnce(t, delivered, want)
			for _, d := range log {
				if d.Status != "delivered" {
					t.Errorf("delivery %d: %s", d.ID, d.Status)
				}
			}
		})
	}
}
