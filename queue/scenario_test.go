package queue_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// TestRetriggerDoesNotGrowBackoff is the kubernetes/kubernetes#132805
// scenario: a key fails repeatedly while unrelated events keep re-adding it.
// Its backoff must follow the failures only: events neither run it early nor
// double its delay.
func TestRetriggerDoesNotGrowBackoff(t *testing.T) {
	q, clk := newFake(t, queue.Options[string]{
		RateLimiter: queue.NewFailureAware[string](queue.NewExponential[string](time.Second, time.Hour)),
	})
	q.Add("k")
	var runs []time.Duration
	for attempt := 0; attempt < 4; attempt++ {
		// Advance in 100ms steps, with an event each step, until k runs.
		for {
			if k, ok := q.TryGet(); ok {
				runs = append(runs, clk.Now().Sub(t0))
				q.Add(k) // an event arrives while it is being processed
				q.AddRateLimited(k)
				q.Done(k)
				break
			}
			clk.Advance(100 * time.Millisecond)
			q.Add("k")
		}
	}
	// Backoffs 1s, 2s, 4s after each failure: runs at 0, 1, 3, 7 s.
	want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second}
	if fmt.Sprint(runs) != fmt.Sprint(want) {
		t.Fatalf("runs at %v, want %v", runs, want)
	}
	if q.Retries("k") != 4 {
		t.Fatalf("Retries = %d, want 4 (one per real failure)", q.Retries("k"))
	}
}

// TestRetriggerWithBypassDoesNotGrowBackoff: if the caller does ask for events
// to run the key early, failures during the window still do not grow it.
func TestRetriggerWithBypassDoesNotGrowBackoff(t *testing.T) {
	q, clk := newFake(t, queue.Options[string]{
		RateLimiter: queue.NewFailureAware[string](queue.NewExponential[string](time.Second, time.Hour)),
	})
	q.Add("k")
	k, _ := q.TryGet()
	q.AddRateLimited(k)
	q.Done(k)
	for range 5 { // five early runs, each failing, within the first second
		clk.Advance(100 * time.Millisecond)
		q.AddWith("k", queue.AddOptions{BypassBackoff: true})
		k, ok := q.TryGet()
		if !ok {
			t.Fatal("bypass did not make the key ready")
		}
		q.AddRateLimited(k)
		q.Done(k)
	}
	if q.Retries("k") != 1 {
		t.Fatalf("Retries = %d, want 1", q.Retries("k"))
	}
	clk.Advance(499 * time.Millisecond) // 999ms since the first failure
	if q.Len() != 0 {
		t.Fatal("retry came before the original 1s window ended")
	}
	clk.Advance(time.Millisecond)
	if q.Len() != 1 {
		t.Fatal("retry did not come when the original window ended")
	}
}

// TestStarvationBound: workers are saturated by a stream of high-priority
// keys, one arriving per tick while one is processed per tick. A priority-0
// key must be handed out before any key that arrived more than
// (high−0)·AgingInterval after it — here within 10 ticks plus the backlog that
// was ahead of it. Without aging it would never run.
func TestStarvationBound(t *testing.T) {
	const (
		tick    = 10 * time.Millisecond
		high    = 10
		backlog = 5
		aging   = tick
	)
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			o := queue.Options[string]{AgingInterval: aging}
			if strict {
				o.AgingInterval = -1
			}
			q, clk := newFake(t, o)
			for i := range backlog {
				q.AddWithPriority(fmt.Sprintf("h%d", i), high)
			}
			q.AddWithPriority("low", 0)
			bound := backlog + high*int(aging/tick) + 1
			for n := 0; n < 1000; n++ {
				clk.Advance(tick)
				q.AddWithPriority(fmt.Sprintf("h%d", backlog+n), high)
				k, _ := q.TryGet()
				q.Done(k)
				if k == "low" {
					if strict {
						t.Fatalf("strict priorities ran low after %d ticks; test does not saturate", n)
					}
					if n >= bound {
						t.Fatalf("low ran after %d ticks, bound %d", n, bound)
					}
					return
				}
			}
			if !strict {
				t.Fatal("low starved for 1000 ticks")
			}
		})
	}
}

// TestGetWaitsForDeadline runs in a synctest bubble: the real clock follows
// the bubble's fake time, and synctest.Wait tells when Get is blocked.
func TestGetWaitsForDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		start := time.Now()
		q.AddAfter("later", 3*time.Second)
		q.AddAfter("sooner", time.Second)
		got := make(chan string, 2)
		go func() {
			for range 2 {
				k, err := q.Get(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				got <- k
				q.Done(k)
			}
		}()
		if k := <-got; k != "sooner" || time.Since(start) != time.Second {
			t.Fatalf("got %q at %v", k, time.Since(start))
		}
		synctest.Wait()
		q.AddAfter("middle", time.Second) // new earliest deadline while Get waits
		if k := <-got; k != "middle" || time.Since(start) != 2*time.Second {
			t.Fatalf("got %q at %v, want middle at 2s", k, time.Since(start))
		}
		q.ShutDown()
	})
}

func TestShutDownWakesBlockedGets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.AddAfter("x", time.Hour)
		errs := make(chan error, 3)
		for range 3 {
			go func() { _, err := q.Get(context.Background()); errs <- err }()
		}
		synctest.Wait()
		if q.Waiters() != 3 {
			t.Fatalf("Waiters = %d", q.Waiters())
		}
		q.ShutDown()
		for range 3 {
			if err := <-errs; !errors.Is(err, queue.ErrShutDown) {
				t.Fatalf("Get = %v", err)
			}
		}
	})
}

// TestDrainFinishesWork: ShutDownWithDrain hands out what is ready, requeues
// keys re-added while processing, and returns when all is Done.
func TestDrainFinishesWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		for i := range 10 {
			q.Add(fmt.Sprint(i))
		}
		q.AddAfter("never", time.Hour)
		first, _ := q.TryGet()
		q.Add(first) // re-added while processing: must run again
		seen := map[string]int{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				k, err := q.Get(context.Background())
				if err != nil {
					return
				}
				seen[k]++
				q.Done(k)
			}
		}()
		drained := make(chan error, 1)
		go func() { drained <- q.ShutDownWithDrain(context.Background()) }()
		synctest.Wait()
		q.Add("too-late")
		q.Done(first)
		if err := <-drained; err != nil {
			t.Fatal(err)
		}
		<-done
		if len(seen) != 10 || seen[first] != 1 || seen["never"] != 0 || seen["too-late"] != 0 {
			t.Fatalf("processed %v", seen)
		}
	})
}
