package outbox_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
)

// TestFailingTargetForgotten: a target whose latest attempt is to be
// retried is failing (one attempt at a time, excluded from healthy-only
// claims) until an attempt succeeds, or, when nothing of it is in flight,
// until longer than forget has passed since it last failed: a webhook
// deleted while failing is not remembered for ever.
func TestFailingTargetForgotten(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	tg := outbox.NewTargets(4, 8, time.Hour, clock)

	if !tg.Take("gone") {
		t.Fatal("a new target is refused")
	}
	tg.Done("gone", store.OutcomeRetry)
	if !tg.Failing("gone") || !slices.Contains(tg.Exclude(true), "gone") {
		t.Fatal("a target whose attempt is to be retried is not failing")
	}
	if !tg.Take("gone") || tg.Take("gone") {
		t.Fatal("a failing target does not get exactly one attempt at a time")
	}
	advance(2 * time.Hour)
	tg.Exclude(true)
	if !tg.Failing("gone") {
		t.Fatal("a failing target with an attempt in flight was forgotten")
	}
	tg.Done("gone", store.OutcomeRetry) // fails again now
	advance(59 * time.Minute)
	if tg.Exclude(true); !tg.Failing("gone") {
		t.Fatal("forgotten before forget passed")
	}
	advance(2 * time.Minute)
	if ex := tg.Exclude(true); tg.Failing("gone") || slices.Contains(ex, "gone") {
		t.Fatalf("still failing %s after its last failure with nothing in flight (excluded: %v)", 61*time.Minute, ex)
	}
	if !tg.Take("gone") {
		t.Fatal("a forgotten target is refused")
	}
	tg.Done("gone", store.StatusDelivered)
	if tg.Failing("gone") {
		t.Fatal("a delivered attempt leaves its target failing")
	}
}
