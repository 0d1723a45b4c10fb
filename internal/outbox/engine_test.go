package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const (
	toyType     = "toy"
	toyConsumer = "toy.deliver"
	waitTimeout = 10 * time.Second
)

// fastConfig is an engine with short retries and a poll slower than the
// tests' waits for a wake-up would need.
func fastConfig(node string) outbox.Config {
	return outbox.Config{Node: node, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, PollInterval: 5 * time.Second,
		Lease: 5 * time.Second, MaxAttempts: 20}
}

// toyRoute gives every toy event one row aimed at its aggregate.
func toyRoute(_ context.Context, _ *store.Tx, rec es.Record) ([]string, error) {
	if rec.AggregateType != toyType {
		return nil, nil
	}
	return []string{rec.AggregateID}, nil
}

// appendToy appends one event to toy stream id (version 1).
func appendToy(t *testing.T, st *store.Store, id string) {
	t.Helper()
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	err := st.Write(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		snap := es.Snapshot{AggregateType: toyType, AggregateID: id, State: []byte(`{}`)}
		return tx.Append(ctx, 0, snap, []es.Record{{AggregateType: toyType, AggregateID: id, Version: 1, Type: "ToyHappened", Timestamp: now, Data: []byte(`{}`)}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs e until the test ends.
func run(t *testing.T, e *outbox.Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("engine %s did not stop", e.Node())
		}
	})
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// undone counts the consumer's rows not done yet.
func undone(t *testing.T, st *store.Store) int {
	rows, err := st.Outbox(context.Background(), toyConsumer, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

// TestRoutedRowRetriedThenDelivered: an appended event gets the row its
// consumer's routing asks for; a retry is recorded and retried after its
// backoff (found by the poll), and both attempts are recorded and
// observed.
func TestRoutedRowRetriedThenDelivered(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			var mu sync.Mutex
			var observed []string
			cfg := fastConfig("node-a")
			cfg.PollInterval = 50 * time.Millisecond
			cfg.Observe = func(consumer, outcome string, _ time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				observed = append(observed, consumer+":"+outcome)
			}
			e := outbox.New(st, cfg, testenv.Discard())
			var claims []store.Claim
			e.Register(outbox.Consumer{Name: toyConsumer, Route: toyRoute, Deliver: func(_ context.Context, cl store.Claim) outbox.Result {
				mu.Lock()
				defer mu.Unlock()
				claims = append(claims, cl)
				if len(claims) == 1 {
					return outbox.Result{Status: store.OutcomeRetry, StatusCode: 503, Err: errors.New("HTTP 503")}
				}
				return outbox.Result{Status: store.StatusDelivered, StatusCode: 200}
			}})
			st.SetRouter(e)
			run(t, e)
			appendToy(t, st, "t1")
			// Observe runs after the verdict is stored: wait for both.
			waitFor(t, "the row delivered and both attempts observed", func() (bool, string) {
				n := undone(t, st)
				mu.Lock()
				defer mu.Unlock()
				return n == 0 && len(observed) >= 2, fmt.Sprintf("%d rows undone, observed %v", n, observed)
			})
			mu.Lock()
			defer mu.Unlock()
			if len(claims) != 2 || claims[0].Target != "t1" || claims[1].ID != claims[0].ID || claims[1].Attempts != 1 {
				t.Fatalf("claims: %+v", claims)
			}
			atts, err := st.Attempts(ctx, claims[0].ID)
			if err != nil || len(atts) != 2 || atts[0].Outcome != store.OutcomeRetry || atts[0].StatusCode != 503 || atts[0].Error != "HTTP 503" ||
				atts[1].Outcome != store.StatusDelivered || atts[0].Node != "node-a" {
				t.Fatalf("attempts: %v %+v", err, atts)
			}
			if want := []string{toyConsumer + ":retry", toyConsumer + ":delivered"}; fmt.Sprint(observed) != fmt.Sprint(want) {
				t.Errorf("observed %v, want %v", observed, want)
			}
		})
	}
}

// TestExactlyOnceAcrossNodes: two engines (two nodes) on one store share
// a consumer's rows without doubling them: every row is delivered once,
// with one recorded attempt.
func TestExactlyOnceAcrossNodes(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			var mu sync.Mutex
			sent := map[int64]int{}
			nodes := map[string]int{}
			consumer := func(node string) outbox.Consumer {
				return outbox.Consumer{Name: toyConsumer, Route: toyRoute, Deliver: func(_ context.Context, cl store.Claim) outbox.Result {
					time.Sleep(2 * time.Millisecond) // claims overlap
					mu.Lock()
					defer mu.Unlock()
					sent[cl.ID]++
					nodes[node]++
					return outbox.Result{Status: store.StatusDelivered}
				}, Policy: outbox.Policy{Workers: 4}}
			}
			for _, node := range []string{"node-a", "node-b"} {
				cfg := fastConfig(node)
				cfg.PollInterval, cfg.Batch = 50*time.Millisecond, 4
				e := outbox.New(st, cfg, testenv.Discard())
				e.Register(consumer(node))
				if node == "node-a" {
					st.SetRouter(e)
				}
				run(t, e)
			}
			const rows = 60
			for i := range rows {
				appendToy(t, st, fmt.Sprint("t", i))
			}
			waitFor(t, "every row done", func() (bool, string) {
				n := undone(t, st)
				return n == 0, fmt.Sprintf("%d rows undone", n)
			})
			mu.Lock()
			defer mu.Unlock()
			if len(sent) != rows {
				t.Errorf("%d rows delivered, want %d", len(sent), rows)
			}
			for id, n := range sent {
				atts, err := st.Attempts(ctx, id)
				if n != 1 || err != nil || len(atts) != 1 || atts[0].Outcome != store.StatusDelivered {
					t.Errorf("row %d: delivered %d times, attempts %v %+v", id, n, err, atts)
				}
			}
			t.Logf("deliveries per node: %v", nodes)
		})
	}
}

// TestBatchVerdicts: a batch consumer's own recorded verdicts are only
// counted; the others (skipped, retry) are recorded by the engine.
func TestBatchVerdicts(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			var mu sync.Mutex
			observed := map[string]int{}
			cfg := fastConfig("node-a")
			cfg.Observe = func(_, outcome string, _ time.Duration) { mu.Lock(); observed[outcome]++; mu.Unlock() }
			e := outbox.New(st, cfg, testenv.Discard())
			var ids []int64
			e.Register(outbox.Consumer{Name: toyConsumer, Route: toyRoute, DeliverBatch: func(ctx context.Context, claims []store.Claim) []outbox.Result {
				rs := make([]outbox.Result, len(claims))
				for i, cl := range claims {
					mu.Lock()
					ids = append(ids, cl.ID)
					mu.Unlock()
					if cl.Target == "skip" {
						rs[i] = outbox.Result{Status: store.StatusSkipped, Err: errors.New("nothing to send")}
						continue
					}
					// Recorded here, as the live feed does in its own
					// transaction.
					err := st.Finish(ctx, cl, "node-a", store.Outcome{Status: store.StatusDelivered, At: time.Now()})
					rs[i] = outbox.Result{Status: store.StatusDelivered, Recorded: true, Err: err}
				}
				return rs
			}})
			st.SetRouter(e)
			run(t, e)
			appendToy(t, st, "skip")
			appendToy(t, st, "keep")
			// Observe runs after the verdicts are stored: wait for both.
			waitFor(t, "both rows done and observed", func() (bool, string) {
				n := undone(t, st)
				mu.Lock()
				defer mu.Unlock()
				return n == 0 && observed[store.StatusSkipped]+observed[store.StatusDelivered] >= 2, fmt.Sprintf("%d rows undone, observed %v", n, observed)
			})
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				atts, err := st.Attempts(ctx, id)
				if err != nil || len(atts) != 1 {
					t.Errorf("row %d attempts: %v %+v", id, err, atts)
				}
			}
			if observed[store.StatusSkipped] != 1 || observed[store.StatusDelivered] != 1 {
				t.Errorf("observed %v", observed)
			}
		})
	}
}

// TestWakeAfterCommit: the commit that queued a row wakes its consumer at
// once; the poll (a minute here) is not what finds it.
func TestWakeAfterCommit(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			st := testenv.OpenStore(t, b)
			cfg := fastConfig("node-a")
			cfg.PollInterval = time.Minute
			e := outbox.New(st, cfg, testenv.Discard())
			got := make(chan struct{}, 1)
			e.Register(outbox.Consumer{Name: toyConsumer, Route: toyRoute, Deliver: func(context.Context, store.Claim) outbox.Result {
				got <- struct{}{}
				return outbox.Result{Status: store.StatusDelivered}
			}})
			st.SetRouter(e)
			run(t, e)
			time.Sleep(100 * time.Millisecond) // the first look at start-up has passed
			appendToy(t, st, "t1")
			select {
			case <-got:
			case <-time.After(waitTimeout):
				t.Fatal("the row was not delivered after its commit")
			}
		})
	}
}
