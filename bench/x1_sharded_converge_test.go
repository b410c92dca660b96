package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

// X1: N ConfigMaps exist; R replicas of one controller (each a manager
// with Options.Shard, all in this process, against one control plane with
// the ShardedListAndWatch gate on) reconcile them: 50 ms of simulated I/O,
// then a patch that writes the reconciled mark. See bench/README.md (X1).

const (
	x1Label        = "bench.skiff.dev/x1"
	x1Mark         = "bench.skiff.dev/reconciled" // annotation: the replica that reconciled the object
	x1Work         = 50 * time.Millisecond        // the reconcile's I/O wait
	x1Workers      = 8                            // per replica, MinWorkers = MaxWorkers
	x1DataKeys     = 8                            // data entries per ConfigMap
	x1DataValueLen = 256                          // bytes per data value
)

// x1Shard are the replicas' Lease timings (both contenders): shorter than
// shard's defaults (10s/7s/1s) so that the first hand-off, which takes
// about two RetryPeriods, is not most of a quick run. settle-s reports it.
var x1Shard = shard.Options{LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
	ReleaseTimeout: 10 * time.Second}

func x1Objects() int {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return 3000
	}
	return 300
}

// shardEnv starts a control plane with server-side sharded list and watch
// (KEP-5866) for one round of X1 and stops it when tb ends.
func shardEnv(tb testing.TB) *testenv.Env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{FeatureGates: "ShardedListAndWatch=true"})
	if err != nil {
		tb.Fatalf("control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop control plane: %v", err)
		}
	})
	return env
}

func BenchmarkShardedConverge(b *testing.B) {
	n := x1Objects()
	env := shardEnv(b)
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("impl=skiff/replicas=%d", replicas), func(b *testing.B) {
			var converge, settle, live, cachedMax, work float64
			for range b.N {
				r := runX1(b, env, replicas, n)
				converge += r.converge.Seconds()
				settle += r.settle.Seconds()
				live += r.livePerReplica / float64(n)
				cachedMax += float64(r.cachedMax) / float64(n)
				work += float64(r.works) / float64(n)
			}
			k := float64(b.N)
			b.ReportMetric(converge/k, "converge-s")
			b.ReportMetric(settle/k, "settle-s")
			b.ReportMetric(live/k, "live-B/obj")
			b.ReportMetric(cachedMax/k, "cached-max-frac")
			b.ReportMetric(work/k, "works/obj")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type x1Result struct {
	converge, settle time.Duration
	livePerReplica   float64 // heap after GC, minus before the replicas started, per replica
	cachedMax        int     // objects in the fullest replica's cache
	works            int64   // reconciles that did the work (slept and wrote) until converged
}

type x1Replica struct {
	mgr  *manager.Manager
	ctrl *controller.Controller[controller.Request]
	inf  *cache.Informer[*corev1.ConfigMap]
	stop context.CancelFunc
	done chan error
}

func runX1(b *testing.B, env *testenv.Env, replicas, n int) x1Result {
	b.Helper()
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(env.Config())
	ns, err := testenv.CreateNamespace(ctx, kube, fmt.Sprintf("x1-r%d", replicas))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if err := testenv.DeleteNamespaceAndWait(dctx, kube, ns); err != nil {
			b.Errorf("reset: %v", err)
		}
	}()
	if err := x1Create(ctx, env.Config(), ns, n); err != nil {
		b.Fatal(err)
	}

	var marked sync.Map // key → struct{}: the server accepted the mark
	var count, works atomic.Int64
	converged := make(chan struct{})
	scope := cache.Scope{Namespace: ns, LabelSelector: x1Label + "=obj"}
	_, before := heapAfterGC()
	reps := make([]*x1Replica, replicas)
	for i := range reps {
		id := fmt.Sprintf("r%d", i+1)
		so := x1Shard
		so.Namespace, so.Group, so.Identity, so.Logger = ns, "x1", id, convergeLogger
		mgr, err := manager.New(manager.Options{Config: env.Config(), Addr: "-", Logger: convergeLogger, KeepKlog: true, Shard: &so})
		if err != nil {
			b.Fatal(err)
		}
		c := mgr.Client()
		reconcile := func(ctx context.Context, req controller.Request) (controller.Result, error) {
			cm, err := client.Get[*corev1.ConfigMap](ctx, c, req)
			if apierrors.IsNotFound(err) {
				return controller.Result{}, nil
			}
			if err != nil {
				return controller.Result{}, err
			}
			if cm.Annotations[x1Mark] != "" {
				return controller.Result{}, nil
			}
			works.Add(1)
			select { // the reconcile's I/O
			case <-time.After(x1Work):
			case <-ctx.Done():
				return controller.Result{}, ctx.Err()
			}
			out := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}}
			patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, x1Mark, id)
			if err := c.Patch(ctx, out, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return controller.Result{}, err
			}
			if _, dup := marked.LoadOrStore(req, struct{}{}); !dup && count.Add(1) == int64(n) {
				close(converged)
			}
			return controller.Result{}, nil
		}
		ctrl, err := builder.Build(mgr, controller.ReconcileFunc[controller.Request](reconcile), builder.Named("x1"),
			builder.Scope[*corev1.ConfigMap](scope), builder.For[*corev1.ConfigMap](),
			builder.WithOptions(controller.Options[controller.Request]{MinWorkers: x1Workers, MaxWorkers: x1Workers}))
		if err != nil {
			b.Fatal(err)
		}
		inf, err := client.InformerFor[*corev1.ConfigMap](c, scope)
		if err != nil {
			b.Fatal(err)
		}
		reps[i] = &x1Replica{mgr: mgr, ctrl: ctrl, inf: inf, done: make(chan error, 1)}
	}

	b.StartTimer()
	start := time.Now()
	for _, r := range reps {
		rctx, stop := context.WithCancel(context.Background())
		r.stop = stop
		go func() { r.done <- r.mgr.Start(rctx) }()
	}
	settled := make(chan time.Duration, 1)
	go func() { // settle-s: until every replica is active on a ring of all of them
		for {
			ok := true
			for _, r := range reps {
				a := r.mgr.Shard().Replica().Assignment()
				ok = ok && a.Active && len(a.Members) == replicas
			}
			if ok {
				settled <- time.Since(start)
				return
			}
			select {
			case <-converged:
				settled <- -1
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	// A run that stops making progress for a minute fails with what each
	// replica knows of the keys still unmarked.
	for last, lastAt := int64(-1), time.Now(); ; {
		select {
		case <-converged:
		case <-time.After(time.Second):
			if c := count.Load(); c != last {
				last, lastAt = c, time.Now()
				continue
			}
			if time.Since(lastAt) < time.Minute {
				continue
			}
			b.Fatalf("%d replicas: %d of %d objects marked, no progress for a minute:\n%s", replicas, count.Load(), n, x1Stall(ctx, kube, ns, reps, &marked))
		}
		break
	}
	res := x1Result{converge: time.Since(start), works: works.Load()}
	b.StopTimer()
	res.settle = <-settled

	// Heap with every replica's cache full and every object marked (the
	// caches have seen the marks once the replicas' watches deliver them).
	testenv.Eventually(b, time.Minute, "every replica's cache shows its objects' marks", func() (bool, error) {
		total := 0
		for _, r := range reps {
			for _, cm := range r.inf.Lister().List(nil) {
				if cm.Annotations[x1Mark] == "" {
					return false, fmt.Errorf("%s not marked in a cache", cm.Name)
				}
			}
			total += r.inf.Store().Len()
		}
		if total != n {
			return false, fmt.Errorf("the replicas cache %d objects together, want %d", total, n)
		}
		return true, nil
	})
	_, after := heapAfterGC()
	res.livePerReplica = (float64(after) - float64(before)) / float64(replicas)
	for _, r := range reps {
		res.cachedMax = max(res.cachedMax, r.inf.Store().Len())
	}

	var errs []error
	for _, r := range reps {
		r.stop()
	}
	for _, r := range reps {
		if err := <-r.done; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("stop replicas: %v", err)
	}
	if err := x1Check(ctx, kube, ns, n); err != nil {
		b.Fatal(err)
	}
	return res
}

// x1Create creates n labelled ConfigMaps with x1DataKeys data entries of
// x1DataValueLen bytes each (about 2.5 KB per object on the wire), 32 in
// flight.
func x1Create(ctx context.Context, cfg *rest.Config, ns string, n int) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for w := range errs {
		wg.Go(func() {
			for i := w; i < n; i += len(errs) {
				data := make(map[string]string, x1DataKeys)
				for k := range x1DataKeys {
					data[fmt.Sprintf("key-%d", k)] = strings.Repeat(string(rune('a'+(i+k)%26)), x1DataValueLen)
				}
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("obj-%05d", i), Labels: map[string]string{x1Label: "obj"}}, Data: data}
				if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					errs[w] = fmt.Errorf("create configmap %s/%s: %w", ns, cm.Name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// x1Check lists the objects from the server: every one carries the mark.
func x1Check(ctx context.Context, kube kubernetes.Interface, ns string, n int) error {
	list, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: x1Label + "=obj"})
	if err != nil {
		return err
	}
	if len(list.Items) != n {
		return fmt.Errorf("%d objects in %s, want %d", len(list.Items), ns, n)
	}
	for _, cm := range list.Items {
		if cm.Annotations[x1Mark] == "" {
			return fmt.Errorf("%s/%s has no %s annotation after converge", ns, cm.Name, x1Mark)
		}
	}
	return nil
}

// x1Stall describes a stalled run: each replica's ring and queue, and for
// a few unmarked keys which replica owns them and which caches them.
func x1Stall(ctx context.Context, kube kubernetes.Interface, ns string, reps []*x1Replica, marked *sync.Map) string {
	var out strings.Builder
	for i, r := range reps {
		st := r.mgr.State().Shard
		rec := httptest.NewRecorder()
		r.mgr.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		dropped := ""
		for line := range strings.Lines(rec.Body.String()) {
			if strings.HasPrefix(line, "skiff_shard_dropped_keys_total") {
				dropped = strings.TrimSpace(line)
			}
		}
		fmt.Fprintf(&out, "r%d: ring %s active %v members %d owns %.3f; queue %d, stats %+v; cache %d; %s\n", i+1, st.Version, st.Active,
			len(st.Members), st.OwnedFraction, r.ctrl.QueueDepth(), r.ctrl.Stats(), r.inf.Store().Len(), dropped)
	}
	list, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: x1Label + "=obj"})
	if err != nil {
		fmt.Fprintf(&out, "list: %v\n", err)
		return out.String()
	}
	shown := 0
	for _, cm := range list.Items {
		if _, ok := marked.Load(types.NamespacedName{Namespace: cm.Namespace, Name: cm.Name}); ok || shown == 10 {
			continue
		}
		shown++
		fmt.Fprintf(&out, "%s (server mark %q):", cm.Name, cm.Annotations[x1Mark])
		for i, r := range reps {
			_, cached := r.inf.Lister().Get(cm.Namespace, cm.Name)
			fmt.Fprintf(&out, " r%d owns=%v cached=%v;", i+1, r.mgr.Shard().Replica().Assignment().Owns(shard.ItemOf(&cm, shard.UID)), cached)
		}
		out.WriteString("\n")
	}
	return out.String()
}
