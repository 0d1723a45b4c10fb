package devices

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spkey-dev/spkey/internal/store"
)

// TestWithRetry: a write that fails because the shadow moved runs again,
// up to MaxAttempts in all; any other outcome ends it at once. (Two nodes
// racing on one shadow rarely get here: the store runs a job whose
// pipeline failed again alone, and that run reads the winner's shadow.)
func TestWithRetry(t *testing.T) {
	moved := fmt.Errorf("put shadow: %w", store.ErrShadowMoved)
	other := errors.New("disk on fire")
	cases := []struct {
		name      string
		results   []error // what the write returns, attempt by attempt
		wantCalls int
		wantErr   error // nil: success
		retries   int64
	}{
		{"first try", []error{nil}, 1, nil, 0},
		{"moved once", []error{moved, nil}, 2, nil, 1},
		{"moved every time", []error{moved, moved, moved, nil}, 3, store.ErrShadowMoved, 2},
		{"other error", []error{other, nil}, 1, other, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := New(nil, Config{MaxAttempts: 3}, nil)
			calls := 0
			err := g.withRetry(context.Background(), "thing-1", "$aws/things/thing-1/shadow/update", func() error {
				calls++
				return c.results[calls-1]
			})
			if calls != c.wantCalls {
				t.Errorf("write ran %d times, want %d", calls, c.wantCalls)
			}
			if (c.wantErr == nil) != (err == nil) || (c.wantErr != nil && !errors.Is(err, c.wantErr)) {
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if got := g.Stats().Retries; got != c.retries {
				t.Errorf("Retries = %d, want %d", got, c.retries)
			}
		})
	}
}
