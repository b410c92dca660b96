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
