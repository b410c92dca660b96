package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	skiffcache "github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// S1: one job — keep an up-to-date view of N source ConfigMaps and, for each
// change, write the derived ConfigMap "derived-<name>" holding a hash of the
// source's data — done by a naive client-go poller and by Skiff, while a
// load generator changes sources at a fixed rate. See bench/README.md (S1).

const (
	s1RoleLabel     = "bench.skiff.dev/role"
	s1WrittenAtKey  = "written-at"                        // source data: the generator's send time (Unix ns)
	s1SourceWritten = "bench.skiff.dev/source-written-at" // derived annotation: the source's written-at it reflects
	s1HashKey       = "hash"                              // derived data: hash of the source's data
	s1PollInterval  = time.Second                         // the naive loop's List period
	s1Rate          = 3                                   // source changes per second, both sizes
)

// s1Size is the scale of S1 (SKIFF_BENCH_SIZE).
type s1Size struct {
	sources   int
	changeFor time.Duration // how long the generator changes sources
}

func s1Sizes() s1Size {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return s1Size{sources: 2000, changeFor: 60 * time.Second}
	}
	return s1Size{sources: 500, changeFor: 15 * time.Second}
}

// s1Contender does the job against namespace ns through cfg (counted). start
// returns once the contender has its initial view (naive: first List;
// skiff: informer synced and the initial keys handled) and stop ends it.
type s1Contender struct {
	name  string
	start func(ctx context.Context, cfg *rest.Config, ns string) (stop func() error, err error)
}

func BenchmarkNaiveVsSkiff(b *testing.B) {
	size := s1Sizes()
	env := roundEnv(b) // namespace controller on, for the reset between contenders
	for _, c := range []s1Contender{
		{name: "naive", start: startNaiveS1},
		{name: "skiff", start: startSkiffS1},
	} {
		b.Run("impl="+c.name, func(b *testing.B) {
			var lats []float64
			var calls, lists, writes int64
			var window time.Duration
			for range b.N {
				r := runS1(b, env, c, size)
				lats = append(lats, r.lats...)
				calls, lists, writes = calls+r.calls, lists+r.lists, writes+r.writes
				window += r.window
			}
			slices.Sort(lats)
			n := float64(b.N)
			b.ReportMetric(quantile(lats, 0.50), "react-p50-ms")
			b.ReportMetric(quantile(lats, 0.99), "react-p99-ms")
			b.ReportMetric(float64(calls)/n, "api-calls")
			b.ReportMetric(float64(lists)/n, "list-calls")
			b.ReportMetric(float64(writes)/window.Seconds(), "writes/s")
			b.ReportMetric(float64(len(lats))/n, "changes")
		})
	}
}

type s1Result struct {
	lats                 []float64 // ms, one per change
	calls, lists, writes int64
	window               time.Duration // first change → last change reflected
}

func runS1(b *testing.B, env *testenv.Env, c s1Contender, size s1Size) s1Result {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	loadCfg := env.Config() // QPS -1: setup, generator and observer are never throttled
	kube, err := kubernetes.NewForConfig(loadCfg)
	if err != nil {
		b.Fatal(err)
	}
	ns, err := testenv.CreateNamespace(ctx, kube, "s1-"+c.name)
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
	if err := createS1Objects(ctx, kube, ns, size.sources); err != nil {
		b.Fatal(err)
	}
	log := newChangeLog()
	stopObs, err := observeDerived(ctx, loadCfg, ns, log)
	if err != nil {
		b.Fatal(err)
	}
	defer stopObs()

	var counter client.RequestCounter
	b.ResetTimer()
	stop, err := c.start(ctx, counter.Install(env.Config()), ns)
	if err != nil {
		b.Fatalf("start %s: %v", c.name, err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	start := time.Now()
	if err := generateChanges(ctx, kube, ns, size, log); err != nil {
		b.Fatal(err)
	}
	genEnd := time.Now()
	// Sustained means caught up within a few poll periods once the
	// generator stops, not a backlog that grew over the run.
	if !waitFor(10*s1PollInterval, func() bool { return log.outstanding() == 0 }) {
		b.Fatalf("%s: %d of %d changes not reflected %v after the generator stopped", c.name, log.outstanding(), log.total(), 10*s1PollInterval)
	}
	end := time.Now()
	b.StopTimer()
	b.Logf("%s: %d changes over %v; caught up %v after the last", c.name, log.total(), genEnd.Sub(start).Round(time.Millisecond), end.Sub(genEnd).Round(time.Millisecond))
	stopped = true
	if err := stop(); err != nil {
		b.Errorf("stop %s: %v", c.name, err)
	}
	counts := counter.Counts()
	b.Logf("%s: requests %v", c.name, counter.Sorted())
	r := s1Result{lats: log.latencies(), calls: counter.Total(), window: end.Sub(start)}
	r.lists = counts[client.RequestKind{Verb: "list", Resource: "configmaps"}]
	r.writes = counts[client.RequestKind{Verb: "patch", Resource: "configmaps"}]
	if err := verifyDerived(ctx, kube, ns); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	return r
}

func s1Source(i int) string { return fmt.Sprintf("src-%05d", i) }

func derivedName(source string) string { return "derived-" + source }

// dataHash is the derived value: a hash of the source's data.
func dataHash(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, data[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// derivedPatch is the one write per change both contenders send.
func derivedPatch(src *corev1.ConfigMap) []byte {
	return fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}},"data":{%q:%q}}`,
		s1SourceWritten, src.Data[s1WrittenAtKey], s1HashKey, dataHash(src.Data))
}

// createS1Objects creates the sources and their derived objects, already
// consistent, from 32 goroutines (untimed, uncounted).
func createS1Objects(ctx context.Context, kube kubernetes.Interface, ns string, n int) error {
	idx := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range idx {
				src := &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: s1Source(i), Labels: map[string]string{s1RoleLabel: "source"}},
					Data:       map[string]string{s1WrittenAtKey: "0", "payload": fmt.Sprintf("source %d", i)},
				}
				der := &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: derivedName(src.Name), Labels: map[string]string{s1RoleLabel: "derived"},
						Annotations: map[string]string{s1SourceWritten: "0"}},
					Data: map[string]string{s1HashKey: dataHash(src.Data)},
				}
				for _, o := range []*corev1.ConfigMap{src, der} {
					if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
						errs <- fmt.Errorf("create %s: %w", o.Name, err)
						return
					}
				}
			}
		})
	}
	go func() {
		defer close(idx)
		for i := range n {
			select {
			case idx <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	return <-errs
}

// generateChanges patches one random source (seeded) every 1/s1Rate s for
// size.changeFor, setting its written-at to the send time.
func generateChanges(ctx context.Context, kube kubernetes.Interface, ns string, size s1Size, log *changeLog) error {
	r := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(time.Second / s1Rate)
	defer tick.Stop()
	end := time.Now().Add(size.changeFor)
	for seq := 0; time.Now().Before(end); seq++ {
		name := s1Source(r.IntN(size.sources))
		w := time.Now().UnixNano()
		log.sent(name, w)
		patch := fmt.Appendf(nil, `{"data":{%q:"%d","seq":"%d"}}`, s1WrittenAtKey, w, seq)
		if _, err := kube.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("generator: patch %s: %w", name, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// changeLog pairs each change with the first derived write that reflects it
// (a derived object whose source-written-at is at or after the change's).
type changeLog struct {
	mu      sync.Mutex
	pending map[string][]int64 // source → send times not yet reflected
	lats    []float64
	n       int
}

func newChangeLog() *changeLog { return &changeLog{pending: map[string][]int64{}} }

func (l *changeLog) sent(source string, w int64) {
	l.mu.Lock()
	l.pending[source] = append(l.pending[source], w)
	l.n++
	l.mu.Unlock()
}

func (l *changeLog) reflected(source string, w int64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pending[source]
	k := 0
	for _, sent := range p {
		if sent <= w {
			l.lats = append(l.lats, float64(now.UnixNano()-sent)/1e6)
		} else {
			p[k] = sent
			k++
		}
	}
	if k == 0 {
		delete(l.pending, source)
	} else {
		l.pending[source] = p[:k]
	}
}

func (l *changeLog) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.pending {
		n += len(p)
	}
	return n
}

func (l *changeLog) total() int { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

func (l *changeLog) latencies() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lats)
}

// observeDerived watches the derived objects with its own (uncounted) Skiff
// informer, the same for every contender, and marks changes reflected.
func observeDerived(ctx context.Context, cfg *rest.Config, ns string, log *changeLog) (stop func(), err error) {
	src, err := skiffcache.TypedSource[*corev1.ConfigMap](cfg, corev1.SchemeGroupVersion.WithResource("configmaps"),
		skiffcache.Scope{Namespace: ns, LabelSelector: s1RoleLabel + "=derived"})
	if err != nil {
		return nil, err
	}
	inf := skiffcache.New(src, skiffcache.Options[*corev1.ConfigMap]{})
	inf.AddEventHandler(skiffcache.EventHandler[*corev1.ConfigMap]{OnUpdate: func(_, d *corev1.ConfigMap) {
		now := time.Now()
		w, err := strconv.ParseInt(d.Annotations[s1SourceWritten], 10, 64)
		if err == nil && w > 0 {
			log.reflected(d.Name[len("derived-"):], w, now)
		}
	}}, skiffcache.EventHandlerOptions{})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	stop = func() { cancel(); <-done }
	if !waitFor(time.Minute, inf.HasSynced) {
		stop()
		return nil, fmt.Errorf("observer: not synced after a minute")
	}
	return stop, nil
}

// verifyDerived checks every derived object holds its source's hash.
func verifyDerived(ctx context.Context, kube kubernetes.Interface, ns string) error {
	list, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	byName := map[string]*corev1.ConfigMap{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	for name, cm := range byName {
		if cm.Labels[s1RoleLabel] != "source" {
			continue
		}
		d := byName[derivedName(name)]
		if d == nil || d.Data[s1HashKey] != dataHash(cm.Data) {
			return fmt.Errorf("derived object of %s does not hold its hash", name)
		}
	}
	return nil
}
