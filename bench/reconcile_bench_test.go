package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// equalWorkers is controller-runtime's MaxConcurrentReconciles in the
// equal-settings variant: Skiff's default MaxWorkers, the most workers its
// adaptive pool may use (its peak is reported as peak-workers). The
// skiff/workers=32 variant pins Skiff's pool to the same size.
const equalWorkers = 32

// loadInFlight is how many creates the load generator keeps in flight.
const loadInFlight = 32

// fooOperator is a running contender.
type fooOperator interface {
	Reconciles() int64
	PeakWorkers() int // 0 if the contender has no adaptive pool
	Stop() error
}

// fooCreateHook is implemented by contenders that act on the load generator's
// create responses instead of watching (the raw writer).
type fooCreateHook interface {
	Created(foo *unstructured.Unstructured)
}

type convergeContender struct {
	name  string
	start func(ctx context.Context, cfg *rest.Config) (fooOperator, error)
}

var convergeContenders = []convergeContender{
	{"skiff", func(ctx context.Context, cfg *rest.Config) (fooOperator, error) {
		return startSkiffFoo(ctx, cfg, 0)
	}},
	{"skiff/workers=32", func(ctx context.Context, cfg *rest.Config) (fooOperator, error) {
		return startSkiffFoo(ctx, cfg, equalWorkers)
	}},
	{"ctrlruntime/defaults", func(ctx context.Context, cfg *rest.Config) (fooOperator, error) {
		return startCtrlRuntime(ctx, cfg, 0)
	}},
	{"ctrlruntime/equal", func(ctx context.Context, cfg *rest.Config) (fooOperator, error) {
		return startCtrlRuntime(ctx, cfg, equalWorkers)
	}},
	{"clientgo/rawwrites", startRawFooWriter},
}

// BenchmarkReconcileConverge is C1: N Foos are created (32 in flight) and
// each contender reconciles every one into a child ConfigMap and a status
// update. One op is one run from the first create until a separate observer
// has seen every Foo converged. See bench/README.md.
func BenchmarkReconcileConverge(b *testing.B) {
	n := benchSize(500, 2000)
	env := convergeEnv(b)
	for _, c := range convergeContenders {
		b.Run("impl="+c.name, func(b *testing.B) {
			var sum convergeResult
			for range b.N {
				b.StopTimer()
				r := runConverge(b, b, env, c, n)
				sum.converge += r.converge
				sum.created += r.created
				sum.calls += r.calls
				sum.startupCalls += r.startupCalls
				sum.reconciles += r.reconciles
				sum.peakWorkers = max(sum.peakWorkers, r.peakWorkers)
			}
			b.ReportMetric(sum.converge.Seconds()/float64(b.N), "converge-s")
			b.ReportMetric(sum.created.Seconds()/float64(b.N), "creates-s")
			b.ReportMetric(float64(sum.calls)/float64(b.N), "api-calls")
			b.ReportMetric(float64(sum.startupCalls)/float64(b.N), "startup-calls")
			b.ReportMetric(float64(sum.reconciles)/float64(b.N)/float64(n), "reconciles/obj")
			if sum.peakWorkers > 0 {
				b.ReportMetric(float64(sum.peakWorkers), "peak-workers")
			}
		})
	}
}

type convergeResult struct {
	converge     time.Duration
	created      time.Duration // from the first create until the last create returned
	calls        int64         // the operator's API calls from the first create until it went quiet
	startupCalls int64         // the operator's API calls until its caches synced
	reconciles   int64
	peakWorkers  int
}

// convergeTimer is the part of testing.B that runConverge uses.
type convergeTimer interface {
	StartTimer()
	StopTimer()
}

type noConvergeTimer struct{}

func (noConvergeTimer) StartTimer() {}
func (noConvergeTimer) StopTimer()  {}

// runConverge runs one contender once in a fresh namespace. The convergeTimer runs
// (and must be stopped on entry) only from the first create to convergence.
func runConverge(b testing.TB, t convergeTimer, env *testenv.Env, c convergeContender, n int) convergeResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	loadCfg := env.Config() // QPS -1: the load generator is never throttled client-side
	kube, err := kubernetes.NewForConfig(loadCfg)
	if err != nil {
		b.Fatal(err)
	}
	ns, err := testenv.CreateNamespace(ctx, kube, "c1-"+c.name)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer dcancel()
		if err := testenv.DeleteNamespaceAndWait(dctx, kube, ns); err != nil {
			b.Errorf("reset between contenders: %v", err)
		}
	}()

	// The operator's own config, counted. env.Config() is the kubeconfig's
	// admin config with QPS -1, which is also what controller-runtime's
	// ctrl.GetConfig() returns for a kubeconfig that sets no QPS.
	var counter client.RequestCounter
	op, err := c.start(ctx, counter.Install(env.Config()))
	if err != nil {
		b.Fatalf("start %s: %v", c.name, err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := op.Stop(); err != nil {
				b.Errorf("stop %s: %v", c.name, err)
			}
		}
	}
	defer stop()
	obs, err := observeFoos(ctx, env.Config(), ns, n)
	if err != nil {
		b.Fatal(err)
	}
	defer obs.stop()

	var res convergeResult
	res.startupCalls = counter.Total()
	hook, _ := op.(fooCreateHook)
	t.StartTimer()
	start := time.Now()
	if err := createFoos(ctx, loadCfg, ns, n, hook); err != nil {
		b.Fatal(err)
	}
	res.created = time.Since(start)
	timeout := time.Duration(n) * 100 * time.Millisecond
	select {
	case <-obs.done:
	case <-time.After(timeout):
		b.Fatalf("%s: %d of %d Foos converged after %v", c.name, obs.converged.Load(), n, timeout)
	}
	res.converge = time.Since(start)
	t.StopTimer()

	// Trailing reconciles (e.g. of ConfigMap events) still count.
	res.calls = waitCallsQuiet(&counter, time.Second, 10*time.Second) - res.startupCalls
	res.reconciles, res.peakWorkers = op.Reconciles(), op.PeakWorkers()
	stop()
	if err := verifyChildren(ctx, kube, ns, n); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	return res
}

// waitCallsQuiet waits until counter has not moved for quiet (at most limit) and
// returns its total.
func waitCallsQuiet(counter *client.RequestCounter, quiet, limit time.Duration) int64 {
	deadline := time.Now().Add(limit)
	last := counter.Total()
	for time.Now().Before(deadline) {
		time.Sleep(quiet)
		now := counter.Total()
		if now == last {
			break
		}
		last = now
	}
	return last
}

func fooName(i int) string          { return fmt.Sprintf("foo-%05d", i) }
func fooMessage(name string) string { return "hello from " + name }

// createFoos creates n Foos, loadInFlight at a time, and hands every create
// response to hook if it is not nil.
func createFoos(ctx context.Context, cfg *rest.Config, ns string, n int, hook fooCreateHook) error {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	foos := dc.Resource(foo.GVR).Namespace(ns)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     atomic.Int64
	)
	for range loadInFlight {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				name := fooName(i)
				obj := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "demo.skiff.dev/v1", "kind": "Foo",
					"metadata": map[string]any{"name": name},
					"spec":     map[string]any{"message": fooMessage(name)},
				}}
				got, err := foos.Create(ctx, obj, metav1.CreateOptions{})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("create foo %s/%s: %w", ns, name, err)
					}
					mu.Unlock()
					return
				}
				if hook != nil {
					hook.Created(got)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// convergeObserver watches the benchmark's namespace with its own, uncounted
// Skiff informer and closes done once every Foo's status says it is
// reconciled at its generation with its ConfigMap named.
type convergeObserver struct {
	done      chan struct{}
	converged atomic.Int64
	stop      func()
}

func observeFoos(ctx context.Context, cfg *rest.Config, ns string, n int) (*convergeObserver, error) {
	src, err := cache.UnstructuredSource(cfg, foo.GVR, cache.Scope{Namespace: ns})
	if err != nil {
		return nil, err
	}
	inf := cache.New(src, cache.Options[*unstructured.Unstructured]{Name: "c1-observer", Logger: convergeLogger})
	o := &convergeObserver{done: make(chan struct{})}
	seen := make(map[string]bool, n) // touched only by the handler's goroutine
	check := func(u *unstructured.Unstructured) {
		if seen[u.GetName()] {
			return
		}
		var f foo.Foo
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &f); err != nil {
			return // not a Foo the operator could have converged either
		}
		if !foo.Converged(&f) || f.Status.ConfigMap != foo.ConfigMapName(f.Name) {
			return
		}
		seen[f.Name] = true
		if o.converged.Add(1) == int64(n) {
			close(o.done)
		}
	}
	inf.AddEventHandler(cache.EventHandler[*unstructured.Unstructured]{
		OnAdd:    check,
		OnUpdate: func(_, f *unstructured.Unstructured) { check(f) },
	}, cache.EventHandlerOptions{})
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { inf.Run(runCtx) })
	o.stop = func() { cancel(); wg.Wait() }
	if err := inf.WaitForSync(ctx); err != nil {
		o.stop()
		return nil, fmt.Errorf("observer: %w", err)
	}
	return o, nil
}

// verifyChildren checks, outside the timed part, that every Foo got its
// ConfigMap with the message and a controller owner reference.
func verifyChildren(ctx context.Context, kube kubernetes.Interface, ns string, n int) error {
	cms, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: foo.ManagedByLabel})
	if err != nil {
		return fmt.Errorf("list children: %w", err)
	}
	good := 0
	for _, cm := range cms.Items {
		ref := metav1.GetControllerOf(&cm)
		if ref == nil || ref.Kind != "Foo" || cm.Name != foo.ConfigMapName(ref.Name) || cm.Data["message"] != fooMessage(ref.Name) {
			return fmt.Errorf("configmap %s is not a correct child: owner %v, data %v", cm.Name, ref, cm.Data)
		}
		good++
	}
	if good != n {
		return fmt.Errorf("%d children for %d Foos", good, n)
	}
	return nil
}

// convergeLogger drops everything below error level, for every contender.
var convergeLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// skiffFooScheme is client-go's built-in types plus Foo, as a Skiff user
// registers them.
func skiffFooScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := foo.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// startSkiffFoo runs examples/foo as `skiff demo` does, with Skiff's defaults
// (adaptive pool of 1–32 workers, watch-list informers, protobuf for
// ConfigMaps), no HTTP server, and returns once its caches have synced.
// fixedWorkers > 0 pins the pool to that size (MinWorkers = MaxWorkers).
func startSkiffFoo(ctx context.Context, cfg *rest.Config, fixedWorkers int) (fooOperator, error) {
	scheme, err := skiffFooScheme()
	if err != nil {
		return nil, err
	}
	mgr, err := manager.New(manager.Options{Config: cfg, Scheme: scheme, Addr: "-", Logger: convergeLogger})
	if err != nil {
		return nil, err
	}
	ctrl, err := foo.Setup(mgr, controller.Options[controller.Request]{
		Logger: convergeLogger, MinWorkers: fixedWorkers, MaxWorkers: fixedWorkers,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	s := &skiffFooOperator{ctrl: ctrl, cancel: cancel, done: make(chan error, 1), quit: make(chan struct{})}
	go func() { s.done <- mgr.Start(runCtx) }()
	for !mgr.IsLeader() { // true once caches synced (no leader election)
		select {
		case err := <-s.done:
			cancel()
			return nil, fmt.Errorf("skiff manager: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	s.wg.Go(s.samplePool)
	return s, nil
}

type skiffFooOperator struct {
	ctrl   *controller.Controller[controller.Request]
	cancel context.CancelFunc
	done   chan error    // mgr.Start's result
	quit   chan struct{} // stops samplePool
	wg     sync.WaitGroup
	peak   atomic.Int64
}

// samplePool records the pool's peak size, sampled every 50 ms (the Sizer
// resizes it every 250 ms by default).
func (s *skiffFooOperator) samplePool() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		size, _ := s.ctrl.Workers()
		if int64(size) > s.peak.Load() {
			s.peak.Store(int64(size))
		}
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
	}
}

func (s *skiffFooOperator) Reconciles() int64 { return s.ctrl.Stats().Reconciles }
func (s *skiffFooOperator) PeakWorkers() int  { return int(s.peak.Load()) }

func (s *skiffFooOperator) Stop() error {
	close(s.quit)
	s.wg.Wait()
	s.cancel()
	return <-s.done
}

// rawFooWriter is the physical bound: for each create response it does the
// writes foo.Reconciler does for a new Foo — the ConfigMap create (labelled,
// with a controller owner reference) and the status update — through
// Skiff's typed client, as the operator does, equalWorkers at a time, with no
// informer, queue or watch latency.
//
// It does not run foo.Reconciler itself: the Reconciler reads the Foo and
// its ConfigMap with client.Get, which without informers is two GETs per
// Foo, and the bound is the writes alone.
type rawFooWriter struct {
	c          *client.Client
	work       chan *unstructured.Unstructured
	wg         sync.WaitGroup
	reconciles atomic.Int64
	errs       chan error
}

func startRawFooWriter(ctx context.Context, cfg *rest.Config) (fooOperator, error) {
	scheme, err := skiffFooScheme()
	if err != nil {
		return nil, err
	}
	// Both resources are known: no discovery, as no informer, so nothing but
	// the writes goes through the counted config.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(foo.GroupVersion.WithKind("Foo"), meta.RESTScopeNamespace)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("ConfigMap"), meta.RESTScopeNamespace)
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	w := &rawFooWriter{c: c, work: make(chan *unstructured.Unstructured, 1<<16), errs: make(chan error, 1)}
	for range equalWorkers {
		w.wg.Go(func() {
			for u := range w.work {
				w.reconciles.Add(1)
				if err := w.write(ctx, u); err != nil {
					select {
					case w.errs <- err:
					default:
					}
				}
			}
		})
	}
	return w, nil
}

// write does foo.Reconciler's two writes for the new Foo u.
func (w *rawFooWriter) write(ctx context.Context, u *unstructured.Unstructured) error {
	var f foo.Foo
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &f); err != nil {
		return fmt.Errorf("foo %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	cmName := foo.ConfigMapName(f.Name)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cmName, Namespace: f.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": foo.ManagedBy}},
		Data:       map[string]string{"message": f.Spec.Message},
	}
	if err := w.c.SetControllerReference(&f, cm); err != nil {
		return err
	}
	if err := w.c.Create(ctx, cm); err != nil {
		return fmt.Errorf("create configmap %s/%s: %w", f.Namespace, cmName, err)
	}
	f.Status = foo.FooStatus{ObservedGeneration: f.Generation, Phase: "Ready", ConfigMap: cmName, Conditions: []metav1.Condition{{
		Type: foo.ConditionReady, Status: metav1.ConditionTrue, Reason: "ConfigMapCurrent", LastTransitionTime: metav1.Now(),
		Message: "configmap " + cmName + " holds spec.message", ObservedGeneration: f.Generation,
	}}}
	if err := w.c.UpdateStatus(ctx, &f); err != nil {
		return fmt.Errorf("update status of foo %s/%s: %w", f.Namespace, f.Name, err)
	}
	return nil
}

func (w *rawFooWriter) Created(f *unstructured.Unstructured) { w.work <- f }

func (w *rawFooWriter) Reconciles() int64 { return w.reconciles.Load() }
func (w *rawFooWriter) PeakWorkers() int  { return 0 }

func (w *rawFooWriter) Stop() error {
	close(w.work)
	w.wg.Wait()
	select {
	case err := <-w.errs:
		return err
	default:
		return nil
	}
}
