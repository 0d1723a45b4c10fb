package notify_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// waitWake waits for a hub wake-up on ch.
func waitWake(t *testing.T, who string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("the hub never woke %s's stream", who)
	}
}

// TestLiveFeed: a ring appends one DoorbellRang entry to every targeted
// resident's feed and wakes their streams after commit; an answer appends
// DoorbellAnswered to every targeted resident's feed.
func TestLiveFeed(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, b, testConfig())
			wakeA, stopA := f.hub.Subscribe(f.alice)
			defer stopA()
			wakeB, stopB := f.hub.Subscribe(f.bob)
			defer stopB()

			ringID := f.ring(app.RingInput{VisitorName: "Courier", Message: "Parcel"})
			for _, u := range []struct {
				id  string
				sub *notify.Sub
			}{{f.alice, wakeA}, {f.bob, wakeB}} {
				waitWake(t, u.id, u.sub.Wake())
				// Woken after commit with the entry handed over, and the
				// entry is in the feed already.
				if got := u.sub.Take(); len(got) != 1 || got[0].RingID != ringID || got[0].N != 1 || got[0].OrgID != "acme" {
					t.Fatalf("entries handed to %s's stream: %+v", u.id, got)
				}
				feed, err := f.st.FeedFor(ctx, u.id, "", 0, 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(feed) != 1 || feed[0].Kind != doorbell.TypeDoorbellRang || feed[0].RingID != ringID || feed[0].N != 1 {
					t.Fatalf("feed of %s after the ring: %+v", u.id, feed)
				}
				var data struct {
					Type, RingID, VisitorName, Message string
					LockID                             int64
				}
				if err := json.Unmarshal(feed[0].Data, &data); err != nil {
					t.Fatal(err)
				}
				if data.Type != doorbell.TypeDoorbellRang || data.RingID != ringID || data.LockID != 7 || data.VisitorName != "Courier" || data.Message != "Parcel" {
					t.Errorf("feed entry data: %s", feed[0].Data)
				}
				d := f.waitDelivery(ringID, u.id, es.ConsumerDoorbellLive, store.StatusDelivered)
				if d.Attempts != 1 || feed[0].OutboxID != d.OutboxID {
					t.Errorf("live row: %+v, feed entry from row %d", d, feed[0].OutboxID)
				}
			}

			if _, err := f.svc.AnswerRing(ctx, app.Call{P: f.user(f.alice)}, ringID); err != nil {
				t.Fatal(err)
			}
			for _, u := range []struct {
				id   string
				wake <-chan struct{}
			}{{f.alice, wakeA.Wake()}, {f.bob, wakeB.Wake()}} {
				var feed []store.FeedEntry
				waitFor(t, "the answer in "+u.id+"'s feed", func() (bool, string) {
					var err error
					if feed, err = f.st.FeedFor(ctx, u.id, "", 1, 10); err != nil {
						t.Fatal(err)
					}
					return len(feed) > 0, "no entry after the ring's"
				})
				waitWake(t, u.id, u.wake)
				if len(feed) != 1 || feed[0].Kind != doorbell.TypeDoorbellAnswered || feed[0].RingID != ringID || feed[0].N != 2 {
					t.Fatalf("feed of %s after the answer: %+v", u.id, feed)
				}
				var data struct{ Type, UserID, Name string }
				if err := json.Unmarshal(feed[0].Data, &data); err != nil {
					t.Fatal(err)
				}
				if data.Type != doorbell.TypeDoorbellAnswered || data.UserID != f.alice || data.Name != "Alice" {
					t.Errorf("answer entry data: %s", feed[0].Data)
				}
			}
		})
	}
}

// TestFeedDataKeepsLargeIDs: numbers pass through the feed exactly (no
// float64 rounding), and a ring's resident list becomes its count.
func TestFeedDataKeepsLargeIDs(t *testing.T) {
	rec := es.Record{Type: doorbell.TypeDoorbellRang, Data: []byte(`{"ringId":"r","lockId":9007199254740993,"residents":[{"userId":"a","name":"A"},{"userId":"b","name":"B"}]}`)}
	got, err := notify.FeedData(rec)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"lockId":9007199254740993,"notified":2,"ringId":"r","type":"DoorbellRang"}`; string(got) != want {
		t.Fatalf("FeedData = %s, want %s", got, want)
	}
}
