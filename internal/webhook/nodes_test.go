package webhook_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// TestTwoNodes: two spkey nodes on one database, each with its own
// dispatcher, events caused through both, a receiver refusing every third
// request: still every event exactly once, each lock's in version order.
func TestTwoNodes(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			rcv := newReceiver(t, false)
			rcv.Answer(func(n int, _ request) (int, http.Header) {
				if n%3 == 0 {
					return http.StatusServiceUnavailable, nil
				}
				return http.StatusOK, nil
			})
			opt := testenv.Options{Webhooks: webhook.Config{RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}}
			one := testenv.NewServer(t, b, opt)
			opt.Store = one.Store
			two := testenv.NewServer(t, b, opt)
			p := newPartner(t, one, "acme")
			other := *p
			other.api = api{t: t, srv: two}
			id, secret := p.ActiveHook(map[string]any{"url": rcv.URL("/")})
			locks := []int64{1, 2, 3, 4, 5, 6}
			for _, l := range locks {
				p.Lock(l)
			}
			for i := range 6 {
				for _, l := range locks {
					node := p
					if i%2 == 1 {
						node = &other
					}
					node.Toggle(l)
				}
			}
			var want []string
			for _, l := range locks {
				w, _ := p.Expected(l)
				want = append(want, w...)
			}
			p.LogDone(id, len(want))
			checkSigned(t, secret, rcv.Requests()...)
			checkOrder(t, rcv.Events(), false)
			checkOrder(t, rcv.Delivered(), true)
			checkOnce(t, rcv.Delivered(), want)
		})
	}
}
