package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

type demoConfig struct {
	kubeconfig string
	objects    int
	churn      float64
	deletes    float64
	// maxWorkers caps the operator's adaptive pool: 8 by default, which
	// with loadConcurrency's 4 keeps the local control plane's Foo watch
	// terminations at 0 (see loadBulk); the operator library's own default
	// is unchanged.
	maxWorkers int
	// loadConcurrency caps the load generator's writes in flight (see
	// loadBulk).
	loadConcurrency int
	timeout         time.Duration
	addr            string
	keep            bool
	replicas        int
	cbor            bool
}

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	d, err := parseDemo(args, stderr)
	if err != nil {
		return err
	}
	return runDemo(ctx, d, stdout, stderr)
}

// parseDemo parses and checks demo's flags.
func parseDemo(args []string, stderr io.Writer) (demoConfig, error) {
	fs := flag.NewFlagSet("skiff demo", flag.ContinueOnError)
	var d demoConfig
	fs.StringVar(&d.kubeconfig, "kubeconfig", "", "run against this cluster (default: start a local control plane)")
	fs.IntVar(&d.objects, "objects", 2000, "how many Foo objects to create")
	fs.Float64Var(&d.churn, "churn", 0.2, "fraction of Foos whose spec is changed after creation")
	fs.Float64Var(&d.deletes, "deletes", 0.05, "fraction of Foos deleted after creation")
	fs.IntVar(&d.maxWorkers, "max-workers", 8, "upper bound of the adaptive worker pool")
	fs.IntVar(&d.loadConcurrency, "load-concurrency", 4, "most writes the load generator has in flight at once")
	fs.DurationVar(&d.timeout, "timeout", 5*time.Minute, "give up if not converged by then")
	fs.StringVar(&d.addr, "addr", "127.0.0.1:0", `metrics, health and /debug/skiff address ("-" for none)`)
	fs.BoolVar(&d.keep, "keep", false, "keep the demo namespace (with --kubeconfig)")
	fs.BoolVar(&d.cbor, "cbor", false, "serve custom resources as CBOR on the local control plane (feature gate CBORServingAndStorage); the Foo informer uses CBOR whenever the server serves it")
	fs.IntVar(&d.replicas, "replicas", 1, "run this many operator replicas in this process, sharing the Foos active-active (package shard)")
	if err := parse(fs, args, stderr); err != nil {
		return d, err
	}
	switch {
	case d.objects < 1:
		return d, usageError{fmt.Errorf("--objects must be at least 1, got %d", d.objects)}
	case d.churn < 0 || d.churn > 1 || d.deletes < 0 || d.deletes > 1:
		return d, usageError{fmt.Errorf("--churn and --deletes are fractions in [0, 1], got %v and %v", d.churn, d.deletes)}
	case d.maxWorkers < 1:
		return d, usageError{fmt.Errorf("--max-workers must be at least 1, got %d", d.maxWorkers)}
	case d.loadConcurrency < 1:
		return d, usageError{fmt.Errorf("--load-concurrency must be at least 1, got %d", d.loadConcurrency)}
	case d.replicas < 1:
		return d, usageError{fmt.Errorf("--replicas must be at least 1, got %d", d.replicas)}
	case d.timeout <= 0:
		return d, usageError{fmt.Errorf("--timeout must be positive, got %v", d.timeout)}
	}
	return d, nil
}

func runDemo(ctx context.Context, d demoConfig, stdout, stderr io.Writer) error {
	start := time.Now()
	var cfg *rest.Config
	where := ""
	if d.kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", d.kubeconfig)
		if err != nil {
			return fmt.Errorf("load --kubeconfig %s: %w", d.kubeconfig, err)
		}
		cfg, where = c, c.Host
	} else {
		fmt.Fprintln(stdout, "skiff demo: starting a local control plane (etcd + kube-apiserver)")
		env, err := testenv.Start(ctx, testenv.Options{Build: testenv.BuildOptions{Progress: stderr}, APIServerArgs: demoServerArgs(d.cbor)})
		if err != nil {
			return err
		}
		defer env.Stop()
		cfg, where = env.Config(), env.Server()
		fmt.Fprintf(stdout, "skiff demo: control plane ready in %.1fs at %s\n", env.ReadyIn().Seconds(), where)
	}
	cfg, setupCfg := demoClientConfigs(cfg)

	setupCtx, cancelSetup := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSetup()
	if _, err := testenv.ApplyCRDs(setupCtx, setupCfg, foo.CRD); err != nil {
		return fmt.Errorf("install the Foo CRD on %s: %w", where, err)
	}
	load, err := kubernetes.NewForConfig(setupCfg)
	if err != nil {
		return err
	}
	ns, err := testenv.CreateNamespace(setupCtx, load, "skiff-demo")
	if err != nil {
		return fmt.Errorf("on %s: %w", where, err)
	}
	if d.kubeconfig != "" && !d.keep {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			load.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}()
	}

	if d.replicas > 1 {
		return runReplicas(ctx, d, cfg, ns, where, stdout, stderr, start)
	}
	// The operator, exactly as examples/foo wires it, with its API calls counted.
	var counter client.RequestCounter
	opCfg := counter.Install(rest.CopyConfig(cfg))
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build the scheme: %w", err)
	}
	if err := foo.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build the scheme: %w", err)
	}
	mgr, err := manager.New(manager.Options{Config: opCfg, Scheme: scheme, Addr: d.addr, Logger: logger, EnableReplay: true}) // loopback by default; the replay form is CSRF-guarded
	if err != nil {
		return err
	}
	ctrl, err := foo.Setup(mgr, controller.Options[controller.Request]{
		MaxWorkers: d.maxWorkers, MaxFailures: 10, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("set up the Foo operator on %s: %w", where, err)
	}
	op, err := operatorView(mgr, ctrl)
	if err != nil {
		return fmt.Errorf("on %s: %w", where, err)
	}
	health := startWatchHealth(setupCtx, load.Discovery().RESTClient(), foo.GVR.GroupResource())
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	defer func() { stopMgr(); <-mgrDone }()

	want, err := makeLoad(ctx, cfg, scheme, ns, d, stdout)
	if err != nil {
		return err
	}
	if a := mgr.Addr(); a != "" {
		fmt.Fprintf(stdout, "skiff demo: live state at http://%s/debug/skiff (metrics at /metrics)\n", a)
	}
	res, err := watchConvergence(ctx, mgr, op, want, d.timeout, stdout)
	if err != nil {
		return err
	}
	terminated, terr := health.during(ctx)
	summarize(stdout, d, res, &counter, time.Since(start))
	printWatches(stdout, []watchLine{
		{op.Foos.Name(), op.Foos.Stats()},
		{op.ConfigMaps.Name(), op.ConfigMaps.Stats()},
	}, foo.GVR.GroupResource(), terminated, terr)
	if res.deadLetters > 0 {
		return fmt.Errorf("%d dead letters (see /debug/skiff)", res.deadLetters)
	}
	return nil
}

// demoClientConfigs returns the config of the operator and the load
// generator, and the config of the demo's own setup calls. Both have
// Skiff's default of no client-side throttling (the server's priority and
// fairness is the limiter). Only setup gets an overall timeout; run has
// none, whatever cfg had: a rest.Config's Timeout becomes its http.Client's,
// which also cuts every watch (with 30s it cut the operator's watches every
// 30s, counted as watch restarts in runs that long). The operator's and the
// load's clients time each non-watch request themselves (client.Tune).
func demoClientConfigs(cfg *rest.Config) (run, setup *rest.Config) {
	run = rest.CopyConfig(cfg)
	run.QPS, run.Burst = -1, 0
	run.Timeout = 0
	setup = rest.CopyConfig(run)
	setup.Timeout = 30 * time.Second
	return run, setup
}

// expected is the final state the load generator asked for.
type expected struct {
	ns       string
	start    time.Time         // when the first create was sent
	messages map[string]string // name → spec.message; absent: deleted
	created  int
	changed  int
	deleted  int
}

// loadBulk runs the load generator's writes n at once from the start
// (--load-concurrency, default 4), at most n, and lets client.Bulk lower
// that when latency says the server queues. More does not make the local
// control plane faster: on two cores shared with the operator it is
// CPU-bound, and every extra write in flight is one more runnable goroutine
// ahead of the API server's per-watch goroutines, which then fall more than
// their 10-event buffers behind and are terminated. With 32 writes (Bulk
// could go to 64) and 32 workers, 1–11 Foo watchers were terminated per
// 2000-Foo run; with 4 writes and 8 workers none, at 2000 and at 10000
// Foos (README, "What the load is").
func loadBulk(n int) client.BulkOptions {
	return client.BulkOptions{InitialConcurrency: n, MaxConcurrency: n}
}

// makeLoad creates d.objects Foos, then changes d.churn of them and deletes
// d.deletes of them, each step with client.Bulk (at most d.loadConcurrency
// at once, see loadBulk), through its own client: cfg is not the
// operator's counted config, so the load's requests are not counted.
func makeLoad(ctx context.Context, cfg *rest.Config, scheme *kruntime.Scheme, ns string, d demoConfig, stdout io.Writer) (*expected, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("build the load generator's client: %w", err)
	}
	want := &expected{ns: ns, messages: make(map[string]string, d.objects)}
	foos := make([]*foo.Foo, d.objects)
	for i := range foos {
		name := fmt.Sprintf("foo-%05d", i)
		want.messages[name] = "hello from " + name
		foos[i] = &foo.Foo{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       foo.FooSpec{Message: want.messages[name]},
		}
	}
	fmt.Fprintf(stdout, "skiff demo: creating %d Foos in namespace %s\n", d.objects, ns)
	want.start = time.Now()
	create := func(ctx context.Context, f *foo.Foo) error { return c.Create(ctx, f) }
	if err := client.Bulk(ctx, foos, create, loadBulk(d.loadConcurrency)).Err(); err != nil {
		return nil, fmt.Errorf("create Foos: %w", err)
	}
	want.created = d.objects
	rng := rand.New(rand.NewPCG(1, 2))
	perm := rng.Perm(d.objects)
	nChange := int(d.churn * float64(d.objects))
	nDelete := min(int(d.deletes*float64(d.objects)), d.objects-nChange)
	var change, del []*foo.Foo
	for _, i := range perm[:nChange] {
		change = append(change, foos[i])
		want.messages[foos[i].Name] = "changed: " + foos[i].Name
	}
	for _, i := range perm[nChange : nChange+nDelete] {
		del = append(del, foos[i])
		delete(want.messages, foos[i].Name)
	}
	fmt.Fprintf(stdout, "skiff demo: churn: changing %d and deleting %d Foos\n", len(change), len(del))
	patch := func(ctx context.Context, f *foo.Foo) error {
		data := fmt.Appendf(nil, `{"spec":{"message":%q}}`, want.messages[f.Name])
		return c.Patch(ctx, f, client.RawPatch(types.MergePatchType, data))
	}
	if err := client.Bulk(ctx, change, patch, loadBulk(d.loadConcurrency)).Err(); err != nil {
		return nil, fmt.Errorf("change Foos: %w", err)
	}
	remove := func(ctx context.Context, f *foo.Foo) error { return c.Delete(ctx, f) }
	if err := client.Bulk(ctx, del, remove, loadBulk(d.loadConcurrency)).Err(); err != nil {
		return nil, fmt.Errorf("delete Foos: %w", err)
	}
	want.changed, want.deleted = len(change), len(del)
	return want, nil
}

type demoResult struct {
	converged   time.Duration // from the first create to the last converged Foo
	reconciles  int64
	errors      int64
	deadLetters int
	peakWorkers int
	p99         time.Duration
}

// operator is what the demo watches: the Foo controller and the manager's
// informers it reads from (the same ones, not a second watch).
type operator struct {
	Controller *controller.Controller[controller.Request]
	Foos       *cache.Informer[*foo.Foo]
	ConfigMaps *cache.Informer[*corev1.ConfigMap]
}

// operatorView returns the manager's informers for Foos and for the
// ConfigMaps foo.Setup watches (its scope: the managed-by label).
func operatorView(mgr *manager.Manager, c *controller.Controller[controller.Request]) (*operator, error) {
	foos, err := client.InformerFor[*foo.Foo](mgr.Client(), cache.Scope{})
	if err != nil {
		return nil, fmt.Errorf("the Foo informer: %w", err)
	}
	cms, err := client.InformerFor[*corev1.ConfigMap](mgr.Client(), cache.Scope{LabelSelector: foo.ManagedByLabel})
	if err != nil {
		return nil, fmt.Errorf("the ConfigMap informer: %w", err)
	}
	return &operator{Controller: c, Foos: foos, ConfigMaps: cms}, nil
}

// watchConvergence prints a progress line until every expected Foo is
// converged in the operator's caches: status at its generation, the child
// ConfigMap holding the expected message, deleted Foos gone.
func watchConvergence(ctx context.Context, mgr *manager.Manager, op *operator, want *expected, timeout time.Duration, stdout io.Writer) (demoResult, error) {
	var res demoResult
	tty := isTerminal(stdout)
	begin := time.Now()
	deadline := begin.Add(timeout)
	lastReconciles, lastTick := op.Controller.Stats().Reconciles, begin
	lastPrint := time.Time{}
	total := len(want.messages)
	for {
		done := convergedCount(op, want)
		st := op.Controller.Stats()
		res.peakWorkers = max(res.peakWorkers, st.Workers)
		now := time.Now()
		rate := float64(st.Reconciles-lastReconciles) / now.Sub(lastTick).Seconds()
		lastReconciles, lastTick = st.Reconciles, now
		p99 := reconcileQuantile(mgr, 0.99)
		line := fmt.Sprintf("converged %d/%d · %.0f reconciles/s · queue %d · workers %d · p99 %s · dead letters %d",
			done, total, rate, op.Controller.QueueDepth(), st.Workers, p99.Round(100*time.Microsecond), st.DeadLetters)
		finished := done == total
		switch {
		case tty:
			fmt.Fprintf(stdout, "\r\033[K%s", line)
			if finished {
				fmt.Fprintln(stdout)
			}
		case finished || now.Sub(lastPrint) >= 2*time.Second:
			fmt.Fprintln(stdout, line)
			lastPrint = now
		}
		if finished {
			res.converged = time.Since(want.start)
			res.reconciles, res.errors, res.deadLetters, res.p99 = st.Reconciles, st.Errors, st.DeadLetters, p99
			return res, nil
		}
		if st.DeadLetters > 0 && op.Controller.QueueDepth() == 0 && st.Active == 0 && done+st.DeadLetters >= total {
			if tty {
				fmt.Fprintln(stdout)
			}
			return res, fmt.Errorf("did not converge: %d Foos are dead letters", st.DeadLetters)
		}
		if now.After(deadline) {
			if tty {
				fmt.Fprintln(stdout)
			}
			return res, fmt.Errorf("did not converge within %v: %d of %d Foos converged", timeout, done, total)
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(stdout)
			}
			return res, fmt.Errorf("interrupted: %d of %d Foos converged", done, total)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func convergedCount(op *operator, want *expected) int {
	n := 0
	for name, msg := range want.messages {
		f, ok := op.Foos.Lister().Get(want.ns, name)
		if !ok || !foo.Converged(f) {
			continue
		}
		if f.Spec.Message != msg {
			continue
		}
		cm, ok := op.ConfigMaps.Lister().Get(want.ns, foo.ConfigMapName(name))
		if ok && cm.Data["message"] == msg {
			n++
		}
	}
	return n
}

// reconcileQuantile estimates a quantile of controller_runtime_reconcile_time_seconds
// from its histogram buckets (linear within a bucket, as PromQL does).
func reconcileQuantile(mgr *manager.Manager, q float64) time.Duration {
	mfs, err := mgr.Registry().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_time_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			total := float64(h.GetSampleCount())
			if total == 0 {
				return 0
			}
			rank := q * total
			prevBound, prevCount := 0.0, 0.0
			for _, b := range h.GetBucket() {
				c := float64(b.GetCumulativeCount())
				if c >= rank {
					frac := 0.0
					if c > prevCount {
						frac = (rank - prevCount) / (c - prevCount)
					}
					return time.Duration((prevBound + frac*(b.GetUpperBound()-prevBound)) * float64(time.Second))
				}
				prevBound, prevCount = b.GetUpperBound(), c
			}
			return time.Duration(prevBound * float64(time.Second))
		}
	}
	return 0
}

func summarize(w io.Writer, d demoConfig, res demoResult, counter *client.RequestCounter, wall time.Duration) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "\nskiff demo: converged in %.2fs after the first create (whole run %.1fs)\n", res.converged.Seconds(), wall.Seconds())
	fmt.Fprintf(w, "  Foos:        %d created, %d changed, %d deleted\n", d.objects, int(d.churn*float64(d.objects)), int(d.deletes*float64(d.objects)))
	fmt.Fprintf(w, "  reconciles:  %d (errors %d, dead letters %d), p99 %s, peak workers %d of max %d\n",
		res.reconciles, res.errors, res.deadLetters, res.p99.Round(100*time.Microsecond), res.peakWorkers, d.maxWorkers)
	fmt.Fprintf(w, "  API requests by the operator: %d\n", counter.Total())
	lines := counter.Sorted()
	slices.SortStableFunc(lines, func(a, b client.RequestCount) int { return int(b.N - a.N) })
	for _, l := range lines {
		fmt.Fprintf(w, "    %-8s %-36s %6d\n", l.Verb, l.Resource, l.N)
	}
	fmt.Fprintf(w, "  memory:      Go heap in use %.1f MiB after GC (operator, caches and load generator in one process)\n", float64(ms.HeapInuse)/(1<<20))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
