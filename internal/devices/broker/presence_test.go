package broker_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/broker"
)

func TestPresence(t *testing.T) {
	on := presenceEvent{"lock-a", true}
	off := presenceEvent{"lock-a", false}
	tests := []struct {
		name string
		// run connects lock-a and ends its connection(s) in some way; it
		// returns once the broker has seen the end.
		run  func(t *testing.T, e *env)
		want []presenceEvent
	}{
		{
			name: "connect, then clean disconnect",
			run: func(t *testing.T, e *env) {
				d := e.mustDial(t, "lock-a")
				waitFor(t, "online", func() bool { return len(e.rec.events()) == 1 })
				d.Disconnect(100)
				waitFor(t, "offline", func() bool { return len(e.rec.events()) == 2 })
			},
			want: []presenceEvent{on, off},
		},
		{
			name: "dropped TCP connection",
			run: func(t *testing.T, e *env) {
				d := e.mustDial(t, "lock-a")
				waitFor(t, "online", func() bool { return len(e.rec.events()) == 1 })
				_ = d.conn.Close() // no DISCONNECT: the broker sees the connection die
				waitFor(t, "offline", func() bool { return len(e.rec.events()) == 2 })
			},
			want: []presenceEvent{on, off},
		},
		{
			name: "takeover by a second connection of the same thing",
			run: func(t *testing.T, e *env) {
				first := e.mustDial(t, "lock-a")
				// Online is reported just after the CONNACK; a connection
				// taken over before that is never reported.
				waitFor(t, "online", func() bool { return len(e.rec.events()) == 1 })
				second := e.mustDial(t, "lock-a")
				select {
				case <-first.lost:
				case <-timeout():
					t.Fatal("first connection not taken over")
				}
				if !second.IsConnectionOpen() {
					t.Fatal("second connection closed")
				}
				// Once the first connection is gone on the broker's side,
				// the thing is still online: no offline for it.
				waitFor(t, "the first connection to end", func() bool { return broker.OpenConns(e.b) == 1 })
				waitFor(t, "the second online", func() bool { return len(e.rec.events()) == 2 })
				if diff := cmp.Diff([]presenceEvent{on, on}, e.rec.events()); diff != "" {
					t.Errorf("presence after the takeover (-want +got):\n%s", diff)
				}
				// Close waits for every connection to end and its
				// presence to be reported: a late offline of the first
				// connection would be recorded by then, before the
				// second's offline.
				_ = e.b.Close()
			},
			want: []presenceEvent{on, on, off},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, nil)
			tt.run(t, e)
			_ = e.b.Close() // flushes anything still to be reported
			if diff := cmp.Diff(tt.want, e.rec.events()); diff != "" {
				t.Errorf("presence (-want +got):\n%s", diff)
			}
			for i, at := range e.rec.at {
				if !at.Equal(presenceTime) {
					t.Errorf("event %d at %v, want the configured clock's %v", i, at, presenceTime)
				}
			}
		})
	}
}

func TestTwoThingsPresence(t *testing.T) {
	e := start(t, nil)
	a := e.mustDial(t, "lock-a")
	// Online is reported just after the CONNACK: wait for each.
	waitFor(t, "lock-a online", func() bool { return len(e.rec.events()) == 1 })
	e.mustDial(t, "lock-b")
	waitFor(t, "lock-b online", func() bool { return len(e.rec.events()) == 2 })
	a.Disconnect(100)
	waitFor(t, "lock-a offline", func() bool { return len(e.rec.events()) == 3 })
	want := []presenceEvent{{"lock-a", true}, {"lock-b", true}, {"lock-a", false}}
	if diff := cmp.Diff(want, e.rec.events()); diff != "" {
		t.Errorf("presence (-want +got):\n%s", diff)
	}
}
