package store

import (
	"github.com/spkey-dev/spkey/internal/es"

	"fmt"
	"strings"
	"testing"
)

// TestInvalidationPayloads: a batch's invalidations fit PostgreSQL's NOTIFY
// payload limit however many rows it changed, each payload names the
// sender, nothing is lost across the split, and an absurd batch becomes
// one "forget everything".
func TestInvalidationPayloads(t *testing.T) {
	c := newReadCache()
	n := &cacheNode{id: "me", cache: c, odd: map[string]bool{}}
	b := newBatch()
	for i := range 1500 {
		b.invalidateSnapshot("lock", fmt.Sprintf("%040d", i), int64(i+1))
	}
	b.invalidateUser("u1")
	b.invalidate("k")
	b.invalidate("k")
	ps := b.invalidations("other 1")
	if len(ps) < 2 {
		t.Fatalf("%d payloads, want the batch split", len(ps))
	}
	lines := 0
	for _, p := range ps {
		if len(p) >= maxPayload || !strings.HasPrefix(p, "other 1\n") {
			t.Fatalf("payload of %d bytes starting %q", len(p), p[:20])
		}
		lines += strings.Count(p, "\n")
	}
	if lines != 1502 {
		t.Fatalf("%d keys across the payloads, want 1502 (duplicates once)", lines)
	}
	// Applied on another node: every snapshot floor is in place.
	c.putSnapshot(snap("lock", fmt.Sprintf("%040d", 7), 3))
	for _, p := range ps {
		n.apply(p)
	}
	if _, ok := c.snapshot("lock", fmt.Sprintf("%040d", 7)); ok {
		t.Fatal("an older cached snapshot survived its invalidation")
	}
	c.putReadSnapshot(snap("lock", fmt.Sprintf("%040d", 1499), 1499), c.snapEpoch())
	if _, ok := c.snapshot("lock", fmt.Sprintf("%040d", 1499)); ok {
		t.Fatal("a reader put back a version below the floor")
	}
	c.putReadSnapshot(snap("lock", fmt.Sprintf("%040d", 1499), 1500), c.snapEpoch())
	if _, ok := c.snapshot("lock", fmt.Sprintf("%040d", 1499)); !ok {
		t.Fatal("the version the invalidation named was refused")
	}
	// Own notifications are skipped, unless the commit's outcome was unknown.
	c.putSnapshot(snap("lock", "x", 1))
	own := newBatch()
	own.invalidateSnapshot("lock", "x", 2)
	n.apply(own.invalidations("me 5")[0])
	if _, ok := c.snapshot("lock", "x"); !ok {
		t.Fatal("a node applied its own notification")
	}
	n.unsure("me 6")
	c.putSnapshot(snap("lock", "x", 1))
	n.apply(own.invalidations("me 6")[0])
	if _, ok := c.snapshot("lock", "x"); ok {
		t.Fatal("the notification of an own commit with an unknown outcome was skipped")
	}

	huge := newBatch()
	for i := range maxInvalidations + 1 {
		huge.invalidateUser(fmt.Sprint(i))
	}
	if ps := huge.invalidations("other 2"); len(ps) != 1 || ps[0] != "other 2\n*" {
		t.Fatalf("huge batch: %d payloads, first %.40q", len(ps), ps[0])
	}
}

func snap(typ, id string, v int64) es.Snapshot {
	return es.Snapshot{AggregateType: typ, AggregateID: id, Version: v}
}
