package queue_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/skiffkit/skiff/queue"
)

// The tests here follow the list of shutdown rules in shutdown.go. They run
// in synctest bubbles: synctest.Wait() returns once every goroutine of the
// bubble is blocked, so "still blocked" is checked exactly, without sleeps.

type getResult struct {
	key string
	err error
}

// goGet calls q.Get in a new goroutine and delivers its result.
func goGet(q *queue.Queue[string]) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		k, err := q.Get(context.Background())
		ch <- getResult{k, err}
	}()
	return ch
}

// goDrain calls q.ShutDownWithDrain in a new goroutine and delivers its result.
func goDrain(q *queue.Queue[string]) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- q.ShutDownWithDrain(context.Background()) }()
	return ch
}

// blocked fails the test if ch has a value; call it after synctest.Wait().
func blocked[T any](t *testing.T, what string, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned %v, want it still blocked", what, v)
	default:
	}
}

func wantGet(t *testing.T, r getResult, key string, err error) {
	t.Helper()
	if r.key != key || !errors.Is(r.err, err) {
		t.Fatalf("Get = %q, %v; want %q, %v", r.key, r.err, key, err)
	}
}

func mustTake(t *testing.T, q *queue.Queue[string], want string) {
	t.Helper()
	if k, ok := q.TryGet(); !ok || k != want {
		t.Fatalf("TryGet = %q, %v; want %q", k, ok, want)
	}
}

// A drain hands out the ready keys; once nothing is ready and no key being
// processed has a pending requeue, Get returns ErrShutDown even though keys
// are still being processed, and the drain itself waits for their Done.
func TestDrainGetEndsWhenNothingCanBecomeReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("a")
		q.Add("b")
		q.AddAfter("later", 1<<40)
		mustTake(t, q, "a")
		drained := goDrain(q)
		synctest.Wait()
		blocked(t, "drain", drained)
		q.Add("too-late")
		wantGet(t, <-goGet(q), "b", nil)
		wantGet(t, <-goGet(q), "", queue.ErrShutDown) // a and b still processing
		q.Done("a")
		synctest.Wait()
		blocked(t, "drain", drained)
		q.Done("b")
		if err := <-drained; err != nil {
			t.Fatalf("drain = %v", err)
		}
		wantGet(t, <-goGet(q), "", queue.ErrShutDown)
		if err := q.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// A key added again while it is processed, before the drain, is requeued by
// its Done and handed out to a Get that was blocked waiting for it; the
// other blocked Get ends once that key is taken.
func TestDrainDeliversKeyRequeuedByDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("a")
		mustTake(t, q, "a")
		q.AddWithPriority("a", 3) // pending requeue
		drained := goDrain(q)
		g1, g2 := goGet(q), goGet(q)
		synctest.Wait()
		blocked(t, "drain", drained)
		blocked(t, "Get 1", g1)
		blocked(t, "Get 2", g2)
		if n := q.Waiters(); n != 2 {
			t.Fatalf("Waiters = %d, want 2", n)
		}
		q.Done("a")
		r1, r2 := <-g1, <-g2
		if r2.err == nil {
			r1, r2 = r2, r1
		}
		wantGet(t, r1, "a", nil)
		wantGet(t, r2, "", queue.ErrShutDown)
		synctest.Wait()
		blocked(t, "drain", drained) // a is being processed again
		if q.LenByPriority()[3] != 0 {
			t.Fatal("a still ready after it was handed out")
		}
		q.Done("a")
		if err := <-drained; err != nil {
			t.Fatalf("drain = %v", err)
		}
		if err := q.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// DoneAndGet of a key with a pending requeue returns that key again.
func TestDrainDoneAndGetTakesItsRequeue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		ctx := context.Background()
		q.Add("a")
		mustTake(t, q, "a")
		q.Add("a")
		drained := goDrain(q)
		synctest.Wait()
		k, err := q.DoneAndGet(ctx, "a")
		wantGet(t, getResult{k, err}, "a", nil)
		blocked(t, "drain", drained)
		k, err = q.DoneAndGet(ctx, "a")
		wantGet(t, getResult{k, err}, "", queue.ErrShutDown)
		if err := <-drained; err != nil {
			t.Fatalf("drain = %v", err)
		}
	})
}

// ShutDown during a drain ends it at once: the waiting drain returns
// ErrDrainStopped although a key is still being processed, the ready keys
// and the pending requeue are dropped, and Done is still accepted.
func TestShutDownEndsDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("busy")
		q.Add("ready")
		mustTake(t, q, "busy")
		q.Add("busy") // pending requeue
		d1, d2 := goDrain(q), goDrain(q)
		synctest.Wait()
		blocked(t, "drain 1", d1)
		blocked(t, "drain 2", d2)
		q.ShutDown()
		for _, d := range []<-chan error{d1, d2} {
			if err := <-d; !errors.Is(err, queue.ErrDrainStopped) {
				t.Fatalf("drain = %v, want ErrDrainStopped", err)
			}
		}
		if n := q.Len(); n != 0 {
			t.Fatalf("Len = %d after ShutDown, want 0", n)
		}
		wantGet(t, <-goGet(q), "", queue.ErrShutDown)
		q.Done("busy")
		if k, ok := q.TryGet(); ok {
			t.Fatalf("TryGet = %q after ShutDown, want nothing", k)
		}
		if err := q.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// ShutDown during a drain also ends a Get blocked for a pending requeue.
func TestShutDownEndsDrainWithBlockedGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("a")
		mustTake(t, q, "a")
		q.Add("a")
		drained := goDrain(q)
		g := goGet(q)
		synctest.Wait()
		blocked(t, "Get", g)
		q.ShutDown()
		wantGet(t, <-g, "", queue.ErrShutDown)
		if err := <-drained; !errors.Is(err, queue.ErrDrainStopped) {
			t.Fatalf("drain = %v, want ErrDrainStopped", err)
		}
		q.Done("a")
		if n := q.Len(); n != 0 {
			t.Fatalf("Len = %d: Done requeued a key after ShutDown", n)
		}
	})
}

// After ShutDown, ShutDownWithDrain hands nothing out and waits for the keys
// being processed; another ShutDown ends that wait too; a drain that found
// everything done returns nil even if ShutDown follows.
func TestDrainAfterShutDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("a")
		q.Add("b")
		mustTake(t, q, "a")
		q.ShutDown()
		d := goDrain(q)
		synctest.Wait()
		blocked(t, "drain", d)
		if k, ok := q.TryGet(); ok {
			t.Fatalf("TryGet = %q during a drain after ShutDown", k)
		}
		q.ShutDown()
		if err := <-d; !errors.Is(err, queue.ErrDrainStopped) {
			t.Fatalf("drain = %v, want ErrDrainStopped", err)
		}
		d = goDrain(q)
		synctest.Wait()
		blocked(t, "drain", d)
		q.Done("a")
		if err := <-d; err != nil {
			t.Fatalf("drain = %v", err)
		}
		q.ShutDown()
		if err := q.ShutDownWithDrain(context.Background()); err != nil {
			t.Fatalf("drain of a drained queue = %v", err)
		}
	})
}

// A drain whose ctx ends returns ctx.Err() and goes on: Get still hands out
// the ready keys and a later drain returns nil.
func TestDrainContextDoneDrainGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(queue.Options[string]{})
		q.Add("a")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := q.ShutDownWithDrain(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("drain = %v, want context.Canceled", err)
		}
		wantGet(t, <-goGet(q), "a", nil)
		d := goDrain(q)
		synctest.Wait()
		blocked(t, "drain", d)
		q.Done("a")
		if err := <-d; err != nil {
			t.Fatalf("drain = %v", err)
		}
	})
}
