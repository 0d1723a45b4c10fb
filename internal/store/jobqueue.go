package store

import (
	"context"
	"errors"
	"sync"
)

// job is one queued write: its body, and where its outcome goes.
type job struct {
	ctx  context.Context
	fn   txFunc
	done chan error
}

var errClosed = errors.New("store: closed")

// jobQueue is what both writers share: callers queue jobs (submit), one
// goroutine drains them in batches of at most maxBatch and hands each
// batch to the writer (serve), and a stop finishes what was queued. A
// batch closes as soon as the queue is empty, so a lone request waits for
// nobody.
type jobQueue struct {
	jobs     chan *job
	maxBatch int
	stop     chan struct{}
	exited   chan struct{} // closed when serve has returned
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func newJobQueue(maxBatch int) *jobQueue {
	return &jobQueue{jobs: make(chan *job, 1024), maxBatch: maxBatch, stop: make(chan struct{}), exited: make(chan struct{})}
}

// submit queues fn and returns its outcome. Once queued the job runs to
// its end even if ctx is cancelled: the caller must learn whether it
// committed. A job queued just as the writer stopped never runs: it is
// refused, not left waiting.
func (q *jobQueue) submit(ctx context.Context, fn txFunc) error {
	j := &job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case q.jobs <- j:
	case <-q.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-j.done:
		return err
	case <-q.exited:
		select {
		case err := <-j.done:
			return err
		default:
			return errClosed
		}
	}
}

// start runs serve in a goroutine of its own.
func (q *jobQueue) start(run func(batch []*job), between func()) {
	q.wg.Add(1)
	go q.serve(run, between)
}

// serve hands batches to run, calling between (if not nil) after each,
// until the queue stops; then it runs what was queued before the stop,
// one job at a time.
func (q *jobQueue) serve(run func(batch []*job), between func()) {
	defer q.wg.Done()
	defer close(q.exited)
	batch := make([]*job, 0, q.maxBatch)
	for {
		select {
		case j := <-q.jobs:
			batch = append(batch[:0], j)
		drain:
			for len(batch) < q.maxBatch {
				select {
				case j := <-q.jobs:
					batch = append(batch, j)
				default:
					break drain
				}
			}
			run(batch)
			if between != nil {
				between()
			}
		case <-q.stop:
			for {
				select {
				case j := <-q.jobs:
					run([]*job{j})
				default:
					return
				}
			}
		}
	}
}

// shutdown stops the queue and waits for serve to return.
func (q *jobQueue) shutdown() {
	q.stopOnce.Do(func() { close(q.stop) })
	q.wg.Wait()
}

// alive answers the jobs whose callers gave up and returns the others.
func alive(batch []*job) []*job {
	live := make([]*job, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		live = append(live, j)
	}
	return live
}
