package controller_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/queue/clocktest"
)

// gateFunc is a Gate made of a function.
type gateFunc[K comparable] func(ctx context.Context, key K) (context.Context, func(), bool)

func (f gateFunc[K]) Admit(ctx context.Context, key K) (context.Context, func(), bool) {
	return f(ctx, key)
}

// A key the gate refuses is not reconciled, its failure count is reset
// (Forget) and it is not retried: the refusing replica's owner has it.
func TestGateRefusedKeyIsDroppedAndForgotten(t *testing.T) {
	clock := clocktest.NewFake(time.Unix(1000, 0))
	var admits, refuse atomic.Int64 // refuse: admit calls from which "a" is refused
	refuse.Store(2)
	var reconciles sync.Map // key → *atomic.Int64
	count := func(k string) *atomic.Int64 {
		v, _ := reconciles.LoadOrStore(k, new(atomic.Int64))
		return v.(*atomic.Int64)
	}
	gate := gateFunc[string](func(ctx context.Context, k string) (context.Context, func(), bool) {
		if k != "a" {
			return ctx, func() {}, true
		}
		if admits.Add(1) >= refuse.Load() {
			return nil, nil, false
		}
		return ctx, func() {}, true
	})
	c := newController(t, controller.Options[string]{MinWorkers: 1, MaxWorkers: 1, Clock: clock, Gate: gate},
		func(ctx context.Context, k string) (controller.Result, error) {
			count(k).Add(1)
			if k == "a" {
				return controller.Result{}, errors.New("fails")
			}
			return controller.Result{}, nil
		})
	start(t, c)
	c.Queue().Add("a")
	waitFor(t, "a failed once and waits for its backoff", 10*time.Second, func() bool { return c.Queue().Retries("a") == 1 })
	clock.Advance(time.Minute) // the retry is due: admitted again? no, refused
	waitFor(t, "a refused and forgotten", 10*time.Second, func() bool { return admits.Load() == 2 && c.Queue().Retries("a") == 0 })
	// Nothing brings a back: past any backoff, a probe key behind it in the
	// one worker's FIFO is reconciled and a was not admitted again.
	clock.Advance(time.Hour)
	c.Queue().Add("probe")
	waitFor(t, "probe reconciled", 10*time.Second, func() bool { return count("probe").Load() == 1 })
	if n, r := admits.Load(), count("a").Load(); n != 2 || r != 1 {
		t.Fatalf("a: %d admits, %d reconciles; want 2 and 1 (refused once, then dropped)", n, r)
	}
	if dl := c.Queue().DeadLetters(); len(dl) != 0 {
		t.Fatalf("refused key became a dead letter: %v", dl)
	}
}

// An admitted key is reconciled with the gate's context, and its release
// runs once, after the result is applied to the queue (the failure is
// counted) and before Done (the key is still being processed: Restore
// refuses it).
func TestGateReleaseRunsAfterResultBeforeDone(t *testing.T) {
	type ctxKey struct{}
	type atRelease struct {
		retries  int
		restored bool
	}
	var q *queue.Queue[string]
	releases := make(chan atRelease, 4)
	gate := gateFunc[string](func(ctx context.Context, k string) (context.Context, func(), bool) {
		return context.WithValue(ctx, ctxKey{}, "gate"), func() {
			releases <- atRelease{retries: q.Retries(k), restored: q.Restore(queue.DeadLetter[string]{Key: k})}
		}, true
	})
	var fromGate atomic.Bool
	var calls atomic.Int64
	c := newController(t, controller.Options[string]{MinWorkers: 1, MaxWorkers: 1, Gate: gate},
		func(ctx context.Context, k string) (controller.Result, error) {
			if calls.Add(1) > 1 {
				return controller.Result{}, nil // the retry succeeds: no more releases
			}
			fromGate.Store(ctx.Value(ctxKey{}) == "gate")
			return controller.Result{}, errors.New("fails once")
		})
	q = c.Queue()
	start(t, c)
	q.Add("a")
	var got atRelease
	select {
	case got = <-releases:
	case <-time.After(10 * time.Second):
		t.Fatal("release not called within 10s")
	}
	if !fromGate.Load() {
		t.Error("Reconcile did not get the gate's context")
	}
	if got.retries != 1 {
		t.Errorf("at release the key had %d failures, want 1 (the result applied first)", got.retries)
	}
	if got.restored {
		t.Error("at release the key was no longer being processed (Restore took it): release ran after Done")
	}
}
