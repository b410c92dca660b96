package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	skiffcache "github.com/skiffkit/skiff/cache"
)

// informerTimeout bounds every wait of the informer scenarios.
const informerTimeout = 2 * time.Minute

// I1: one op = start an informer over the fixture's pods and wait until it
// has synced (polled every millisecond for every contender). Before each
// op the control plane is let settle (settleServer), untimed. sync-s is the
// wall time, cpu-s this process's CPU (the informer's), server-cpu-s the
// control plane process's CPU over the same span (etcd and kube-apiserver:
// the list or watch-list the informer asked for, plus whatever else the
// server did meanwhile; 10 ms ticks).
func BenchmarkInformerColdStart(b *testing.B) {
	forEachInformerImpl(b, func(b *testing.B, f *informerFixture, impl informerImpl) {
		warmUp(b, f, impl)
		var syncS, cpuS, serverS float64
		for range b.N {
			settleServer(b, f.env)
			runtime.GC()
			t0, c0, s0 := time.Now(), cpuSeconds(), serverCPUSeconds(b, f.env)
			r, err := startSynced(impl, informerSetup{cfg: f.cfg, ns: f.ns}, f.size.pods)
			if err != nil {
				b.Fatal(err)
			}
			syncS += time.Since(t0).Seconds()
			cpuS += cpuSeconds() - c0
			serverS += serverCPUSeconds(b, f.env) - s0
			r.stop()
		}
		b.ReportMetric(syncS/float64(b.N), "sync-s")
		b.ReportMetric(cpuS/float64(b.N), "cpu-s")
		b.ReportMetric(serverS/float64(b.N), "server-cpu-s")
	})
}

// warmUp runs impl to sync once, untimed, so that no contender pays for
// what its predecessor left behind (the first connection to the server, a
// watch cache still catching up with the fixture's creates).
// It returns once the informer's memory is released (see stopReleased).
func warmUp(b *testing.B, f *informerFixture, impl informerImpl) {
	b.Helper()
	_, base := heapAfterGC()
	r, err := startSynced(impl, informerSetup{cfg: f.cfg, ns: f.ns}, f.size.pods)
	if err != nil {
		b.Fatal(err)
	}
	_, li := heapAfterGC()
	stopReleased(b, r, base, grown(base, li))
}

// grown is how much the live heap grew from base to now (0 if it shrank).
func grown(base, now uint64) uint64 {
	if now < base {
		return 0
	}
	return now - base
}

// I2: one op = start an informer, wait for sync, and measure the heap it
// added: heap in use (and live heap) after two GCs, minus the same figure
// taken just before the informer was built, per cached pod.
func BenchmarkInformerMemory(b *testing.B) {
	forEachInformerImpl(b, func(b *testing.B, f *informerFixture, impl informerImpl) {
		warmUp(b, f, impl)
		var inuse, live, get50, get99, listMS float64
		for range b.N {
			baseInuse, baseLive := heapAfterGC()
			r, err := startSynced(impl, informerSetup{cfg: f.cfg, ns: f.ns}, f.size.pods)
			if err != nil {
				b.Fatal(err)
			}
			in, li := heapAfterGC()
			inuse += float64(in) - float64(baseInuse)
			live += float64(li) - float64(baseLive)
			rc := measureReads(b, r, f)
			get50 += rc.get50
			get99 += rc.get99
			listMS += rc.listMS
			runtime.KeepAlive(r.keep)
			stopReleased(b, r, baseLive, grown(baseLive, li))
		}
		n := float64(b.N * f.size.pods)
		b.ReportMetric(inuse/n, "heap-B/obj")
		b.ReportMetric(live/n, "live-B/obj")
		b.ReportMetric(get50/float64(b.N), "get-p50-ns")
		b.ReportMetric(get99/float64(b.N), "get-p99-ns")
		b.ReportMetric(listMS/float64(b.N), "list-ms")
	})
}

// readCost is what reads of a synced informer cost: Get of one pod (p50 and
// p99 over readGets Gets of random pods, each timed alone) and a List of
// every pod (median of readLists).
type readCost struct{ get50, get99, listMS float64 }

const (
	readGets  = 20000
	readLists = 5
)

// measureReads times Gets and Lists as a controller does them: through the
// contender's lister (skiff) or indexer (client-go), one goroutine.
func measureReads(b *testing.B, r *runningInformer, f *informerFixture) readCost {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	ds := make([]time.Duration, readGets)
	for i := range ds {
		name := podName(rng.IntN(f.size.pods))
		t0 := time.Now()
		ok := r.get(f.ns, name)
		ds[i] = time.Since(t0)
		if !ok {
			b.Fatalf("Get %s/%s: not found", f.ns, name)
		}
	}
	slices.Sort(ds)
	ls := make([]time.Duration, readLists)
	for i := range ls {
		t0 := time.Now()
		n := r.list()
		ls[i] = time.Since(t0)
		if n != f.size.pods {
			b.Fatalf("List: %d pods, want %d", n, f.size.pods)
		}
	}
	slices.Sort(ls)
	return readCost{
		get50:  float64(ds[len(ds)/2].Nanoseconds()),
		get99:  float64(ds[len(ds)*99/100].Nanoseconds()),
		listMS: float64(ls[len(ls)/2].Microseconds()) / 1000,
	}
}

// I4: an informer with every pod cached gets a 410 Gone on its watch and
// relists; the heap is sampled every 2 ms from the 410 until relistWait
// after the relist's stream ended. Two relists per op:
//
//   - peak/steady: live heap as marked by each GC, with GOGC lowered to 10
//     for the relist so a GC marks after every ~10% of heap growth: how
//     many copies of the cache the engine holds;
//   - heap-peak/steady: every heap object, garbage not yet collected
//     included, at the benchmark's own GOGC: what the process holds.
//
// Both are over the informer's own share: figures minus the live heap
// before the informer was built. Each contender has a counting event
// handler, as a controller would.
func BenchmarkInformerRelist(b *testing.B) {
	forEachInformerImpl(b, func(b *testing.B, f *informerFixture, impl informerImpl) {
		var livePeak, heapPeak float64
		for range b.N {
			_, base := heapAfterGC()
			trig := &relistTrigger{}
			var adds atomic.Int64
			h := &podHandler{onAdd: func(*corev1.Pod) { adds.Add(1) }}
			r, err := startSynced(impl, informerSetup{cfg: f.cfg, ns: f.ns, wrap: trig.wrap, handler: h}, f.size.pods)
			if err != nil {
				b.Fatal(err)
			}
			if !waitFor(informerTimeout, func() bool { return adds.Load() == int64(f.size.pods) }) {
				b.Fatalf("handler got %d adds, want %d", adds.Load(), f.size.pods)
			}
			for _, lowGC := range []bool{true, false} {
				_, steady := heapAfterGC()
				prev := debug.SetGCPercent(-1) // read GOGC (and restore it at once)
				debug.SetGCPercent(prev)
				if lowGC {
					debug.SetGCPercent(10)
				}
				s := startHeapSampler(2 * time.Millisecond)
				err := trig.fire(informerTimeout)
				time.Sleep(f.size.relistWait)
				s.finish()
				debug.SetGCPercent(prev)
				if err != nil {
					b.Fatalf("%s: %v", impl.name, err)
				}
				if lowGC {
					livePeak += float64(s.peakLive-base) / float64(steady-base)
				} else {
					heapPeak += float64(s.peakHeap-base) / float64(steady-base)
				}
			}
			runtime.KeepAlive(r.keep)
			r.stop()
		}
		b.ReportMetric(livePeak/float64(b.N), "peak/steady")
		b.ReportMetric(heapPeak/float64(b.N), "heap-peak/steady")
	})
}

// relistTrigger wraps a contender's list/watch so the benchmark can end
// the open watch with the ERROR event a server sends when the watch's
// resourceVersion is gone (410, reason Expired), and see when the relist
// that follows has been received in full.
type relistTrigger struct {
	inner listWatcher

	mu      sync.Mutex
	open    *relayWatch   // the watch the informer is reading
	armed   bool          // a 410 was sent; the next list is the relist
	relists int           // lists and watch-lists started while armed
	ended   chan struct{} // closed when the armed relist was received
}

func (t *relistTrigger) wrap(lw listWatcher) listWatcher { t.inner = lw; return t }

// RelayedFrom makes the trigger a cache.EventRelay for skiff's informers:
// it passes watch events on unread, so a relist through it may keep
// unchanged objects undecoded, as it does without the trigger.
func (t *relistTrigger) RelayedFrom() skiffcache.ListerWatcher { return t.inner }

// fire sends the 410 and waits until the relist has been received.
func (t *relistTrigger) fire(timeout time.Duration) error {
	t.mu.Lock()
	w := t.open
	if w == nil {
		t.mu.Unlock()
		return fmt.Errorf("no open watch to end")
	}
	t.armed, t.relists, t.ended = true, 0, make(chan struct{})
	ended := t.ended
	t.mu.Unlock()
	w.expire()
	select {
	case <-ended:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no relist within %v after a 410", timeout)
	}
}

// relistDone marks the armed relist as received.
func (t *relistTrigger) relistDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.armed && t.relists > 0 {
		t.armed = false
		close(t.ended)
	}
}

func (t *relistTrigger) List(ctx context.Context, opts metav1.ListOptions) (kruntime.Object, error) {
	t.mu.Lock()
	if t.armed && opts.Continue == "" {
		t.relists++
	}
	t.mu.Unlock()
	obj, err := t.inner.List(ctx, opts)
	if err == nil {
		if lm, lerr := meta.ListAccessor(obj); lerr == nil && lm.GetContinue() == "" {
			t.relistDone()
		}
	}
	return obj, err
}

func (t *relistTrigger) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := t.inner.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	watchList := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	rw := &relayWatch{inner: w, out: make(chan watch.Event), stop: make(chan struct{}), expired: make(chan struct{})}
	if watchList {
		rw.onInitialEnd = t.relistDone
	}
	t.mu.Lock()
	if t.armed && watchList {
		t.relists++
	}
	t.open = rw
	t.mu.Unlock()
	go rw.relay()
	return rw, nil
}

// relayWatch forwards a watch's events; expire ends it with a 410.
type relayWatch struct {
	inner        watch.Interface
	out          chan watch.Event
	stop         chan struct{}
	stopOnce     sync.Once
	expired      chan struct{}
	expireOnce   sync.Once
	onInitialEnd func()
}

func (w *relayWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *relayWatch) Stop() {
	w.stopOnce.Do(func() { close(w.stop); w.inner.Stop() })
}

func (w *relayWatch) expire() { w.expireOnce.Do(func() { close(w.expired) }) }

func (w *relayWatch) relay() {
	defer close(w.out)
	defer w.inner.Stop()
	in := w.inner.ResultChan()
	for {
		select {
		case <-w.stop:
			return
		case <-w.expired:
			gone := apierrors.NewResourceExpired("too old resource version: 1 (2)")
			select {
			case w.out <- watch.Event{Type: watch.Error, Object: &gone.ErrStatus}:
			case <-w.stop:
			}
			return
		case ev, ok := <-in:
			if !ok {
				return
			}
			if ev.Type == watch.Bookmark && w.onInitialEnd != nil {
				if acc, err := meta.Accessor(ev.Object); err == nil && acc.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
					w.onInitialEnd()
				}
			}
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		}
	}
}
