package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/store"
)

// TestHandedOver: entries handed to a stream with a wake-up are used only
// when they follow what the stream sent without a gap; otherwise the
// stream reads the feed.
func TestHandedOver(t *testing.T) {
	e := func(n int64, org string) store.FeedEntry { return store.FeedEntry{N: n, OrgID: org} }
	for _, c := range []struct {
		name   string
		pushed []store.FeedEntry
		last   int64
		org    string
		want   []int64
		upTo   int64
		readDB bool
	}{
		{"nothing handed over", nil, 4, "", nil, 0, true},
		{"follows", []store.FeedEntry{e(5, "a"), e(6, "a")}, 4, "", []int64{5, 6}, 6, false},
		{"partly sent already", []store.FeedEntry{e(4, "a"), e(5, "a")}, 4, "", []int64{5}, 5, false},
		{"all sent already", []store.FeedEntry{e(3, "a"), e(4, "a")}, 4, "", nil, 4, false},
		{"a gap before", []store.FeedEntry{e(6, "a")}, 4, "", nil, 0, true},
		{"a gap inside", []store.FeedEntry{e(5, "a"), e(7, "a")}, 4, "", nil, 0, true},
		{"another tenant's entry is skipped but counted", []store.FeedEntry{e(5, "b"), e(6, "a")}, 4, "a", []int64{6}, 6, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, upTo, readDB := handedOver(c.pushed, c.last, c.org)
			var ns []int64
			for _, g := range got {
				ns = append(ns, g.N)
			}
			if diff := cmp.Diff(c.want, ns); diff != "" || upTo != c.upTo || readDB != c.readDB {
				t.Errorf("got %v up to %d readDB %v; want %v up to %d readDB %v", ns, upTo, readDB, c.want, c.upTo, c.readDB)
			}
		})
	}
}
