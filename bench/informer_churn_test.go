package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// writtenAtAnnotation carries the writer's clock (Unix ns) at the moment
// it sent the patch.
const writtenAtAnnotation = "bench.skiff.dev/written-at"

// churnWriterEnv makes TestMain run as the churn writer (see runChurnWriter).
const churnWriterEnv = "SKIFF_BENCH_CHURN_WRITER"

// churnProfileEnv names a directory: each I3 run then writes a CPU profile
// of its measured window (writer start until the last event arrived, the
// same window as cpu-s/event) to <dir>/<impl>-rate<N>-<k>.prof. Do not
// combine with -cpuprofile (one CPU profile per process).
const churnProfileEnv = "SKIFF_BENCH_CHURN_CPUPROFILE"

// idleWindow is how long I3 measures the process's CPU with the informer
// synced and nothing written, before the writer starts.
const idleWindow = time.Second

// I3: with every pod cached and an event handler registered, a writer in a
// separate process patches pods at a fixed rate (an annotation holding the
// send time); the handler records now − send time. cpu-s/event is this
// process's CPU (informer, handler, harness; not the writer's, not the
// control plane's) from the first patch until the last event arrived,
// divided by the events received. idle-cpu-s/s is this process's CPU per
// second over idleWindow just before, with the informer synced and nothing
// written: the floor (runtime, timers, the harness) that cpu-s/event
// includes at a rate of rate × churnFor events per churnFor. One
// sub-benchmark per rate: impl=<contender>/rate=<patches per second>.
func BenchmarkInformerChurn(b *testing.B) {
	forEachInformerImpl(b, func(b *testing.B, f *informerFixture, impl informerImpl) {
		for _, rate := range f.size.churnRates {
			b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
				var lats []float64 // ms
				var cpuS, idleS float64
				var events, writes int
				for i := range b.N {
					r, err := churnOnce(f, impl, rate, i)
					if err != nil {
						b.Fatal(err)
					}
					lats = append(lats, r.lats...)
					cpuS += r.cpu
					idleS += r.idle
					events += len(r.lats)
					writes += r.writes
				}
				slices.Sort(lats)
				b.ReportMetric(quantile(lats, 0.50), "p50-ms")
				b.ReportMetric(quantile(lats, 0.99), "p99-ms")
				b.ReportMetric(cpuS/float64(events), "cpu-s/event")
				b.ReportMetric(idleS/float64(b.N)/idleWindow.Seconds(), "idle-cpu-s/s")
				b.ReportMetric(float64(writes)/float64(b.N)/f.size.churnFor.Seconds(), "writes/s")
			})
		}
	})
}

type churnResult struct {
	lats      []float64 // ms
	cpu, idle float64   // seconds
	writes    int
}

func churnOnce(f *informerFixture, impl informerImpl, rate, run int) (churnResult, error) {
	var mu sync.Mutex
	var adds atomic.Int64
	var lats []float64
	h := &podHandler{
		onAdd: func(*corev1.Pod) { adds.Add(1) },
		onUpdate: func(old, new *corev1.Pod) {
			v := new.Annotations[writtenAtAnnotation]
			if v == "" || v == old.Annotations[writtenAtAnnotation] {
				return
			}
			sent, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return
			}
			ms := float64(time.Now().UnixNano()-sent) / 1e6
			mu.Lock()
			lats = append(lats, ms)
			mu.Unlock()
		},
	}
	r, err := startSynced(impl, informerSetup{cfg: f.cfg, ns: f.ns, handler: h}, f.size.pods)
	if err != nil {
		return churnResult{}, err
	}
	defer r.stop()
	if !waitFor(informerTimeout, func() bool { return adds.Load() == int64(f.size.pods) }) {
		return churnResult{}, fmt.Errorf("%s: handler got %d adds, want %d", impl.name, adds.Load(), f.size.pods)
	}
	i0 := cpuSeconds()
	time.Sleep(idleWindow) // measuring a window, not waiting for a condition
	idle := cpuSeconds() - i0
	if dir := os.Getenv(churnProfileEnv); dir != "" {
		name := fmt.Sprintf("%s-rate%d-%d.prof", strings.ReplaceAll(impl.name, "/", "_"), rate, run)
		stop, err := startCPUProfile(filepath.Join(dir, name))
		if err != nil {
			return churnResult{}, err
		}
		defer stop()
	}
	c0 := cpuSeconds()
	writes, err := runWriterProcess(f, rate)
	if err != nil {
		return churnResult{}, err
	}
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(lats) }
	if !waitFor(30*time.Second, func() bool { return received() >= writes }) {
		return churnResult{}, fmt.Errorf("%s: handler got %d of %d patches", impl.name, received(), writes)
	}
	cpu := cpuSeconds() - c0
	mu.Lock()
	defer mu.Unlock()
	return churnResult{lats: slices.Clone(lats), cpu: cpu, idle: idle, writes: writes}, nil
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	fh, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(fh); err != nil {
		fh.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); fh.Close() }, nil
}

// runWriterProcess runs this test binary as the churn writer and returns
// how many patches it applied.
func runWriterProcess(f *informerFixture, rate int) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		churnWriterEnv+"=1",
		"KUBECONFIG="+f.env.KubeconfigPath(),
		"CHURN_NS="+f.ns,
		fmt.Sprintf("CHURN_PODS=%d", f.size.pods),
		fmt.Sprintf("CHURN_RATE=%d", rate),
		"CHURN_FOR="+f.size.churnFor.String(),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("churn writer: %w: %s", err, errOut.String())
	}
	var n int
	if _, err := fmt.Sscanf(out.String(), "patched %d", &n); err != nil {
		return 0, fmt.Errorf("churn writer output %q: %w", out.String(), err)
	}
	return n, nil
}

// runChurnWriter is the writer process: it patches pods round-robin at
// CHURN_RATE per second for CHURN_FOR from 64 goroutines (pod k mod
// CHURN_PODS for the k-th patch) (so a slow
// request does not slow the schedule), stamps each patch with the time it
// is sent, and prints "patched N". Any failed patch fails the run.
func runChurnWriter() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "churn writer:", err); return 1 }
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return fail(err)
	}
	cfg.QPS = -1
	cs, err := kubernetes.NewForConfig(protobufConfig(cfg))
	if err != nil {
		return fail(err)
	}
	ns := os.Getenv("CHURN_NS")
	pods, _ := strconv.Atoi(os.Getenv("CHURN_PODS"))
	rate, _ := strconv.Atoi(os.Getenv("CHURN_RATE"))
	dur, err := time.ParseDuration(os.Getenv("CHURN_FOR"))
	if err != nil || pods <= 0 || rate <= 0 {
		return fail(fmt.Errorf("bad parameters pods=%d rate=%d for=%v", pods, rate, err))
	}
	total := int(float64(rate) * dur.Seconds())
	names := make([]string, pods)
	for i := range names {
		names[i] = podName(i)
	}
	jobs := make(chan int, total)
	var patched, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for k := range jobs {
				body := fmt.Sprintf(`{"metadata":{"annotations":{%q:"%d"}}}`, writtenAtAnnotation, time.Now().UnixNano())
				_, err := cs.CoreV1().Pods(ns).Patch(context.Background(), names[k%pods], types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: "bench-churn"})
				if err != nil {
					if failed.Add(1) == 1 {
						errMu.Lock()
						firstErr = err
						errMu.Unlock()
					}
					continue
				}
				patched.Add(1)
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / float64(rate))
	for k := range total {
		time.Sleep(time.Until(start.Add(time.Duration(k) * interval)))
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if failed.Load() > 0 {
		errMu.Lock()
		defer errMu.Unlock()
		return fail(fmt.Errorf("%d patches failed, first: %v", failed.Load(), firstErr))
	}
	fmt.Printf("patched %d\n", patched.Load())
	return 0
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
