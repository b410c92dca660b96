package queue_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// TestConcurrentInvariants hammers a queue from producers and workers (half
// of them stepping with Done+Get, half with DoneAndGet) with a seeded random
// mix of operations on the real clock and checks:
//   - no key is ever processed by two workers at once;
//   - every key is processed after its last add (nothing lost);
//   - a drain finishes everything that was ready.
func TestConcurrentInvariants(t *testing.T) {
	s := seed(t)
	const (
		keys      = 64
		producers = 4
		workers   = 8
		addsEach  = 3000
	)
	q := queue.New(queue.Options[int]{
		RateLimiter: queue.NewExponential[int](time.Microsecond, 100*time.Microsecond),
	})
	var (
		active    [keys]atomic.Int32
		addSeq    [keys]atomic.Int64 // bumped before each add
		seenSeq   [keys]atomic.Int64 // addSeq observed at the start of the last processing
		overlaps  atomic.Int32
		processed atomic.Int64
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s, uint64(100+w)))
			combined := w%2 == 1 // half the workers step with DoneAndGet
			k, err := q.Get(ctx)
			for {
				if err != nil {
					if !errors.Is(err, queue.ErrShutDown) {
						t.Error(err)
					}
					return
				}
				if active[k].Add(1) != 1 {
					overlaps.Add(1)
				}
				seenSeq[k].Store(addSeq[k].Load())
				processed.Add(1)
				if r.IntN(20) == 0 {
					q.AddRateLimited(k) // a failure: retried later, counts as a new add
				} else {
					q.Forget(k)
				}
				active[k].Add(-1)
				if combined {
					k, err = q.DoneAndGet(ctx, k)
				} else {
					q.Done(k)
					k, err = q.Get(ctx)
				}
			}
		})
	}
	var pg sync.WaitGroup
	for p := range producers {
		pg.Go(func() {
			r := rand.New(rand.NewPCG(s, uint64(p)))
			for range addsEach {
				k := r.IntN(keys)
				addSeq[k].Add(1)
				switch r.IntN(4) {
				case 0:
					q.AddWithPriority(k, r.IntN(5)-2)
				case 1:
					q.AddAfter(k, time.Duration(r.IntN(200))*time.Microsecond)
				default:
					q.Add(k)
				}
			}
		})
	}
	pg.Wait()
	// Wait (with a deadline) until every key's last add has been processed.
	deadline := time.Now().Add(20 * time.Second)
	for k := range keys {
		for seenSeq[k].Load() != addSeq[k].Load() || q.Len() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("key %d: last add %d, last processed after add %d", k, addSeq[k].Load(), seenSeq[k].Load())
			}
			time.Sleep(time.Millisecond) // poll interval of a condition wait
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := q.ShutDownWithDrain(dctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d times a key was processed by two workers at once", n)
	}
	if err := q.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	t.Logf("processed %d items", processed.Load())
}

// TestConcurrentDrain runs seeded rounds of a drain that starts while every
// worker holds a key, some of them added again while processing (a pending
// requeue), and workers that then race Done, Get and DoneAndGet with adds
// that the drain must ignore. It checks that each key is processed exactly
// once, plus once more if it was added again before the drain (nothing lost,
// nothing extra), never by two workers at once, that every worker ends with
// ErrShutDown and the drain with nil. Half of the rounds call ShutDown
// during the drain instead: then the drain returns nil or ErrDrainStopped,
// keys may be dropped but none is processed more than it should, and every
// worker still ends.
func TestConcurrentDrain(t *testing.T) {
	s := seed(t)
	r := rand.New(rand.NewPCG(s, 1))
	for round := range 40 {
		stopAfter := -1 // processed keys after which ShutDown ends the drain
		if round%2 == 1 {
			stopAfter = r.IntN(50)
		}
		drainRound(t, r.Uint64(), 2+r.IntN(7), r.IntN(200), stopAfter)
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}

func drainRound(t *testing.T, s uint64, workers, extra, stopAfter int) {
	keys := workers + extra // every worker can hold a distinct key
	q := queue.New(queue.Options[int]{})
	r := rand.New(rand.NewPCG(s, 0))
	for k := range keys {
		q.AddWithPriority(k, r.IntN(3))
	}
	var (
		active    = make([]atomic.Int32, keys)
		count     = make([]atomic.Int32, keys)
		requeued  = make([]atomic.Int32, keys)
		overlaps  atomic.Int32
		processed atomic.Int32
		holding   = make(chan struct{}, workers)
		gate      = make(chan struct{})
	)
	// A deadline on every call that may block, so that a queue bug fails
	// the round instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			wr := rand.New(rand.NewPCG(s, uint64(1+w)))
			first := true
			k, err := q.Get(ctx)
			for err == nil {
				if active[k].Add(1) != 1 {
					overlaps.Add(1)
				}
				count[k].Add(1)
				processed.Add(1)
				if first {
					if wr.IntN(2) == 0 { // before the drain: must run again
						requeued[k].Store(1)
						q.AddWithPriority(k, wr.IntN(3))
					}
					holding <- struct{}{}
					select {
					case <-gate:
					case <-ctx.Done():
					}
					first = false
				} else {
					switch wr.IntN(4) { // during the drain: ignored
					case 0:
						q.Add(k)
					case 1:
						q.AddAfter(k, 0)
					case 2:
						q.AddRateLimited(k)
					}
				}
				active[k].Add(-1)
				if w%2 == 0 {
					k, err = q.DoneAndGet(ctx, k)
				} else {
					q.Done(k)
					k, err = q.Get(ctx)
				}
			}
			if !errors.Is(err, queue.ErrShutDown) {
				t.Errorf("worker %d: Get = %v, want ErrShutDown", w, err)
			}
		})
	}
	for range workers {
		select {
		case <-holding:
		case <-ctx.Done():
			t.Fatal("workers did not all take a key")
		}
	}
	drained := make(chan error, 1)
	go func() { drained <- q.ShutDownWithDrain(ctx) }()
	waitFor(t, q.ShuttingDown)
	close(gate)
	if stopAfter >= 0 {
		waitFor(t, func() bool {
			return int(processed.Load()) >= min(stopAfter, keys)
		})
		q.ShutDown()
	}
	err := <-drained
	wg.Wait()
	switch {
	case stopAfter < 0 && err != nil:
		t.Errorf("drain = %v, want nil", err)
	case stopAfter >= 0 && err != nil && !errors.Is(err, queue.ErrDrainStopped):
		t.Errorf("drain = %v, want nil or ErrDrainStopped", err)
	}
	for k := range keys {
		got, want := count[k].Load(), 1+requeued[k].Load()
		if got > want || stopAfter < 0 && got != want {
			t.Errorf("key %d processed %d times, want %d", k, got, want)
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times a key was processed by two workers at once", n)
	}
	if err := q.CheckInvariants(); err != nil {
		t.Error(err)
	}
	if err := q.ShutDownWithDrain(ctx); err != nil {
		t.Errorf("drain once every worker ended = %v", err)
	}
}
