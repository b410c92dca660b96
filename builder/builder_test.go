package builder_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor bounds every wait on a condition. The machine is shared and
// slow; a condition that holds is seen long before this.
const waitFor = 60 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

type request = controller.Request

// newManager returns a manager with the control plane's Config, serving
// nothing, logging nowhere unless o says otherwise.
func newManager(t *testing.T, o manager.Options) *manager.Manager {
	t.Helper()
	if o.Config == nil {
		o.Config = env.Config()
	}
	if o.Addr == "" {
		o.Addr = "-"
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	o.KeepKlog = true
	if o.SyncTimeout == 0 {
		o.SyncTimeout = waitFor
	}
	mgr, err := manager.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// startManager runs mgr until the test ends, then stops it and checks that
// it stopped cleanly.
func startManager(t *testing.T, mgr *manager.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func createConfigMaps(t *testing.T, cs kubernetes.Interface, ns string, n int, labels map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i), Labels: labels}}
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, waitFor, what, func() (bool, error) { return cond(), nil })
}

// recorder counts reconciles per key: started when Reconcile is entered,
// finished when it returns.
type recorder struct {
	mu       sync.Mutex
	started  map[request]int
	finished map[request]int
}

func newRecorder() *recorder {
	return &recorder{started: map[request]int{}, finished: map[request]int{}}
}

// reconciler wraps fn (nil: succeed) with the counting.
func (r *recorder) reconciler(fn func(ctx context.Context, req request, n int) (controller.Result, error)) controller.Reconciler[request] {
	return controller.ReconcileFunc[request](func(ctx context.Context, req request) (controller.Result, error) {
		r.mu.Lock()
		r.started[req]++
		n := r.started[req]
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.finished[req]++
			r.mu.Unlock()
		}()
		if fn == nil {
			return controller.Result{}, nil
		}
		return fn(ctx, req, n)
	})
}

func (r *recorder) count(k request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[k]
}

func (r *recorder) done(k request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished[k]
}

// keys returns every key reconciled so far.
func (r *recorder) keys() map[request]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[request]int, len(r.started))
	for k, v := range r.started {
		out[k] = v
	}
	return out
}

func (r *recorder) waitDone(t *testing.T, k request, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d finished reconciles of %v (have %d)", n, k, r.done(k)), func() bool { return r.done(k) >= n })
}

// single is a fixed pool of one worker: the queue hands keys out in the
// order they were added, so a key added before a barrier key is reconciled
// before it. Tests use that to check that something did not happen.
func single(name string) builder.Option {
	return builder.WithOptions(controller.Options[request]{Name: name, MinWorkers: 1, MaxWorkers: 1})
}

// configMapsIn limits the manager's ConfigMap informer to namespace ns.
func configMapsIn(ns string) builder.Option {
	return builder.Scope[*corev1.ConfigMap](cache.Scope{Namespace: ns})
}

func raise(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// TestAdaptiveWorkersGrowUnderABacklogOfSlowReconciles: 60 keys are
// waiting and each reconcile reads its object from the API server and then
// blocks, as a reconcile waiting on a slow external API does. The pool,
// starting at one worker, must grow until its maximum of 8 workers is
// reconciling at once, and neither the pool nor the number of concurrent
// reconciles may ever exceed that maximum while the backlog drains. (How
// much faster that is belongs in bench/, not here.)
func TestAdaptiveWorkersGrowUnderABacklogOfSlowReconciles(t *testing.T) {
	const n, maxWorkers = 60, 8
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	createConfigMaps(t, cs, ns, n, nil)
	mgr := newManager(t, manager.Options{})
	gate := make(chan struct{})
	var inflight, peakInflight, peakSize, done atomic.Int64
	var c *controller.Controller[request]
	c, err := builder.Build(mgr, controller.ReconcileFunc[request](func(ctx context.Context, req request) (controller.Result, error) {
		raise(&peakInflight, inflight.Add(1))
		defer inflight.Add(-1)
		size, _ := c.Workers()
		raise(&peakSize, int64(size))
		if _, err := cs.CoreV1().ConfigMaps(req.Namespace).Get(ctx, req.Name, metav1.GetOptions{}); err != nil {
			return controller.Result{}, err
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return controller.Result{}, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond) // the slow call itself, once the gate is open
		done.Add(1)
		return controller.Result{}, nil
	}),
		builder.WithOptions(controller.Options[request]{Name: "io", MinWorkers: 1, MaxWorkers: maxWorkers, SizingInterval: 100 * time.Millisecond}),
		configMapsIn(ns),
		builder.For[*corev1.ConfigMap](),
	)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // runs before the manager stops, so a failed test does not wait for blocked reconciles

	waitUntil(t, fmt.Sprintf("%d reconciles at once (one worker at start)", maxWorkers), func() bool { return inflight.Load() >= maxWorkers })
	open()
	waitUntil(t, fmt.Sprintf("all %d keys reconciled", n), func() bool { return done.Load() >= n })
	size, _ := c.Workers()
	t.Logf("peak pool size %d, peak concurrent reconciles %d, size after the backlog %d", peakSize.Load(), peakInflight.Load(), size)
	if p := peakSize.Load(); p < 2 || p > maxWorkers {
		t.Errorf("peak pool size %d, want within [2, %d]", p, maxWorkers)
	}
	if p := peakInflight.Load(); p != maxWorkers {
		t.Errorf("peak concurrent reconciles %d, want exactly the maximum %d", p, maxWorkers)
	}
	if size > maxWorkers {
		t.Errorf("pool size %d after the backlog, above the maximum %d", size, maxWorkers)
	}
}

// TestWatchesAndPredicates: For with LabelsChanged filters data-only
// updates of the primary object, while Watches maps every change (old and
// new object) to the keys it returns.
func TestWatchesAndPredicates(t *testing.T) {
	ctx := context.Background()
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	rec := newRecorder()
	parent := func(name string) request { return request{Namespace: "parent", Name: name} }
	_, err := builder.Build(mgr, rec.reconciler(nil),
		single("w"),
		configMapsIn(ns),
		builder.For[*corev1.ConfigMap](builder.LabelsChanged[*corev1.ConfigMap]()),
		builder.Watches(func(cm *corev1.ConfigMap) []request {
			if p := cm.Labels["parent"]; p != "" {
				return []request{parent(p)}
			}
			return nil
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	primary := request{Namespace: ns, Name: "c"}
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"parent": "p1"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, primary, 1)
	rec.waitDone(t, parent("p1"), 1)

	// A data-only update fails LabelsChanged for the primary key, but
	// Watches still maps it. The barrier ConfigMap is created afterwards:
	// its create passes the For trigger's handler after the update did, so
	// had the update enqueued the primary key, the single worker would have
	// reconciled it before the barrier.
	cm.Data = map[string]string{"x": "1"}
	if cm, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "barrier"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, request{Namespace: ns, Name: "barrier"}, 1)
	rec.waitDone(t, parent("p1"), 2)
	if got := rec.count(primary); got != 1 {
		t.Fatalf("primary key reconciled %d times after a data-only update, want 1 (LabelsChanged must filter it)", got)
	}

	// Labels change: the primary key passes, and the mapping enqueues both
	// the old and the new parent.
	cm.Labels = map[string]string{"parent": "p2"}
	if _, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, primary, 2)
	rec.waitDone(t, parent("p2"), 1)
	rec.waitDone(t, parent("p1"), 3)
}

// counting runs a controller For the namespace's ConfigMaps with rec.
func counting(t *testing.T, ns string, o controller.Options[request], fn func(ctx context.Context, req request, n int) (controller.Result, error)) (*recorder, *controller.Controller[request]) {
	t.Helper()
	rec := newRecorder()
	mgr := newManager(t, manager.Options{})
	c, err := builder.Build(mgr, rec.reconciler(fn), builder.WithOptions(o), configMapsIn(ns), builder.For[*corev1.ConfigMap]())
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	return rec, c
}

// TestRequeueAfterIsRateLimitedOnTheControlPlane: a reconcile that always
// asks for RequeueAfter(1ms) is held to the controller's requeue rate
// (10/s, burst 1), whatever the delay it asks for.
func TestRequeueAfterIsRateLimitedOnTheControlPlane(t *testing.T) {
	const want = 12
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	var mu sync.Mutex
	var starts []time.Time
	counting(t, ns, controller.Options[request]{Name: "hot", RequeueQPS: 10, RequeueBurst: 1}, func(ctx context.Context, req request, n int) (controller.Result, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return controller.Result{RequeueAfter: time.Millisecond}, nil
	})
	createConfigMaps(t, cs, ns, 1, nil)
	waitUntil(t, fmt.Sprintf("%d reconciles of a key that always requeues", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(starts) >= want
	})
	mu.Lock()
	elapsed := starts[want-1].Sub(starts[0])
	mu.Unlock()
	// Reconcile 1 comes from the create event; requeue 1 takes the burst
	// token; requeues 2..want-1 each wait 100 ms for a token of their own.
	// That is a lower bound: a slow machine only makes it longer.
	if floor := time.Duration(want-2) * 100 * time.Millisecond; elapsed < floor*9/10 {
		t.Fatalf("%d reconciles with RequeueAfter(1ms) took %v; a 10/s requeue limit with burst 1 needs at least %v", want, elapsed, floor)
	}
}

// TestTerminalErrorIsNotRetriedButNewEventsReconcile: a terminal error
// schedules no retry (no backoff, no requeue), yet a later change of the
// object is new information and is reconciled.
func TestTerminalErrorIsNotRetriedButNewEventsReconcile(t *testing.T) {
	ctx := context.Background()
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	bad := request{Namespace: ns, Name: "cm-000"}
	rec, c := counting(t, ns, controller.Options[request]{Name: "terminal"}, func(ctx context.Context, req request, n int) (controller.Result, error) {
		if req == bad {
			return controller.Result{}, controller.Terminal(fmt.Errorf("invalid %s", req))
		}
		return controller.Result{}, nil
	})
	createConfigMaps(t, cs, ns, 1, nil)
	waitUntil(t, "the terminal error to be handled", func() bool { return c.Stats().Terminal >= 1 })
	// A transient error would have left a failure on the rate limiter (the
	// backoff of the retry) and a requeue would have been counted.
	if s := c.Stats(); s.Reconciles != 1 || s.Terminal != 1 || s.Requeues != 0 {
		t.Fatalf("stats after one terminal error: %+v, want 1 reconcile, 1 terminal, 0 requeues", s)
	}
	if r := c.Queue().Retries(bad); r != 0 {
		t.Fatalf("terminal key has %d retries scheduled, want 0", r)
	}
	if n := rec.count(bad); n != 1 {
		t.Fatalf("terminal key reconciled %d times without a new event, want 1", n)
	}
	// A new event for the object is new information: it is reconciled.
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "cm-000", "application/merge-patch+json", []byte(`{"data":{"fixed":"yes"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, bad, 2)
	waitUntil(t, "the second terminal error to be counted", func() bool { return c.Stats().Terminal >= 2 })
	if r := c.Queue().Retries(bad); r != 0 {
		t.Fatalf("terminal key has %d retries scheduled after the second error, want 0", r)
	}
}
