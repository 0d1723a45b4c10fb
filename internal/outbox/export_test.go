package outbox

import "time"

// Targets exposes the engine's per-target bookkeeping to the tests.
type Targets = targets

// NewTargets is newTargets.
func NewTargets(perTarget, budget int, forget time.Duration, now func() time.Time) *Targets {
	return newTargets(perTarget, budget, forget, now)
}

// Take, Done and Exclude are the loop's calls.
func (t *targets) Take(target string) bool           { return t.take(target) }
func (t *targets) Done(target, status string)        { t.done(target, status) }
func (t *targets) Exclude(healthyOnly bool) []string { return t.exclude(healthyOnly) }

// Failing reports whether target is remembered as failing.
func (t *targets) Failing(target string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.failing[target]
	return ok
}
