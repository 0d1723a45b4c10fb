// Package estest is the conformance suite of the es.Store contract. Every
// backend runs it from its own tests:
//
//	estest.Run(t, func(t *testing.T) es.Store { return openFreshStore(t) }, subscribe)
//
// open must return a fresh, empty, migrated store for each call; the suite
// calls it once per subtest, from parallel subtests, and never closes the
// store itself. subscribe gives a tenant a partner webhook: a record of a
// tenant gets its es.ConsumerWebhooks row only while the tenant has one. RunAggregate runs the same tests on the streams of one
// registered aggregate type (the app runs it for every aggregate of its
// registry), so that its store projections are held to the contract too.
package estest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spkey-dev/spkey/internal/es"
)

// ownType is the aggregate type of the streams Run writes: one no
// aggregate declares.
const ownType = "estest"

// suite is one run of the conformance tests: the aggregate type of every
// stream it writes and the stores it writes them to.
type suite struct {
	typ  string
	open func(t *testing.T) es.Store
}

// ts is the timestamp of every record the suite writes.
const ts = "2026-01-02T03:04:05.000Z"

// ignoreSeq compares records without their store-assigned position.
var ignoreSeq = cmpopts.IgnoreFields(es.Record{}, "Seq")

// Subscribe gives tenant org a partner webhook in st, without queueing
// an outbox row of its own: from then on the records of org get partner
// rows (es.ConsumerWebhooks).
type Subscribe func(t *testing.T, st es.Store, org string)

// subscribed are the tenants the suite's stores give a webhook as they
// are opened; unsubscribed is one they never do.
var subscribed = []string{"org", "org-1", "org-2"}

const unsubscribed = "org-without-webhook"

// Run runs every conformance test against stores made by open, on
// streams of the suite's own aggregate type.
func Run(t *testing.T, open func(t *testing.T) es.Store, subscribe Subscribe) {
	RunAggregate(t, ownType, open, subscribe)
}

// RunAggregate runs every conformance test against stores made by open, on
// streams of aggType: a registered aggregate type, whose store projections
// then see every record the suite appends (records of type TestEvent,
// which no aggregate declares and every projection must let pass).
func RunAggregate(t *testing.T, aggType string, open func(t *testing.T) es.Store, subscribe Subscribe) {
	x := suite{typ: aggType, open: func(t *testing.T) es.Store {
		st := open(t)
		for _, org := range subscribed {
			subscribe(t, st, org)
		}
		return st
	}}
	tests := []struct {
		name string
		fn   func(x suite, t *testing.T)
	}{
		{"AppendAndRead", suite.testAppendAndRead},
		{"StreamsAreSeparate", suite.testStreamsAreSeparate},
		{"SeqIsGlobalAndIncreasing", suite.testSeq},
		{"EmptyBatchIsNoOp", suite.testEmptyBatch},
		{"WrongExpectedVersion", suite.testWrongExpected},
		{"BatchMustContinueStream", suite.testBatchMustContinue},
		{"ErrorRollsBack", suite.testErrorRollsBack},
		{"ConcurrentAppendsOneStream", suite.testConcurrentOneStream},
		{"ConcurrentAppendsManyStreams", suite.testConcurrentManyStreams},
		{"Outbox", suite.testOutbox},
		{"OutboxLimit", suite.testOutboxLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(x, t)
		})
	}
}

// rec builds record version v of stream id, carrying payload p.
func (x suite) rec(id string, v int64, org string, p any) es.Record {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return es.Record{AggregateType: x.typ, AggregateID: id, Version: v, Type: "TestEvent", Timestamp: ts, OrgID: org, Data: b}
}

// recs builds versions from..to of stream id.
func (x suite) recs(id string, from, to int64, org string) []es.Record {
	var out []es.Record
	for v := from; v <= to; v++ {
		out = append(out, x.rec(id, v, org, map[string]any{"id": id, "v": v}))
	}
	return out
}

func (x suite) snap(id, org string) es.Snapshot {
	return es.Snapshot{AggregateType: x.typ, AggregateID: id, OrgID: org, State: json.RawMessage("{}")}
}

// appendRecs appends rs after expected in a transaction of its own. The
// records are copied: the caller's slice is left as it was.
func (x suite) appendRecs(ctx context.Context, st es.Store, id string, expected int64, org string, rs []es.Record) error {
	cp := append([]es.Record(nil), rs...)
	return st.Update(ctx, func(ctx context.Context, tx es.Appender) error {
		return tx.Append(ctx, expected, x.snap(id, org), cp)
	})
}

func (x suite) mustAppend(t *testing.T, st es.Store, id string, expected int64, org string, rs []es.Record) {
	t.Helper()
	if err := x.appendRecs(context.Background(), st, id, expected, org, rs); err != nil {
		t.Fatalf("append %s after v%d: %v", id, expected, err)
	}
}

func (x suite) stream(t *testing.T, st es.Store, id string, after int64, limit int) []es.Record {
	t.Helper()
	got, err := st.Stream(context.Background(), x.typ, id, after, limit)
	if err != nil {
		t.Fatalf("Stream(%s, after=%d, limit=%d): %v", id, after, limit, err)
	}
	return got
}

func (x suite) streamLen(t *testing.T, st es.Store, id string) int64 {
	t.Helper()
	n, err := st.StreamLen(context.Background(), x.typ, id)
	if err != nil {
		t.Fatalf("StreamLen(%s): %v", id, err)
	}
	return n
}

func outbox(t *testing.T, st es.Store, consumer string) []es.OutboxRow {
	t.Helper()
	rows, err := st.Outbox(context.Background(), consumer, 1000)
	if err != nil {
		t.Fatalf("Outbox(%s): %v", consumer, err)
	}
	return rows
}

// checkStream requires stream id to hold exactly want (Seq ignored).
func (x suite) checkStream(t *testing.T, st es.Store, id string, want []es.Record) {
	t.Helper()
	got := x.stream(t, st, id, 0, 0)
	if diff := cmp.Diff(want, got, ignoreSeq, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Stream(%s) mismatch (-want +got):\n%s", id, diff)
	}
	if n := x.streamLen(t, st, id); n != int64(len(want)) {
		t.Errorf("StreamLen(%s) = %d, want %d", id, n, len(want))
	}
}

func (x suite) testAppendAndRead(t *testing.T) {
	st := x.open(t)
	if n := x.streamLen(t, st, "a"); n != 0 {
		t.Fatalf("StreamLen of an empty stream = %d, want 0", n)
	}
	if got := x.stream(t, st, "a", 0, 0); len(got) != 0 {
		t.Fatalf("Stream of an empty stream = %v, want none", got)
	}
	all := x.recs("a", 1, 8, "")
	x.mustAppend(t, st, "a", 0, "", all[:5])
	x.mustAppend(t, st, "a", 5, "", all[5:6])
	x.mustAppend(t, st, "a", 6, "", all[6:])

	tests := []struct {
		name  string
		after int64
		limit int
		want  []es.Record
	}{
		{"everything", 0, 0, all},
		{"after", 3, 0, all[3:]},
		{"limit", 0, 2, all[:2]},
		{"after and limit", 3, 2, all[3:5]},
		{"limit past the end", 6, 10, all[6:]},
		{"after the last", 8, 0, nil},
		{"after past the end", 100, 5, nil},
		{"limit equals length", 0, 8, all},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := x.stream(t, st, "a", tc.after, tc.limit)
			if diff := cmp.Diff(tc.want, got, ignoreSeq, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Stream(after=%d, limit=%d) mismatch (-want +got):\n%s", tc.after, tc.limit, diff)
			}
		})
	}
	if n := x.streamLen(t, st, "a"); n != 8 {
		t.Errorf("StreamLen = %d, want 8", n)
	}
}

func (x suite) testStreamsAreSeparate(t *testing.T) {
	st := x.open(t)
	a, b := x.recs("a", 1, 3, ""), x.recs("b", 1, 2, "")
	x.mustAppend(t, st, "a", 0, "", a[:1])
	x.mustAppend(t, st, "b", 0, "", b)
	x.mustAppend(t, st, "a", 1, "", a[1:])
	// Same id, another aggregate type.
	other := es.Record{AggregateType: x.typ + "-other", AggregateID: "a", Version: 1, Type: "TestEvent", Timestamp: ts, Data: json.RawMessage(`{"other":true}`)}
	err := st.Update(context.Background(), func(ctx context.Context, tx es.Appender) error {
		return tx.Append(ctx, 0, es.Snapshot{AggregateType: other.AggregateType, AggregateID: "a", State: json.RawMessage("{}")}, []es.Record{other})
	})
	if err != nil {
		t.Fatalf("append to another aggregate type: %v", err)
	}
	x.checkStream(t, st, "a", a)
	x.checkStream(t, st, "b", b)
	got, err := st.Stream(context.Background(), other.AggregateType, "a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]es.Record{other}, got, ignoreSeq); diff != "" {
		t.Errorf("Stream of the other aggregate type mismatch (-want +got):\n%s", diff)
	}
}

func (x suite) testSeq(t *testing.T) {
	st := x.open(t)
	// Interleave two streams; Seq must follow commit order across both.
	order := []struct {
		id string
		v  int64
	}{{"a", 1}, {"b", 1}, {"a", 2}, {"b", 2}, {"b", 3}, {"a", 3}}
	for _, o := range order {
		x.mustAppend(t, st, o.id, o.v-1, "", x.recs(o.id, o.v, o.v, ""))
	}
	seqOf := map[string]int64{}
	for _, id := range []string{"a", "b"} {
		for _, r := range x.stream(t, st, id, 0, 0) {
			seqOf[fmt.Sprintf("%s/%d", r.AggregateID, r.Version)] = r.Seq
		}
	}
	var prev int64
	for _, o := range order {
		k := fmt.Sprintf("%s/%d", o.id, o.v)
		s, ok := seqOf[k]
		if !ok {
			t.Fatalf("record %s not read back", k)
		}
		if s <= prev {
			t.Errorf("Seq of %s = %d, want > %d (the Seq of the record appended before it)", k, s, prev)
		}
		prev = s
	}
}

func (x suite) testEmptyBatch(t *testing.T) {
	st := x.open(t)
	x.mustAppend(t, st, "a", 0, "org", nil)
	x.checkStream(t, st, "a", nil)
	if rows := outbox(t, st, es.ConsumerWebhooks); len(rows) != 0 {
		t.Errorf("outbox after an empty append = %v, want none", rows)
	}
	// The stream still starts at version 1.
	x.mustAppend(t, st, "a", 0, "", x.recs("a", 1, 1, ""))
	x.checkStream(t, st, "a", x.recs("a", 1, 1, ""))
}

// how a test's transaction treats the error of Append.
type errMode string

const (
	propagate errMode = "propagated" // fn returns Append's error (every real caller)
	swallow   errMode = "swallowed"  // fn ignores it and returns nil
)

// tryAppend appends rs inside a transaction and returns Append's own error
// and Update's. With swallow, fn returns nil whatever Append said.
func tryAppend(st es.Store, mode errMode, s es.Snapshot, expected int64, rs []es.Record) (appendErr, updateErr error) {
	cp := append([]es.Record(nil), rs...)
	updateErr = st.Update(context.Background(), func(ctx context.Context, tx es.Appender) error {
		appendErr = tx.Append(ctx, expected, s, cp)
		if mode == swallow {
			return nil
		}
		return appendErr
	})
	return appendErr, updateErr
}

func (x suite) testWrongExpected(t *testing.T) {
	tests := []struct {
		name     string
		existing int64 // versions already in the stream
		expected int64
		batch    int64 // records in the refused append
	}{
		{"behind by one", 2, 1, 1},
		{"behind by a batch", 3, 0, 2},
		{"zero on an existing stream", 2, 0, 1},
		{"ahead of the stream", 2, 5, 1},
		{"ahead with a batch", 2, 4, 3},
		{"positive on an empty stream", 0, 3, 1},
	}
	for _, mode := range []errMode{propagate, swallow} {
		for _, tc := range tests {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				st := x.open(t)
				const org = "org-1"
				before := x.recs("s", 1, tc.existing, org)
				if tc.existing > 0 {
					x.mustAppend(t, st, "s", 0, org, before)
				}
				outboxBefore := outbox(t, st, es.ConsumerWebhooks)

				bad := x.recs("s", tc.expected+1, tc.expected+tc.batch, org)
				for i := range bad {
					bad[i].Data = json.RawMessage(`{"refused":true}`)
				}
				appendErr, updateErr := tryAppend(st, mode, x.snap("s", org), tc.expected, bad)

				var ce *es.ConflictError
				if !errors.As(appendErr, &ce) {
					t.Fatalf("Append(expected=%d) on a stream at v%d = %v, want *es.ConflictError", tc.expected, tc.existing, appendErr)
				}
				want := es.ConflictError{AggregateType: x.typ, AggregateID: "s", Expected: tc.expected}
				if diff := cmp.Diff(want, *ce); diff != "" {
					t.Errorf("ConflictError mismatch (-want +got):\n%s", diff)
				}
				if mode == propagate && !errors.As(updateErr, &ce) {
					t.Errorf("Update returned %v, want the *es.ConflictError fn returned", updateErr)
				}
				// Nothing of the refused append is stored, whatever fn did
				// with the error afterwards.
				x.checkStream(t, st, "s", before)
				if diff := cmp.Diff(outboxBefore, outbox(t, st, es.ConsumerWebhooks), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("outbox changed by a refused append (-want +got):\n%s", diff)
				}
				// The stream is not wedged: the right version goes in.
				next := x.recs("s", tc.existing+1, tc.existing+1, org)
				x.mustAppend(t, st, "s", tc.existing, org, next)
				x.checkStream(t, st, "s", append(before, next...))
			})
		}
	}
}

func (x suite) testBatchMustContinue(t *testing.T) {
	mk := func(id string, v int64) es.Record { return x.rec(id, v, "org-1", map[string]any{"id": id, "v": v}) }
	tests := []struct {
		name     string
		existing int64
		expected int64
		batch    []es.Record
	}{
		{"gap inside the batch", 0, 0, []es.Record{mk("s", 1), mk("s", 3)}},
		{"repeated version", 0, 0, []es.Record{mk("s", 1), mk("s", 1)}},
		{"first version skips ahead", 0, 0, []es.Record{mk("s", 2), mk("s", 3)}},
		{"first version repeats the expected one", 2, 2, []es.Record{mk("s", 2), mk("s", 3)}},
		{"versions go backwards", 1, 1, []es.Record{mk("s", 3), mk("s", 2)}},
		{"second record of another stream", 0, 0, []es.Record{mk("s", 1), mk("t", 2)}},
		{"record of another stream only", 0, 0, []es.Record{mk("t", 1)}},
		{"record of another aggregate type", 0, 0, []es.Record{mk("s", 1), func() es.Record {
			r := mk("s", 2)
			r.AggregateType = x.typ + "-other"
			return r
		}()}},
	}
	for _, mode := range []errMode{propagate, swallow} {
		for _, tc := range tests {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				st := x.open(t)
				before := x.recs("s", 1, tc.existing, "org-1")
				if tc.existing > 0 {
					x.mustAppend(t, st, "s", 0, "org-1", before)
				}
				outboxBefore := outbox(t, st, es.ConsumerWebhooks)

				appendErr, updateErr := tryAppend(st, mode, x.snap("s", "org-1"), tc.expected, tc.batch)
				if appendErr == nil {
					t.Fatalf("Append of a batch that does not continue the stream succeeded")
				}
				var ce *es.ConflictError
				if errors.As(appendErr, &ce) {
					t.Errorf("Append of a malformed batch = %v, want a plain error: a *es.ConflictError makes callers retry a batch that can never succeed", appendErr)
				}
				if mode == propagate && updateErr == nil {
					t.Errorf("Update returned nil after fn returned %v", appendErr)
				}
				x.checkStream(t, st, "s", before)
				x.checkStream(t, st, "t", nil)
				other, err := st.Stream(context.Background(), x.typ+"-other", "s", 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(other) != 0 {
					t.Errorf("records stored in another aggregate type: %v", other)
				}
				if diff := cmp.Diff(outboxBefore, outbox(t, st, es.ConsumerWebhooks), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("outbox changed by a refused batch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

var errBoom = errors.New("estest: fn failed on purpose")

func (x suite) testErrorRollsBack(t *testing.T) {
	tests := []struct {
		name string
		fn   func(ctx context.Context, tx es.Appender) error
		want error // nil: a *es.ConflictError
	}{
		{"error after appends to two streams", func(ctx context.Context, tx es.Appender) error {
			if err := tx.Append(ctx, 0, x.snap("x", "org-1"), x.recs("x", 1, 3, "org-1")); err != nil {
				return err
			}
			if err := tx.Append(ctx, 0, x.snap("y", ""), x.recs("y", 1, 1, "")); err != nil {
				return err
			}
			if err := tx.Append(ctx, 3, x.snap("x", "org-1"), x.recs("x", 4, 4, "org-1")); err != nil {
				return err
			}
			return errBoom
		}, errBoom},
		{"conflict after a successful append", func(ctx context.Context, tx es.Appender) error {
			if err := tx.Append(ctx, 0, x.snap("x", "org-1"), x.recs("x", 1, 2, "org-1")); err != nil {
				return err
			}
			// y does not exist: expected 1 is a conflict.
			return tx.Append(ctx, 1, x.snap("y", ""), x.recs("y", 2, 2, ""))
		}, nil},
		{"wrapped error", func(ctx context.Context, tx es.Appender) error {
			if err := tx.Append(ctx, 0, x.snap("x", "org-1"), x.recs("x", 1, 1, "org-1")); err != nil {
				return err
			}
			return fmt.Errorf("outer: %w", errBoom)
		}, errBoom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := x.open(t)
			err := st.Update(context.Background(), tc.fn)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Update = %v, want fn's error %v", err, tc.want)
				}
			} else {
				var ce *es.ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("Update = %v, want *es.ConflictError", err)
				}
			}
			x.checkStream(t, st, "x", nil)
			x.checkStream(t, st, "y", nil)
			if rows := outbox(t, st, es.ConsumerWebhooks); len(rows) != 0 {
				t.Errorf("outbox rows left by a rolled-back transaction: %+v", rows)
			}
			// The snapshots went too: both streams start at version 1 again.
			x.mustAppend(t, st, "x", 0, "org-1", x.recs("x", 1, 1, "org-1"))
			x.mustAppend(t, st, "y", 0, "", x.recs("y", 1, 1, ""))
			x.checkStream(t, st, "x", x.recs("x", 1, 1, "org-1"))
			x.checkStream(t, st, "y", x.recs("y", 1, 1, ""))
		})
	}
}

type payload struct {
	G int `json:"g"`
	I int `json:"i"`
}

// backoff makes a writer that lost a race step aside for a few versions
// before it retries, the way a jittered sleep would, but waiting on what
// the other writers commit instead of on the clock. Without it all 16
// writers fight over every version and 15 of 16 attempts are wasted.
type backoff struct {
	mu        sync.Mutex
	cond      *sync.Cond
	published int64 // highest version a writer has committed
	active    int   // writers neither waiting nor finished
}

func newBackoff(writers int) *backoff {
	b := &backoff{active: writers}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *backoff) committed(v int64) {
	b.mu.Lock()
	b.published = max(b.published, v)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// waitFor blocks until version target is committed, or until every other
// writer is waiting or finished (then nobody would ever commit it).
func (b *backoff) waitFor(ctx context.Context, target int64) {
	b.mu.Lock()
	b.active--
	b.cond.Broadcast()
	for b.published < target && b.active > 0 && ctx.Err() == nil {
		b.cond.Wait()
	}
	b.active++
	b.mu.Unlock()
}

func (b *backoff) finished() {
	b.mu.Lock()
	b.active--
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (x suite) testConcurrentOneStream(t *testing.T) {
	const goroutines, each = 16, 50
	st := x.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bo := newBackoff(goroutines)
	stop := context.AfterFunc(ctx, bo.cond.Broadcast) // wake waiters at the deadline
	defer stop()

	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer bo.finished()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range each {
				for {
					if ctx.Err() != nil {
						t.Errorf("goroutine %d: deadline passed with %d of %d appends done", g, i, each)
						return
					}
					v, err := st.StreamLen(ctx, x.typ, "hot")
					if err != nil {
						t.Errorf("goroutine %d: StreamLen: %v", g, err)
						return
					}
					err = x.appendRecs(ctx, st, "hot", v, "", []es.Record{x.rec("hot", v+1, "", payload{g, i})})
					var ce *es.ConflictError
					if errors.As(err, &ce) {
						conflicts.Add(1)
						// Someone else committed v+1; let up to 15 more
						// versions go by before trying again.
						bo.waitFor(ctx, v+1+rng.Int64N(16))
						continue
					}
					if err != nil {
						t.Errorf("goroutine %d: append after v%d: %v", g, v, err)
						return
					}
					bo.committed(v + 1)
					break
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d appends, %d conflicts retried", goroutines*each, conflicts.Load())
	if conflicts.Load() == 0 {
		t.Logf("no append conflicted: the writers never raced")
	}

	if n := x.streamLen(t, st, "hot"); n != goroutines*each {
		t.Errorf("StreamLen = %d, want %d", n, goroutines*each)
	}
	got := x.stream(t, st, "hot", 0, 0)
	var versions, wantVersions []int64
	seen := map[payload]int{}
	last := make([]int64, goroutines) // version of each goroutine's latest payload
	for _, r := range got {
		versions = append(versions, r.Version)
		var p payload
		if err := json.Unmarshal(r.Data, &p); err != nil {
			t.Fatalf("v%d: bad payload %s: %v", r.Version, r.Data, err)
		}
		seen[p]++
		if p.G < 0 || p.G >= goroutines {
			t.Fatalf("v%d: payload of unknown goroutine %d", r.Version, p.G)
		}
		if r.Version <= last[p.G] {
			t.Errorf("goroutine %d's payload %d at v%d, before its earlier payload at v%d", p.G, p.I, r.Version, last[p.G])
		}
		last[p.G] = r.Version
	}
	for v := int64(1); v <= goroutines*each; v++ {
		wantVersions = append(wantVersions, v)
	}
	if diff := cmp.Diff(wantVersions, versions); diff != "" {
		t.Errorf("versions not 1..%d contiguous (-want +got):\n%s", goroutines*each, diff)
	}
	var missing, dup []payload
	for g := range goroutines {
		for i := range each {
			switch n := seen[payload{g, i}]; {
			case n == 0:
				missing = append(missing, payload{g, i})
			case n > 1:
				dup = append(dup, payload{g, i})
			}
		}
	}
	if len(missing) > 0 || len(dup) > 0 {
		t.Errorf("lost updates %v, duplicated %v", missing, dup)
	}
}

func (x suite) testConcurrentManyStreams(t *testing.T) {
	const goroutines, each = 16, 20
	st := x.open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("own-%02d", g)
			for v := int64(1); v <= each; v++ {
				// Nobody else writes this stream: no append may conflict.
				if err := x.appendRecs(ctx, st, id, v-1, "org", x.recs(id, v, v, "org")); err != nil {
					t.Errorf("%s v%d: %v", id, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for g := range goroutines {
		id := fmt.Sprintf("own-%02d", g)
		x.checkStream(t, st, id, x.recs(id, 1, each, "org"))
	}
	if rows := outbox(t, st, es.ConsumerWebhooks); len(rows) != goroutines*each {
		t.Errorf("outbox has %d rows, want %d", len(rows), goroutines*each)
	}
}

// outboxKey is an outbox row without the ids the store assigns.
type outboxKey struct {
	Consumer, AggregateType, AggregateID, OrgID string
	Version                                     int64
}

func (x suite) testOutbox(t *testing.T) {
	type step struct {
		org     string // record org
		records int64
	}
	tests := []struct {
		name  string
		steps []step
		want  []outboxKey
	}{
		{"record with an org", []step{{"org-1", 1}}, []outboxKey{{es.ConsumerWebhooks, x.typ, "s", "org-1", 1}}},
		{"record without an org", []step{{"", 1}}, nil},
		{"record of an org without a webhook", []step{{unsubscribed, 2}}, nil},
		{"org without a webhook set later", []step{{unsubscribed, 1}, {"org-1", 1}}, []outboxKey{{es.ConsumerWebhooks, x.typ, "s", "org-1", 2}}},
		{"batch with an org", []step{{"org-1", 3}}, []outboxKey{
			{es.ConsumerWebhooks, x.typ, "s", "org-1", 1},
			{es.ConsumerWebhooks, x.typ, "s", "org-1", 2},
			{es.ConsumerWebhooks, x.typ, "s", "org-1", 3},
		}},
		{"org set later", []step{{"", 2}, {"org-2", 1}, {"", 1}}, []outboxKey{{es.ConsumerWebhooks, x.typ, "s", "org-2", 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := x.open(t)
			var v int64
			for _, s := range tc.steps {
				x.mustAppend(t, st, "s", v, s.org, x.recs("s", v+1, v+s.records, s.org))
				v += s.records
			}
			rows := outbox(t, st, es.ConsumerWebhooks)
			var got []outboxKey
			seqs := map[int64]int64{}
			for _, r := range x.stream(t, st, "s", 0, 0) {
				seqs[r.Version] = r.Seq
			}
			for _, r := range rows {
				got = append(got, outboxKey{r.Consumer, r.AggregateType, r.AggregateID, r.OrgID, r.Version})
				if r.EventSeq != seqs[r.Version] {
					t.Errorf("outbox row of v%d points at event seq %d, want %d", r.Version, r.EventSeq, seqs[r.Version])
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("outbox rows mismatch (-want +got):\n%s", diff)
			}
			if !sort.SliceIsSorted(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID }) {
				t.Errorf("outbox rows not oldest first: %+v", rows)
			}
			if other := outbox(t, st, "estest-other-consumer"); len(other) != 0 {
				t.Errorf("rows for a consumer nobody writes to: %+v", other)
			}
		})
	}
}

func (x suite) testOutboxLimit(t *testing.T) {
	st := x.open(t)
	x.mustAppend(t, st, "a", 0, "org-1", x.recs("a", 1, 2, "org-1"))
	x.mustAppend(t, st, "b", 0, "org-1", x.recs("b", 1, 1, "org-1"))
	rows, err := st.Outbox(context.Background(), es.ConsumerWebhooks, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s/%d", r.AggregateID, r.Version))
	}
	if diff := cmp.Diff([]string{"a/1", "a/2"}, got); diff != "" {
		t.Errorf("Outbox(limit 2) mismatch (-want +got):\n%s", diff)
	}
}
