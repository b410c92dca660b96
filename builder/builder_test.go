package builder_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

var configmaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func cmInformer(t *testing.T, f *cache.Factory, ns string) *cache.Informer[*corev1.ConfigMap] {
	t.Helper()
	src, err := cache.TypedSource[*corev1.ConfigMap](env.Config(), configmaps, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	return cache.InformerFor(f, src, cache.Options[*corev1.ConfigMap]{Name: "configmaps", Logger: quiet})
}

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

func newManager(t *testing.T) *manager.Manager {
	mgr, err := manager.New(manager.Options{Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
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

// TestAdaptiveWorkersOnIOBoundReconciles: each reconcile reads the object
// from the API server and then waits 50 ms, as a reconcile that calls a slow
// external API would. The adaptive pool must beat one worker clearly and
// never exceed its maximum.
func TestAdaptiveWorkersOnIOBoundReconciles(t *testing.T) {
	const n, maxWorkers = 60, 8
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	measure := func(minW, maxW int) (time.Duration, int) {
		ns := testenv.Namespace(t, env.Config())
		createConfigMaps(t, cs, ns, n, nil)
		mgr := newManager(t)
		var done atomic.Int64
		var peak atomic.Int64
		var first atomic.Int64
		var c *controller.Controller[string]
		c, err = builder.Build(mgr, controller.ReconcileFunc[string](func(ctx context.Context, key string) (controller.Result, error) {
			first.CompareAndSwap(0, time.Now().UnixNano())
			if size, _ := c.Workers(); int64(size) > peak.Load() {
				peak.Store(int64(size))
			}
			nsName := strings.SplitN(key, "/", 2)
			if _, err := cs.CoreV1().ConfigMaps(nsName[0]).Get(ctx, nsName[1], metav1.GetOptions{}); err != nil {
				return controller.Result{}, err
			}
			time.Sleep(50 * time.Millisecond)
			done.Add(1)
			return controller.Result{}, nil
		}), controller.Options[string]{Name: "io", MinWorkers: minW, MaxWorkers: maxW, SizingInterval: 100 * time.Millisecond, Logger: quiet},
			builder.For(cmInformer(t, cache.NewFactory(), ns)))
		if err != nil {
			t.Fatal(err)
		}
		startManager(t, mgr)
		deadline := time.Now().Add(60 * time.Second)
		for done.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d reconciled", done.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(time.Unix(0, first.Load())), int(peak.Load())
	}
	single, _ := measure(1, 1)
	adaptive, peak := measure(1, maxWorkers)
	t.Logf("%d reconciles of 50 ms: one worker %v, adaptive (max %d) %v, peak %d workers", n, single, maxWorkers, adaptive, peak)
	if peak > maxWorkers || peak < 2 {
		t.Fatalf("peak pool size %d, want within [2, %d]", peak, maxWorkers)
	}
	if adaptive > single/2 {
		t.Fatalf("adaptive %v vs one worker %v: want at least 2x faster", adaptive, single)
	}
}

func TestWatchesAndPredicates(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t)
	f := cache.NewFactory()
	cms := cmInformer(t, f, ns)
	var mu sync.Mutex
	seen := map[string]int{}
	watches, err := builder.Watches(cms, func(cm *corev1.ConfigMap) []string {
		if p := cm.Labels["parent"]; p != "" {
			return []string{"parent/" + p}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = builder.Build(mgr, controller.ReconcileFunc[string](func(ctx context.Context, key string) (controller.Result, error) {
		mu.Lock()
		seen[key]++
		mu.Unlock()
		return controller.Result{}, nil
	}), controller.Options[string]{Name: "w", Logger: quiet},
		builder.For(cms, builder.LabelsChanged[*corev1.ConfigMap]()),
		watches)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return seen[k] }
	waitCount := func(k string, want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for count(k) < want {
			if time.Now().After(deadline) {
				t.Fatalf("key %s reconciled %d times, want %d", k, count(k), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"parent": "p1"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitCount(ns+"/c", 1)
	waitCount("parent/p1", 1)

	// A data-only change fails LabelsChanged for the primary key, but
	// Watches still maps it.
	cm.Data = map[string]string{"x": "1"}
	if cm, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCount("parent/p1", 2)
	// Labels change: the primary key passes, and the mapping enqueues both
	// the old and the new parent.
	cm.Labels = map[string]string{"parent": "p2"}
	if _, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCount(ns+"/c", 2)
	waitCount("parent/p2", 1)
	waitCount("parent/p1", 3)
	if got := count(ns + "/c"); got != 2 {
		t.Fatalf("primary key reconciled %d times, want 2 (the data-only update must be filtered)", got)
	}
}

func TestBuildNeedsExactlyOneFor(t *testing.T) {
	f := cache.NewFactory()
	cms := cmInformer(t, f, "default")
	r := controller.ReconcileFunc[string](func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil })
	if _, err := builder.Build(nil, r, controller.Options[string]{Name: "x"}); err == nil || !strings.Contains(err.Error(), "exactly one For") {
		t.Fatalf("no For: err = %v", err)
	}
	if _, err := builder.Build(nil, r, controller.Options[string]{Name: "x"}, builder.For(cms), builder.For(cms)); err == nil {
		t.Fatal("two For triggers accepted")
	}
	if _, err := builder.Watches[*corev1.ConfigMap](cms, nil); err == nil {
		t.Fatal("Watches with a nil func accepted")
	}
}

// counting runs a controller For the namespace's ConfigMaps with rec and
// returns a per-key reconcile counter.
func counting(t *testing.T, ns string, o controller.Options[string], rec func(key string, n int64) (controller.Result, error)) func(string) int64 {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int64{}
	mgr := newManager(t)
	o.Logger = quiet
	_, err := builder.Build(mgr, controller.ReconcileFunc[string](func(ctx context.Context, key string) (controller.Result, error) {
		mu.Lock()
		counts[key]++
		n := counts[key]
		mu.Unlock()
		return rec(key, n)
	}), o, builder.For(cmInformer(t, mgr.Factory(), ns)))
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	return func(k string) int64 { mu.Lock(); defer mu.Unlock(); return counts[k] }
}

func TestRequeueAfterIsRateLimitedOnTheControlPlane(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, env.Config())
	var first atomic.Int64
	count := counting(t, ns, controller.Options[string]{Name: "hot", RequeueQPS: 10, RequeueBurst: 1}, func(key string, n int64) (controller.Result, error) {
		first.CompareAndSwap(0, time.Now().UnixNano())
		return controller.Result{RequeueAfter: time.Millisecond}, nil
	})
	createConfigMaps(t, cs, ns, 1, nil)
	key := ns + "/cm-000"
	waitUntil(t, "the first requeue", func() bool { return count(key) >= 2 })
	time.Sleep(time.Second)
	n := count(key)
	elapsed := time.Since(time.Unix(0, first.Load()))
	// A 10/s bucket with burst 1 allows at most 1 + 10·elapsed requeues.
	if limit := 2 + int64(10*elapsed.Seconds()); n > limit {
		t.Fatalf("%d reconciles in %v with RequeueAfter(1ms) and a 10/s requeue limit, want <= %d", n, elapsed, limit)
	}
	if n < 5 {
		t.Fatalf("only %d reconciles in %v: RequeueAfter did not requeue", n, elapsed)
	}
}

func TestTerminalErrorIsNotRetriedButNewEventsReconcile(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, env.Config())
	count := counting(t, ns, controller.Options[string]{Name: "terminal"}, func(key string, n int64) (controller.Result, error) {
		if strings.HasSuffix(key, "/cm-000") {
			return controller.Result{}, controller.Terminal(fmt.Errorf("invalid %s", key))
		}
		return controller.Result{}, nil
	})
	createConfigMaps(t, cs, ns, 1, nil)
	bad := ns + "/cm-000"
	waitUntil(t, "the first reconcile", func() bool { return count(bad) >= 1 })
	// A transient error would have been retried after 5, 10, 20, ... ms.
	time.Sleep(300 * time.Millisecond)
	if n := count(bad); n != 1 {
		t.Fatalf("terminal key reconciled %d times without a new event, want 1", n)
	}
	// A new event for the object is new information: it is reconciled.
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "cm-000", "application/merge-patch+json", []byte(`{"data":{"fixed":"yes"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the update of a terminally failed object to be reconciled", func() bool { return count(bad) >= 2 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
