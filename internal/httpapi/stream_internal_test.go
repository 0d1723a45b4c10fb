package httpapi

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStreamReadsBounded: streams read the database through a fixed number
// of slots; with every slot taken a read waits (here: its context is
// already done, so it gives up without running), and it runs once a slot
// is free.
func TestStreamReadsBounded(t *testing.T) {
	l := newStreamLimits(Config{StreamReads: 2}, prometheus.NewRegistry())
	hold, held := make(chan struct{}), make(chan struct{}, 2)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			done <- l.read(context.Background(), func(context.Context) error { held <- struct{}{}; <-hold; return nil })
		}()
	}
	<-held
	<-held
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := l.read(ctx, func(context.Context) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("a third read with both slots taken: ran %v, err %v", ran, err)
	}
	close(hold)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.read(context.Background(), func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("a read with free slots: ran %v, err %v", ran, err)
	}
}
