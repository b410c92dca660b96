package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
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

// I3: with every pod cached and an event handler registered, a writer in a
// separate process patches pods at a fixed rate (an annotation holding the
// send time); the handler records now − send time. cpu-s/event is this
// process's CPU (informer, handler, harness; not the writer's, not the
// control plane's) from the first patch until the last event arrived,
// divided by the events received.
func BenchmarkInformerChurn(b *testing.B) {
	forEachInformerImpl(b, func(b *testing.B, f *informerFixture, impl informerImpl) {
		var lats []float64 // ms
		var cpuS float64
		var events, writes int
		for range b.N {
			l, cpu, w, err := churnOnce(f, impl)
			if err != nil {
				b.Fatal(err)
			}
			lats = append(lats, l...)
			cpuS += cpu
			events += len(l)
			writes += w
		}
		slices.Sort(lats)
		b.ReportMetric(quantile(lats, 0.50), "p50-ms")
		b.ReportMetric(quantile(lats, 0.99), "p99-ms")
		b.ReportMetric(cpuS/float64(events), "cpu-s/event")
		b.ReportMetric(float64(writes)/float64(b.N)/f.size.churnFor.Seconds(), "writes/s")
	})
}

func churnOnce(f *informerFixture, impl informerImpl) (lats []float64, cpu float64, writes int, err error) {
	var mu sync.Mutex
	var adds atomic.Int64
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
		return nil, 0, 0, err
	}
	defer r.stop()
	if !waitFor(informerTimeout, func() bool { return adds.Load() == int64(f.size.pods) }) {
		return nil, 0, 0, fmt.Errorf("%s: handler got %d adds, want %d", impl.name, adds.Load(), f.size.pods)
	}
	c0 := cpuSeconds()
	writes, err = runWriterProcess(f)
	if err != nil {
		return nil, 0, 0, err
	}
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(lats) }
	if !waitFor(30*time.Second, func() bool { return received() >= writes }) {
		return nil, 0, 0, fmt.Errorf("%s: handler got %d of %d patches", impl.name, received(), writes)
	}
	cpu = cpuSeconds() - c0
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(lats), cpu, writes, nil
}

// runWriterProcess runs this test binary as the churn writer and returns
// how many patches it applied.
func runWriterProcess(f *informerFixture) (int, error) {
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
		fmt.Sprintf("CHURN_RATE=%d", f.size.churnRate),
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
