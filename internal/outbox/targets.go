package outbox

import (
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/store"
)

// targets keeps Policy.PerTarget for one consumer's loop: the attempts in
// flight per target, and the targets whose latest attempt is to be
// retried (failing), which get one attempt at a time and together at most
// budget.
type targets struct {
	mu        sync.Mutex
	perTarget int
	budget    int
	busy      map[string]int
	failing   map[string]time.Time // when each failing target last failed
	// forget is how long a failing target with nothing in flight is
	// remembered after its last failure: longer than any retry wait, so
	// only a target that is gone (a deleted webhook) is forgotten.
	forget time.Duration
	now    func() time.Time
}

func newTargets(perTarget, budget int, forget time.Duration, now func() time.Time) *targets {
	return &targets{perTarget: perTarget, budget: budget, busy: map[string]int{}, failing: map[string]time.Time{}, forget: forget, now: now}
}

// blocked reports whether target may not start another attempt; t.mu is
// held.
func (t *targets) blocked(target string, inFailing int) bool {
	if _, failing := t.failing[target]; !failing {
		return t.busy[target] >= t.perTarget
	}
	return t.busy[target] >= 1 || inFailing >= t.budget
}

// inFailing counts the attempts in flight to failing targets; t.mu is held.
func (t *targets) inFailing() int {
	n := 0
	for target := range t.failing {
		n += t.busy[target]
	}
	return n
}

// exclude lists the targets whose rows are not to be claimed now; with
// healthyOnly, every failing target too.
func (t *targets) exclude(healthyOnly bool) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for target, at := range t.failing {
		if t.busy[target] == 0 && now.Sub(at) > t.forget {
			delete(t.failing, target)
		}
	}
	in := t.inFailing()
	var out []string
	for target := range t.busy {
		if t.blocked(target, in) {
			out = append(out, target)
		}
	}
	if healthyOnly || in >= t.budget {
		for target := range t.failing {
			if t.busy[target] == 0 { // the busy ones are in already
				out = append(out, target)
			}
		}
	}
	return out
}

// room is how many more attempts failing targets may start now.
func (t *targets) room() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failing) == 0 {
		return 0
	}
	return max(0, t.budget-t.inFailing())
}

// take counts a claimed row of target in flight, unless target is blocked.
func (t *targets) take(target string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.blocked(target, t.inFailing()) {
		return false
	}
	t.busy[target]++
	return true
}

// done counts an attempt out and notes whether its target is failing: a
// retry makes it so; any other outcome but a deferral (no attempt) ends it.
func (t *targets) done(target, status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.busy[target]--; t.busy[target] <= 0 {
		delete(t.busy, target)
	}
	switch status {
	case store.OutcomeRetry:
		t.failing[target] = t.now()
	case store.OutcomeDefer:
	default:
		delete(t.failing, target)
	}
}
