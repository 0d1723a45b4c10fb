package webhook_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// undoneSampler polls how many deliveries of one webhook are undone
// (pending, retrying or being sent) until stopped, and keeps the most it
// saw.
type undoneSampler struct {
	mu      sync.Mutex
	most    int
	samples int
	err     error
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func sampleUndone(st *store.Store, hook string, limit int) *undoneSampler {
	s := &undoneSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			rows, err := st.WebhookDeliveries(context.Background(), hook, 0, limit, store.StatusPending)
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			s.most = max(s.most, len(rows))
			s.samples++
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return s
}

// current returns the most undone deliveries seen so far and how many
// samples were taken.
func (s *undoneSampler) current() (most, samples int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most, s.samples, s.err
}

func (s *undoneSampler) finish() (most, samples int, err error) {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.current()
}

// TestReplayPacedByWindow: a replay of 10 times the webhook's window is
// queued only as its deliveries make room: while the receiver holds every
// request, the webhook never has more than a window of undone deliveries
// and the replay stays open (a second one is 409); once released, the
// finished deliveries alone (no safety-net poll) bring the next chunks,
// the webhook still never has more than a window undone, and every event
// arrives exactly once, each lock's in version order.
func TestReplayPacedByWindow(t *testing.T) {
	locks := []int64{601, 602, 603, 604, 605, 606, 607, 608}
	const rounds = 25 // 8 x 26 = 208 partner events
	const window = 20
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			release := make(chan struct{})
			var once sync.Once
			open := func() { once.Do(func() { close(release) }) }
			t.Cleanup(open)
			rcv.Answer(func(int, request) (int, http.Header) {
				<-release // held: the requests stay in flight, undone
				return http.StatusOK, nil
			})
			// The default chunk (more than this window) is cut to the room
			// left in the window.
			srv := testenv.NewServer(t, b, noPoll(testenv.Options{Webhooks: webhook.Config{Window: window, Timeout: time.Minute}}))
			p := newPartner(t, srv, "acme")
			other := newPartner(t, srv, "beta")
			want, perLock := history(t, p, locks, rounds)
			eventually(t, wait, "the fan-out", func() bool {
				rows, err := srv.Store.Outbox(context.Background(), es.ConsumerWebhooks, 1)
				return err == nil && len(rows) == 0
			})
			id, _ := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			sampler := sampleUndone(srv.Store, id, len(want)+1)
			defer sampler.finish()

			since := "2000-01-01T00:00:00Z"
			got := p.must(http.StatusAccepted, "POST", "/webhooks/"+id+"/replay", keyHdr(p.key), map[string]any{"since": since}).Obj(t)
			if got["queued"] != float64(len(want)) {
				t.Fatalf("replay answered %v, want %d queued", got, len(want))
			}
			// The first chunk fills the window; the receiver holds what it
			// got (PerTarget requests) and nothing more is queued.
			eventually(t, wait, "the first chunk and the held requests", func() bool {
				most, _, _ := sampler.current()
				return most >= window && len(rcv.Events()) == 0
			})
			// Let the fan-out run a few more times (another tenant's events
			// kick it): each step finds no room.
			for i := range 3 {
				r := p.do("POST", "/webhooks/"+id+"/replay", keyHdr(p.key), map[string]any{"since": since})
				if r.Status != http.StatusConflict {
					t.Fatalf("replay while the first one waits for room: %d %s, want 409", r.Status, r.Raw)
				}
				other.Lock(int64(701 + i))
			}
			eventually(t, wait, "the fan-out of the other tenant's events", func() bool {
				rows, err := srv.Store.Outbox(context.Background(), es.ConsumerWebhooks, 1)
				return err == nil && len(rows) == 0
			})
			if n, err := srv.Store.OpenReplays(context.Background()); err != nil || n != 1 {
				t.Fatalf("open replays while waiting for room: %d %v, want 1", n, err)
			}
			if most, samples, err := sampler.current(); err != nil || most > window {
				t.Fatalf("held: at most %d undone deliveries in %d samples (err %v), want at most the window of %d", most, samples, err, window)
			}

			open()
			eventually(t, wait, "the replayed deliveries", func() bool { return len(rcv.Delivered()) >= len(want) })
			most, samples, err := sampler.finish()
			if err != nil {
				t.Fatal(err)
			}
			if most > window {
				t.Errorf("at most %d undone deliveries in %d samples, want at most the window of %d", most, samples, window)
			}
			replayed := rcv.Delivered()
			checkOnce(t, replayed, want)
			checkPerLock(t, perLock, replayed)
			p.LogDone(id, len(want))
			eventually(t, wait, "the replay to end", func() bool {
				n, err := srv.Store.OpenReplays(context.Background())
				return err == nil && n == 0
			})
		})
	}
}
