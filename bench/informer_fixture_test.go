package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	skiffcache "github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// TestMain doubles as the churn writer of BenchmarkInformerChurn: the
// benchmark re-executes this binary with churnWriterEnv set, so the
// writer's CPU is not counted in the informer's process.
func TestMain(m *testing.M) {
	if os.Getenv(churnWriterEnv) != "" {
		os.Exit(runChurnWriter())
	}
	if os.Getenv(w1LoadgenEnv) != "" {
		os.Exit(runW1Loadgen())
	}
	// Both contenders log relists and watch errors; neither is measured on
	// its logging, so both are silenced alike.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	code := m.Run()
	stopInformerFixture()
	os.Exit(code)
}

// informerSize is the scale of the informer scenarios (SKIFF_BENCH_SIZE).
type informerSize struct {
	pods       int
	churnRates []int         // patches per second, one sub-benchmark each (I3)
	churnFor   time.Duration // how long the writer patches (I3)
	relistWait time.Duration // sampling after the relist stream ended (I4)
}

func informerSizes() informerSize {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return informerSize{pods: 10000, churnRates: []int{200, 500}, churnFor: 20 * time.Second, relistWait: 5 * time.Second}
	}
	return informerSize{pods: 2000, churnRates: []int{200, 500}, churnFor: 5 * time.Second, relistWait: 2 * time.Second}
}

// informerFixture is one control plane per test process with one namespace
// holding the benchmark's pods. The pods stay Pending (no scheduler).
type informerFixture struct {
	env  *testenv.Env
	cfg  *rest.Config
	ns   string
	size informerSize
}

var (
	fixtureOnce sync.Once
	fixture     *informerFixture
	fixtureErr  error
)

// fixtureFor starts the control plane and creates the pods on first use.
func fixtureFor(b *testing.B) *informerFixture {
	b.Helper()
	fixtureOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		fixture, fixtureErr = startInformerFixture(ctx, informerSizes())
		if fixtureErr == nil {
			logFixture(ctx, b, fixture)
		}
	})
	if fixtureErr != nil {
		b.Fatalf("informer fixture: %v", fixtureErr)
	}
	return fixture
}

func startInformerFixture(ctx context.Context, size informerSize) (*informerFixture, error) {
	env, err := testenv.Start(ctx, testenv.Options{
		// The defaults (400/200) queue the parallel creates; no controller
		// manager: its garbage collector would run informers of its own
		// on the same two cores while contenders are measured.
		APIServerArgs: []string{"--max-requests-inflight=800", "--max-mutating-requests-inflight=400"},
		Controllers:   "none",
	})
	if err != nil {
		return nil, err
	}
	f := &informerFixture{env: env, cfg: env.Config(), size: size}
	f.cfg.QPS = -1
	cs, err := kubernetes.NewForConfig(protobufConfig(f.cfg))
	if err != nil {
		env.Stop()
		return nil, err
	}
	if f.ns, err = testenv.CreateNamespace(ctx, cs, "informer-bench"); err != nil {
		env.Stop()
		return nil, err
	}
	if err := createPods(ctx, cs, f.ns, size.pods); err != nil {
		env.Stop()
		return nil, err
	}
	return f, nil
}

func stopInformerFixture() {
	if fixture != nil {
		fixture.env.Stop()
	}
}

// createPods creates n pods from 32 goroutines (no client-side throttling).
func createPods(ctx context.Context, cs kubernetes.Interface, ns string, n int) error {
	const workers = 32
	idx := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range idx {
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, benchPod(i), metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
					errs <- fmt.Errorf("create pod %d: %w", i, err)
					return
				}
			}
		})
	}
	var err error
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
	return err
}

// logFixture reports the pods' wire sizes once: the mean JSON size as
// stored (managedFields included) and the protobuf size after
// DefaultTransform, whose sum is the lower bound of any cache of them.
func logFixture(ctx context.Context, b *testing.B, f *informerFixture) {
	jsonCS, err := kubernetes.NewForConfig(f.cfg)
	if err != nil {
		return
	}
	raw, err := jsonCS.CoreV1().RESTClient().Get().Namespace(f.ns).Resource("pods").Param("limit", "200").DoRaw(ctx)
	if err != nil {
		return
	}
	var l struct{ Items []json.RawMessage }
	if json.Unmarshal(raw, &l) != nil || len(l.Items) == 0 {
		return
	}
	jsonBytes := 0
	for _, it := range l.Items {
		jsonBytes += len(it)
	}
	pbCS, _ := kubernetes.NewForConfig(protobufConfig(f.cfg))
	pods, err := pbCS.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	full, stripped := 0, 0
	for i := range pods.Items {
		p := &pods.Items[i]
		full += p.Size()
		stripped += skiffcache.DefaultTransform(p).Size()
	}
	b.Logf("informer fixture: %d pods in %s; JSON %.0f B/pod (sample of %d); protobuf %.0f B/pod, stripped %.0f B/pod, sum stripped %.1f MiB",
		len(pods.Items), f.ns, float64(jsonBytes)/float64(len(l.Items)), len(l.Items),
		float64(full)/float64(len(pods.Items)), float64(stripped)/float64(len(pods.Items)), float64(stripped)/(1<<20))
	logDecodeCost(b, l.Items)
}

// logDecodeCost reports the client-side decode cost of one pod as JSON and
// as protobuf (the same sample of stored pods, full objects), single core.
func logDecodeCost(b *testing.B, items []json.RawMessage) {
	pb, ok := kruntime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), "application/vnd.kubernetes.protobuf")
	if !ok {
		return
	}
	var pbItems [][]byte
	for _, it := range items {
		var p corev1.Pod
		if err := json.Unmarshal(it, &p); err != nil {
			return
		}
		p.APIVersion, p.Kind = "v1", "Pod"
		raw, err := kruntime.Encode(pb.Serializer, &p)
		if err != nil {
			return
		}
		pbItems = append(pbItems, raw)
	}
	dec := scheme.Codecs.UniversalDeserializer()
	podGVK := corev1.SchemeGroupVersion.WithKind("Pod") // list items carry no kind
	perPod := func(raws [][]byte) time.Duration {
		const reps = 5
		start := time.Now()
		for range reps {
			for _, raw := range raws {
				if _, _, err := dec.Decode(raw, &podGVK, nil); err != nil {
					b.Logf("decode cost: %v", err)
					return 0
				}
			}
		}
		return time.Since(start) / time.Duration(reps*len(raws))
	}
	jsonRaws := make([][]byte, len(items))
	for i, it := range items {
		jsonRaws[i] = it
	}
	j, p := perPod(jsonRaws), perPod(pbItems)
	if j == 0 || p == 0 {
		return
	}
	b.Logf("decode one pod: JSON %v, protobuf %v (%.1fx)", j, p, float64(j)/float64(p))
}

func protobufConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return c
}

// benchPod is pod i of the fixture: deterministic, shaped like a
// Deployment's pod applied with kubectl (labels, annotations including
// last-applied-configuration, three containers with env, resources, probes
// and mounts). The server adds managedFields.
func benchPod(i int) *corev1.Pod {
	app, hash := podApp(i), podHash(i)
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: podName(i),
			Labels: map[string]string{
				"app.kubernetes.io/name":      app,
				"app.kubernetes.io/instance":  app + "-prod",
				"app.kubernetes.io/version":   fmt.Sprintf("1.%d.%d", i%7, i%13),
				"app.kubernetes.io/component": []string{"api", "worker", "frontend"}[i%3],
				"app.kubernetes.io/part-of":   "shop",
				"pod-template-hash":           hash,
				"team":                        []string{"payments", "search", "checkout", "catalog"}[i%4],
			},
			Annotations: map[string]string{
				"prometheus.io/scrape":       "true",
				"prometheus.io/port":         "9090",
				"checksum/config":            fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, uint64(i)^0xdeadbeefcafe),
				"kubernetes.io/change-cause": fmt.Sprintf("kubectl set image deployment/%s app=registry.example.com/%s:1.%d", app, app, i%7),
				"sidecar.example.com/inject": "enabled",
			},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				benchContainer("app", "registry.example.com/"+app+":1."+fmt.Sprint(i%7), 8080, i, 5),
				sidecarContainer("proxy", "registry.example.com/envoy:v1.31.2", 15001, i),
				sidecarContainer("log-shipper", "registry.example.com/fluent-bit:3.1", 2020, i),
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: app + "-tls"}}},
			},
			NodeSelector:                  map[string]string{"kubernetes.io/os": "linux", "node.example.com/pool": "general"},
			Tolerations:                   []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "shop", Effect: corev1.TaintEffectNoSchedule}},
			TerminationGracePeriodSeconds: ptr(int64(30)),
			PriorityClassName:             "",
		},
	}
	spec, _ := json.Marshal(p)
	p.Annotations[skiffcache.LastAppliedAnnotation] = string(spec)
	return p
}

func podApp(i int) string  { return fmt.Sprintf("svc-%03d", i%97) }
func podHash(i int) string { return fmt.Sprintf("%08x", uint32(i/20)*2654435761) }

// podName is the name of benchPod(i).
func podName(i int) string { return fmt.Sprintf("%s-%s-%05d", podApp(i), podHash(i)[:6], i) }

func benchContainer(name, image string, port int32, i, envs int) corev1.Container {
	c := corev1.Container{
		Name:  name,
		Image: image,
		Args:  []string{"--port=" + fmt.Sprint(port), "--log-level=info", "--config=/etc/" + name + "/config.yaml"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090 + port%7, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(fmt.Sprintf("%dm", 100+i%5*50)), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		LivenessProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port)}}, InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3},
		ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(port)}}, PeriodSeconds: 5, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
		VolumeMounts:    []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name, ReadOnly: true}, {Name: "tmp", MountPath: "/tmp"}},
		ImagePullPolicy: corev1.PullIfNotPresent,
	}
	for e := range envs {
		c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("%s_SETTING_%02d", name, e), Value: fmt.Sprintf("value-%d-%d", i%31, e)})
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
	return c
}

// sidecarContainer is a smaller container: one port, one env var, a
// readiness probe only.
func sidecarContainer(name, image string, port int32, i int) corev1.Container {
	c := benchContainer(name, image, port, i, 1)
	c.Args = c.Args[:1]
	c.Ports = c.Ports[:1]
	c.VolumeMounts = c.VolumeMounts[1:]
	c.LivenessProbe = nil
	c.Env = c.Env[:1]
	return c
}

func ptr[T any](v T) *T { return &v }

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// serverCPUSeconds is the control plane process's user+system CPU time so
// far (etcd and kube-apiserver; counted in 10 ms ticks).
func serverCPUSeconds(b *testing.B, env *testenv.Env) float64 {
	b.Helper()
	d, err := env.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	return d.Seconds()
}

// heapAfterGC returns heap in use and live heap bytes after two collections.
func heapAfterGC() (inuse, live uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.HeapAlloc
}

// stopReleased stops r, an informer started when the live heap was base
// (heapAfterGC) and that had grown it by added bytes, and waits (up to
// 15 s, polling every 100 ms) until the live heap is back within
// max(256 KiB, added/10) of base. A stopped informer's cache is sometimes
// still reachable for a moment after stop returns (seen once for the whole
// 2000-pod cache, for up to 10 s; its holder was not found), and a
// baseline taken then made the next run's heap look that much smaller,
// even negative. It logs if the heap does not come back.
func stopReleased(b *testing.B, r *runningInformer, base, added uint64) {
	b.Helper()
	r.stop()
	margin := max(256<<10, added/10)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, live := heapAfterGC()
		if live <= base+margin {
			return
		}
		if time.Now().After(deadline) {
			b.Logf("live heap still %d bytes over its level before the informer started, 15 s after it stopped", live-base)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heapSampler reads heap figures from runtime/metrics (no stop-the-world)
// every few milliseconds and keeps the peaks.
type heapSampler struct {
	stop     chan struct{}
	done     chan struct{}
	peakHeap uint64 // live objects and garbage not yet swept
	peakLive uint64 // live heap as marked by the last GC
	samples  int
}

func startHeapSampler(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			metrics.Read(ms)
			s.peakHeap = max(s.peakHeap, ms[0].Value.Uint64())
			s.peakLive = max(s.peakLive, ms[1].Value.Uint64())
			s.samples++
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) finish() { close(s.stop); <-s.done }

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
