package controller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/testenv"
)

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, func() (bool, error) { return cond(), nil })
}

// start runs c until the test ends and fails the test if Run errs.
func start[K comparable](t *testing.T, c *controller.Controller[K]) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

func newController[K comparable](t *testing.T, o controller.Options[K], f controller.ReconcileFunc[K]) *controller.Controller[K] {
	t.Helper()
	if o.Name == "" {
		o.Name = "test"
	}
	c, err := controller.New[K](f, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSuccessReconcilesOnceAndForgets(t *testing.T) {
	var calls atomic.Int64
	c := newController(t, controller.Options[string]{}, func(ctx context.Context, k string) (controller.Result, error) {
		calls.Add(1)
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("a")
	waitFor(t, "one reconcile", 5*time.Second, func() bool { return calls.Load() == 1 })
	// A later key proves the queue moved on; "a" was not requeued meanwhile.
	c.Queue().AddAfter("sentinel", 30*time.Millisecond)
	waitFor(t, "sentinel", 5*time.Second, func() bool { return calls.Load() == 2 })
	if s := c.Stats(); s.Reconciles != 2 || s.Errors != 0 || s.Requeues != 0 {
		t.Fatalf("stats %+v, want 2 reconciles, no errors, no requeues", s)
	}
}

func TestTransientErrorsRetryThenDeadLetterThenReplay(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	var calls atomic.Int64
	boom := errors.New("boom")
	c := newController(t, controller.Options[string]{MaxFailures: 3}, func(ctx context.Context, k string) (controller.Result, error) {
		calls.Add(1)
		if fail.Load() {
			return controller.Result{}, boom
		}
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("k")
	waitFor(t, "dead letter", 5*time.Second, func() bool { return len(c.Queue().DeadLetters()) == 1 })
	dl := c.Queue().DeadLetters()[0]
	if dl.Key != "k" || dl.Attempts != 3 || !errors.Is(dl.LastError, boom) {
		t.Fatalf("dead letter %+v, want key k, 3 attempts, last error boom", dl)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("%d reconciles before dead-lettering, want 3", got)
	}
	fail.Store(false)
	if !c.Queue().Replay("k") {
		t.Fatal("Replay(k) = false")
	}
	waitFor(t, "successful replay", 5*time.Second, func() bool { return calls.Load() == 4 })
	waitFor(t, "dead letters cleared", 5*time.Second, func() bool { return len(c.Queue().DeadLetters()) == 0 })
}

func TestTerminalErrorIsNotRetried(t *testing.T) {
	var calls sync.Map
	c := newController(t, controller.Options[string]{}, func(ctx context.Context, k string) (controller.Result, error) {
		n, _ := calls.LoadOrStore(k, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if k == "bad" {
			return controller.Result{}, controller.Terminal(errors.New("spec is invalid"))
		}
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("bad")
	// A transient error would retry after 5 ms; the sentinel runs 100 ms later.
	c.Queue().AddAfter("sentinel", 100*time.Millisecond)
	waitFor(t, "sentinel", 5*time.Second, func() bool { _, ok := calls.Load("sentinel"); return ok })
	n, _ := calls.Load("bad")
	if got := n.(*atomic.Int64).Load(); got != 1 {
		t.Fatalf("terminal key reconciled %d times, want 1", got)
	}
	if s := c.Stats(); s.Terminal != 1 {
		t.Fatalf("stats %+v, want 1 terminal error", s)
	}
	if c.Queue().Retries("bad") != 0 {
		t.Fatalf("terminal key has %d retries recorded, want 0 (forgotten)", c.Queue().Retries("bad"))
	}
}

func TestRetryAfterWaitsWithoutGrowingBackoff(t *testing.T) {
	var times []time.Time
	var mu sync.Mutex
	c := newController(t, controller.Options[string]{}, func(ctx context.Context, k string) (controller.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) < 3 {
			return controller.Result{}, controller.RetryAfter(errors.New("429"), 80*time.Millisecond)
		}
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("k")
	waitFor(t, "three reconciles", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(times) == 3 })
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < 3; i++ {
		if gap := times[i].Sub(times[i-1]); gap < 80*time.Millisecond {
			t.Fatalf("retry %d came after %v, want >= 80ms", i, gap)
		}
	}
	if r := c.Queue().Retries("k"); r != 0 {
		t.Fatalf("retries = %d, want 0: retry-after is not a failure", r)
	}
}

func TestRequeueAfterIsRateLimited(t *testing.T) {
	var calls atomic.Int64
	c := newController(t, controller.Options[string]{RequeueQPS: 20, RequeueBurst: 1}, func(ctx context.Context, k string) (controller.Result, error) {
		calls.Add(1)
		return controller.Result{RequeueAfter: time.Millisecond}, nil
	})
	start(t, c)
	begin := time.Now()
	c.Queue().Add("hot")
	waitFor(t, "11 reconciles", 10*time.Second, func() bool { return calls.Load() >= 11 })
	// 10 requeues through a 20/s bucket with burst 1 need at least 9 × 50 ms.
	if el := time.Since(begin); el < 450*time.Millisecond {
		t.Fatalf("11 reconciles in %v: RequeueAfter(1ms) bypassed the 20/s requeue limit", el)
	}
}

func TestPanicIsRecoveredCountedAndRetried(t *testing.T) {
	var calls atomic.Int64
	c := newController(t, controller.Options[string]{}, func(ctx context.Context, k string) (controller.Result, error) {
		if calls.Add(1) == 1 {
			panic("nil map somewhere")
		}
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("k")
	waitFor(t, "retry after panic", 5*time.Second, func() bool { return calls.Load() == 2 })
	if s := c.Stats(); s.Panics != 1 || s.Errors != 1 {
		t.Fatalf("stats %+v, want 1 panic counted as 1 error", s)
	}
}

func TestReconcileTimeout(t *testing.T) {
	var sawDeadline atomic.Bool
	var calls atomic.Int64
	c := newController(t, controller.Options[string]{ReconcileTimeout: 20 * time.Millisecond}, func(ctx context.Context, k string) (controller.Result, error) {
		if calls.Add(1) > 1 {
			return controller.Result{}, nil
		}
		<-ctx.Done()
		sawDeadline.Store(errors.Is(ctx.Err(), context.DeadlineExceeded))
		return controller.Result{}, ctx.Err()
	})
	start(t, c)
	c.Queue().Add("slow")
	waitFor(t, "retry after timeout", 5*time.Second, func() bool { return calls.Load() == 2 })
	if !sawDeadline.Load() {
		t.Fatal("reconcile context did not hit its deadline")
	}
}

func TestNeverTheSameKeyTwiceAtOnce(t *testing.T) {
	var inflight sync.Map
	var violations, calls atomic.Int64
	c := newController(t, controller.Options[string]{MinWorkers: 8, MaxWorkers: 8}, func(ctx context.Context, k string) (controller.Result, error) {
		if _, busy := inflight.LoadOrStore(k, true); busy {
			violations.Add(1)
		}
		time.Sleep(100 * time.Microsecond)
		inflight.Delete(k)
		calls.Add(1)
		return controller.Result{}, nil
	})
	start(t, c)
	for i := range 5000 {
		c.Queue().Add(fmt.Sprintf("k%d", i%7))
	}
	c.Queue().AddAfter("last", 50*time.Millisecond)
	waitFor(t, "queue drained", 10*time.Second, func() bool {
		size, active := c.Workers()
		return c.Queue().Len() == 0 && active == 0 && size == 8 && calls.Load() > 7
	})
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d times a key was reconciled by two workers at once", v)
	}
}

// TestAdaptivePoolGrowsUnderABacklog: with a backlog of reconciles that
// block (as slow API calls do), the pool grows from one worker to its
// maximum and never beyond. Behaviour only: how much faster that is
// belongs in bench/.
func TestAdaptivePoolGrowsUnderABacklog(t *testing.T) {
	const keys, maxWorkers = 60, 8
	gate := make(chan struct{})
	var active, peak, done atomic.Int64
	var c *controller.Controller[int]
	c = newController(t, controller.Options[int]{MinWorkers: 1, MaxWorkers: maxWorkers, SizingInterval: 20 * time.Millisecond},
		func(ctx context.Context, k int) (controller.Result, error) {
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-gate:
			case <-ctx.Done():
			}
			active.Add(-1)
			done.Add(1)
			return controller.Result{}, nil
		})
	stop := start(t, c)
	for k := range keys {
		c.Queue().Add(k)
	}
	waitFor(t, "the pool to reach its maximum with every worker busy", 30*time.Second, func() bool { return active.Load() == maxWorkers })
	close(gate)
	waitFor(t, "all keys", 30*time.Second, func() bool { return done.Load() == keys })
	if size, _ := c.Workers(); size > maxWorkers {
		t.Fatalf("pool size %d > max %d", size, maxWorkers)
	}
	if p := peak.Load(); p != maxWorkers {
		t.Fatalf("peak concurrency %d, want exactly the maximum %d", p, maxWorkers)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDrainsInFlightAndStartsNothingNew(t *testing.T) {
	release := make(chan struct{})
	var started, finished atomic.Int64
	c := newController(t, controller.Options[int]{MinWorkers: 2, MaxWorkers: 2}, func(ctx context.Context, k int) (controller.Result, error) {
		started.Add(1)
		<-release
		finished.Add(1)
		return controller.Result{}, nil
	})
	stop := start(t, c)
	for k := range 10 {
		c.Queue().Add(k)
	}
	waitFor(t, "two in flight", 5*time.Second, func() bool { return started.Load() == 2 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Give Run's shutdown a moment in which it must not return.
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while reconciles were in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s, f := started.Load(), finished.Load(); s != 2 || f != 2 {
		t.Fatalf("started %d finished %d, want 2 and 2: no new reconcile may start during shutdown", s, f)
	}
}

func TestShutdownTimeoutCancelsStragglers(t *testing.T) {
	c := newController(t, controller.Options[int]{ShutdownTimeout: 50 * time.Millisecond}, func(ctx context.Context, k int) (controller.Result, error) {
		<-ctx.Done()
		return controller.Result{}, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	c.Queue().Add(1)
	waitFor(t, "in flight", 5*time.Second, func() bool { _, a := c.Workers(); return a == 1 })
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("Run = %v, want an error saying reconciles were cancelled", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, controller.ErrAlreadyStarted) {
		t.Fatalf("second Run = %v, want ErrAlreadyStarted", err)
	}
}

func TestSetWorkerBoundsResizesAtRuntime(t *testing.T) {
	c := newController(t, controller.Options[int]{MinWorkers: 2, MaxWorkers: 2}, func(ctx context.Context, k int) (controller.Result, error) {
		return controller.Result{}, nil
	})
	start(t, c)
	waitFor(t, "2 workers", 5*time.Second, func() bool { s, _ := c.Workers(); return s == 2 })
	if err := c.SetWorkerBounds(5, 10); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 workers", 5*time.Second, func() bool { s, _ := c.Workers(); return s == 5 })
	if err := c.SetWorkerBounds(1, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 workers", 5*time.Second, func() bool { s, _ := c.Workers(); return s == 3 })
	if err := c.SetWorkerBounds(4, 2); err == nil {
		t.Fatal("SetWorkerBounds(4, 2) accepted")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	ok := controller.ReconcileFunc[string](func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil })
	cases := []struct {
		name string
		r    controller.Reconciler[string]
		o    controller.Options[string]
		want string
	}{
		{"nil reconciler", nil, controller.Options[string]{Name: "x"}, "nil Reconciler"},
		{"no name", ok, controller.Options[string]{}, "Name is required"},
		{"min above max", ok, controller.Options[string]{Name: "x", MinWorkers: 5, MaxWorkers: 2}, "MinWorkers 5 > MaxWorkers 2"},
		{"negative workers", ok, controller.Options[string]{Name: "x", MaxWorkers: -1}, "negative worker bounds"},
		{"negative timeout", ok, controller.Options[string]{Name: "x", ReconcileTimeout: -time.Second}, "negative"},
	}
	for _, tc := range cases {
		if _, err := controller.New(tc.r, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}
