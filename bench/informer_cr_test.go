package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	skiffcache "github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// I5: custom resources. N Foos (examples/foo) of ~2 KB of JSON each, as
// kubectl's client-side apply leaves them (last-applied annotation,
// managedFields), in a namespace of their own on the informer fixture's
// control plane. One op = build an informer, wait until it has synced, take
// the live heap after two GCs; sync-s, cpu-s (this process: the
// informer's decode and store, not the server's encode), server-cpu-s (the
// control plane process over the same span: the server's list and encode)
// and live-B/obj.

var foosGVR = foo.GroupVersion.WithResource("foos")

func crSize() int {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return 10000
	}
	return 2000
}

type crFixture struct {
	env *testenv.Env // the control plane serving the Foos
	cfg *rest.Config
	ns  string
	n   int
}

var (
	crOnce sync.Once
	crFix  *crFixture
	crErr  error
)

func crFixtureFor(b *testing.B) *crFixture {
	b.Helper()
	f := fixtureFor(b)
	crOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		crFix, crErr = startCRFixture(ctx, f.env, f.cfg, crSize())
		if crErr == nil {
			logCRFixture(ctx, b, crFix)
		}
	})
	if crErr != nil {
		b.Fatalf("custom resource fixture: %v", crErr)
	}
	return crFix
}

func startCRFixture(ctx context.Context, env *testenv.Env, cfg *rest.Config, n int) (*crFixture, error) {
	if _, err := testenv.ApplyCRDs(ctx, cfg, foo.CRD); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f := &crFixture{env: env, cfg: cfg, n: n}
	if f.ns, err = testenv.CreateNamespace(ctx, cs, "cr-bench"); err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ri := dc.Resource(foosGVR).Namespace(f.ns)
	const workers = 32
	idx := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range idx {
				if _, err := ri.Create(ctx, benchFoo(i), metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
					errs <- fmt.Errorf("create foo %d: %w", i, err)
					return
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case idx <- i:
		case err = <-errs:
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return f, err
}

// benchFoo is Foo i: six labels, three annotations and the last-applied
// copy kubectl apply writes, a 600-byte message.
func benchFoo(i int) *unstructured.Unstructured {
	app := fmt.Sprintf("svc-%03d", i%97)
	obj := map[string]any{
		"apiVersion": "demo.skiff.dev/v1",
		"kind":       "Foo",
		"metadata": map[string]any{
			"name": fmt.Sprintf("%s-foo-%05d", app, i),
			"labels": map[string]any{
				"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app + "-prod",
				"app.kubernetes.io/component": "frontend", "app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/managed-by": "skiff-bench", "team": fmt.Sprintf("team-%d", i%7),
			},
			"annotations": map[string]any{
				"demo.skiff.dev/owner":    fmt.Sprintf("owner-%d@example.com", i%13),
				"demo.skiff.dev/revision": fmt.Sprint(i % 5),
				"demo.skiff.dev/note":     "created by the I5 benchmark",
			},
		},
		"spec": map[string]any{
			"message": fmt.Sprintf("foo %d: ", i) + strings.Repeat("lorem ipsum dolor sit amet ", 22),
			"fail":    false,
		},
	}
	applied, _ := json.Marshal(obj)
	obj["metadata"].(map[string]any)["annotations"].(map[string]any)[skiffcache.LastAppliedAnnotation] = string(applied)
	return &unstructured.Unstructured{Object: obj}
}

// logCRFixture reports the Foos' mean JSON size as served and after the
// default transform.
func logCRFixture(ctx context.Context, b *testing.B, f *crFixture) {
	dc, err := dynamic.NewForConfig(f.cfg)
	if err != nil {
		return
	}
	l, err := dc.Resource(foosGVR).Namespace(f.ns).List(ctx, metav1.ListOptions{Limit: 200})
	if err != nil || len(l.Items) == 0 {
		return
	}
	full, stripped := 0, 0
	for i := range l.Items {
		raw, _ := json.Marshal(l.Items[i].Object)
		full += len(raw)
		raw, _ = json.Marshal(skiffcache.DefaultTransform(&l.Items[i]).Object)
		stripped += len(raw)
	}
	b.Logf("I5 fixture: %d Foos in %s; JSON %.0f B/obj as served, %.0f B/obj without managedFields and last-applied (sample of %d)",
		f.n, f.ns, float64(full)/float64(len(l.Items)), float64(stripped)/float64(len(l.Items)), len(l.Items))
}

// crImpl is one I5 contender; start builds everything it needs (client
// included) so the memory baseline taken before it counts every byte.
type crImpl struct {
	name  string
	start func(cfg *rest.Config, ns string) (*runningInformer, error)
}

var crImpls = []crImpl{
	{"skiff/typed", func(cfg *rest.Config, ns string) (*runningInformer, error) {
		src, err := skiffcache.CustomSourceFor[*foo.Foo](cfg, foosGVR, skiffcache.Scope{Namespace: ns})
		if err != nil {
			return nil, err
		}
		return runSkiffInformer(skiffcache.New(src, skiffcache.Options[*foo.Foo]{})), nil
	}},
	// skiff/typed with its watch on HTTP/2 (as before 2026-11-26 evening)
	// instead of HTTP/1.1 on a connection of its own: the A/B of the
	// custom-resource watch stream.
	{"skiff/typed-http2", func(cfg *rest.Config, ns string) (*runningInformer, error) {
		cfg = rest.CopyConfig(cfg)
		cfg.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		src, err := skiffcache.CustomSourceFor[*foo.Foo](cfg, foosGVR, skiffcache.Scope{Namespace: ns})
		if err != nil {
			return nil, err
		}
		return runSkiffInformer(skiffcache.New(src, skiffcache.Options[*foo.Foo]{})), nil
	}},
	// skiff/typed streaming its initial list as a watch-list (the
	// default before 2026-11-26 evening) instead of paginated lists.
	{"skiff/typed-watchlist", func(cfg *rest.Config, ns string) (*runningInformer, error) {
		src, err := skiffcache.CustomSourceFor[*foo.Foo](cfg, foosGVR, skiffcache.Scope{Namespace: ns})
		if err != nil {
			return nil, err
		}
		return runSkiffInformer(skiffcache.New(src, skiffcache.Options[*foo.Foo]{WatchList: skiffcache.WatchListOn})), nil
	}},
	{"skiff/unstructured", func(cfg *rest.Config, ns string) (*runningInformer, error) {
		src, err := skiffcache.CustomSourceFor[*unstructured.Unstructured](cfg, foosGVR, skiffcache.Scope{Namespace: ns})
		if err != nil {
			return nil, err
		}
		return runSkiffInformer(skiffcache.New(src, skiffcache.Options[*unstructured.Unstructured]{})), nil
	}},
	{"clientgo/dynamic", startDynamicInformer},
	{"ctrlruntime/typed", startCtrlRuntimeCache},
}

func runSkiffInformer[T skiffcache.Object](inf *skiffcache.Informer[T]) *runningInformer {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningInformer{hasSynced: inf.HasSynced, len: inf.Store().Len, keep: inf, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); inf.Run(ctx) }()
	return r
}

// startDynamicInformer is client-go's dynamic informer with its defaults
// (dynamicinformer factory, no resync, JSON into unstructured).
func startDynamicInformer(cfg *rest.Config, ns string) (*runningInformer, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	inf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dc, 0, ns, nil).ForResource(foosGVR).Informer()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningInformer{hasSynced: inf.HasSynced, len: func() int { return len(inf.GetStore().ListKeys()) }, keep: inf, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); inf.RunWithContext(ctx) }()
	return r, nil
}

// startCtrlRuntimeCache is controller-runtime's cache with its defaults for
// the typed Foo in one namespace (what a manager's client reads from).
func startCtrlRuntimeCache(cfg *rest.Config, ns string) (*runningInformer, error) {
	s := kruntime.NewScheme()
	if err := foo.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := crcache.New(cfg, crcache.Options{Scheme: s, DefaultNamespaces: map[string]crcache.Config{ns: {}}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	inf, err := c.GetInformer(ctx, &foo.Foo{})
	if err != nil {
		cancel()
		return nil, err
	}
	count := func() int {
		var l foo.FooList
		if err := c.List(ctx, &l, crclient.InNamespace(ns)); err != nil {
			return -1
		}
		return len(l.Items)
	}
	r := &runningInformer{hasSynced: inf.HasSynced, len: count, keep: c, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); c.Start(ctx) }()
	return r, nil
}

// startCRSynced starts impl and polls HasSynced every millisecond (for
// every contender alike), then checks it holds want objects.
func startCRSynced(impl crImpl, f *crFixture) (*runningInformer, error) {
	r, err := impl.start(f.cfg, f.ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", impl.name, err)
	}
	if !waitFor(informerTimeout, r.hasSynced) {
		r.stop()
		return nil, fmt.Errorf("%s: not synced after %v", impl.name, informerTimeout)
	}
	if n := r.len(); n != f.n {
		r.stop()
		return nil, fmt.Errorf("%s: synced with %d objects, want %d", impl.name, n, f.n)
	}
	return r, nil
}

func BenchmarkInformerCustomResources(b *testing.B) {
	f := crFixtureFor(b)
	for _, impl := range crImpls {
		benchCRImpl(b, impl, f)
	}
	if os.Getenv("SKIFF_BENCH_CBOR") != "0" {
		cf := crCBORFixtureFor(b) // a control plane serving CBOR (see informer_cr_cbor_test.go)
		for _, impl := range crCBORImpls {
			benchCRImpl(b, impl, cf)
		}
	}
}

func benchCRImpl(b *testing.B, impl crImpl, f *crFixture) {
	{
		b.Run("impl="+impl.name, func(b *testing.B) {
			_, base := heapAfterGC()
			if r, err := startCRSynced(impl, f); err != nil { // untimed warm-up
				b.Fatal(err)
			} else {
				_, li := heapAfterGC()
				stopReleased(b, r, base, grown(base, li))
			}
			var syncS, cpuS, serverS, live float64
			for range b.N {
				settleServer(b, f.env)
				_, base := heapAfterGC()
				t0, c0, s0 := time.Now(), cpuSeconds(), serverCPUSeconds(b, f.env)
				r, err := startCRSynced(impl, f)
				if err != nil {
					b.Fatal(err)
				}
				syncS += time.Since(t0).Seconds()
				cpuS += cpuSeconds() - c0
				serverS += serverCPUSeconds(b, f.env) - s0
				_, li := heapAfterGC()
				live += float64(li) - float64(base)
				runtime.KeepAlive(r.keep)
				stopReleased(b, r, base, grown(base, li))
			}
			b.ReportMetric(syncS/float64(b.N), "sync-s")
			b.ReportMetric(cpuS/float64(b.N), "cpu-s")
			b.ReportMetric(serverS/float64(b.N), "server-cpu-s")
			b.ReportMetric(live/float64(b.N*f.n), "live-B/obj")
		})
	}
}
