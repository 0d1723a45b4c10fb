package portal

import (
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestLimiterTokenBuckets(t *testing.T) {
	perClient := Limit{Every: 20 * time.Second, Burst: 3}
	perLock := Limit{Every: 3 * time.Second, Burst: 5}
	type step struct {
		advance   time.Duration
		lock      int64
		addr      string
		ok        bool
		wait      time.Duration
		refund    bool // give the token back after taking it
		retrySecs int  // Retry-After when !ok
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"burst then the client waits a full interval", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
			{advance: 5 * time.Second, lock: 1, addr: "a", ok: false, wait: 15 * time.Second, retrySecs: 15},
			{advance: 14*time.Second + 500*time.Millisecond, lock: 1, addr: "a", ok: false, wait: 500 * time.Millisecond, retrySecs: 1},
			{advance: 500 * time.Millisecond, lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
		}},
		{"clients and locks have separate buckets", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
			{lock: 1, addr: "b", ok: true},
			{lock: 2, addr: "a", ok: true},
		}},
		{"the lock's bucket limits every client together", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "b", ok: true},
			{lock: 1, addr: "c", ok: true},
			{lock: 1, addr: "d", ok: true},
			{lock: 1, addr: "e", ok: true},
			{lock: 1, addr: "f", ok: false, wait: 3 * time.Second, retrySecs: 3},
			{advance: time.Second, lock: 1, addr: "f", ok: false, wait: 2 * time.Second, retrySecs: 2},
			{advance: 2 * time.Second, lock: 1, addr: "f", ok: true},
		}},
		{"the longer of the two waits wins", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "b", ok: true},
			{lock: 1, addr: "c", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
			{lock: 1, addr: "d", ok: false, wait: 3 * time.Second, retrySecs: 3},
		}},
		{"a refused ring uses no token", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
			{advance: 20 * time.Second, lock: 1, addr: "a", ok: true},
		}},
		{"a refunded token can be used again", []step{
			{lock: 1, addr: "a", ok: true, refund: true},
			{lock: 1, addr: "a", ok: true, refund: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: false, wait: 20 * time.Second, retrySecs: 20},
		}},
		{"a clock going back does not mint tokens", []step{
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{lock: 1, addr: "a", ok: true},
			{advance: -time.Hour, lock: 1, addr: "a", ok: false, wait: time.Hour + 20*time.Second, retrySecs: 3620},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			l := newLimiter(clock.Now, perClient, perLock)
			for i, s := range tc.steps {
				clock.Advance(s.advance)
				ok, wait := l.take(s.lock, s.addr)
				if ok != s.ok || wait != s.wait {
					t.Fatalf("step %d (%+v): got ok=%v wait=%v", i, s, ok, wait)
				}
				if !ok {
					if got := retryAfterSeconds(wait); got != s.retrySecs {
						t.Fatalf("step %d: Retry-After %d, want %d", i, got, s.retrySecs)
					}
				}
				if s.refund {
					l.refund(s.lock, s.addr)
				}
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 1}, {time.Nanosecond, 1}, {999 * time.Millisecond, 1}, {time.Second, 1},
		{time.Second + time.Nanosecond, 2}, {20 * time.Second, 20}, {-time.Second, 1},
	} {
		if got := retryAfterSeconds(tc.d); got != tc.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestLimiterEvictsIdleBuckets: a bucket that has refilled is dropped at
// the next sweep, and the maps never outgrow maxKeys.
func TestLimiterEvictsIdleBuckets(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLimiter(clock.Now, Limit{Every: 20 * time.Second, Burst: 3}, Limit{Every: 3 * time.Second, Burst: 20})
	for i := range 50 {
		if ok, _ := l.take(int64(i%5), fmt.Sprint("client", i)); !ok {
			t.Fatalf("take %d refused", i)
		}
	}
	if c, k := l.size(); c != 50 || k != 5 {
		t.Fatalf("buckets before idling: %d clients, %d locks", c, k)
	}
	// A client bucket with one token used is full again after 20 s and a
	// lock bucket with 10 used after 30 s; the sweep runs once a minute.
	clock.Advance(time.Minute)
	if ok, _ := l.take(99, "late"); !ok {
		t.Fatal("take after idling refused")
	}
	if c, k := l.size(); c != 1 || k != 1 {
		t.Fatalf("buckets after idling: %d clients, %d locks; want only the new ring's", c, k)
	}

	// Under a flood of distinct keys the cap holds.
	l.maxKeys = 10
	for i := range 100 {
		l.take(int64(i), fmt.Sprint("flood", i))
	}
	if c, k := l.size(); c > 10 || k > 10 {
		t.Fatalf("buckets above the cap: %d clients, %d locks", c, k)
	}
}

func TestClientAddr(t *testing.T) {
	for _, tc := range []struct {
		remote, xff string
		trust       bool
		want        string
	}{
		{"192.0.2.7:5555", "", false, "192.0.2.7"},
		{"192.0.2.7:5555", "198.51.100.1", false, "192.0.2.7"},
		{"10.0.0.2:5555", "198.51.100.1", true, "198.51.100.1"},
		{"10.0.0.2:5555", "203.0.113.9, 198.51.100.1", true, "198.51.100.1"},
		{"10.0.0.2:5555", "", true, "10.0.0.2"},
		{"[2001:db8:1:2:3:4:5:6]:443", "", false, "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:80", "", false, "192.0.2.7"},
		{"@", "", false, "@"},
	} {
		r := httptest.NewRequest("POST", "/doorbell/1", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientAddr(r, tc.trust); got != tc.want {
			t.Errorf("clientAddr(%q, xff %q, trust %v) = %q, want %q", tc.remote, tc.xff, tc.trust, got, tc.want)
		}
	}
}
