package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/shard"
)

// demoServerArgs turn on server-side sharded list and watch (KEP-5866)
// on the demo's local control plane, which --replicas uses, and with cbor
// CBOR serving of custom resources (alpha in v1.36; it also makes CBOR
// their storage format). One --feature-gates flag carries both.
func demoServerArgs(cbor bool) []string {
	gates := "ShardedListAndWatch=true"
	if cbor {
		gates += ",CBORServingAndStorage=true"
	}
	return []string{"--feature-gates=" + gates}
}

// replica is one operator replica of `skiff demo --replicas N`: its own
// manager, client, informers and shard member.
type replica struct {
	id      string
	mgr     *manager.Manager
	ctrl    *controller.Controller[controller.Request]
	counter client.RequestCounter
	done    chan error
}

// runReplicas runs d.replicas Foo operators in this process, sharing the
// Foos through Leases in ns, and shows each one's share live.
func runReplicas(ctx context.Context, d demoConfig, cfg *rest.Config, ns, where string, stdout, stderr io.Writer, start time.Time) error {
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build the scheme: %w", err)
	}
	if err := foo.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build the scheme: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reps := make([]*replica, d.replicas)
	runCtx, stopAll := context.WithCancel(ctx)
	defer func() {
		stopAll()
		for _, r := range reps {
			if r != nil && r.done != nil {
				<-r.done
			}
		}
	}()
	for i := range reps {
		r := &replica{id: fmt.Sprintf("replica-%d", i+1)}
		addr := "-"
		if i == 0 {
			addr = d.addr
		}
		mgr, err := manager.New(manager.Options{Config: r.counter.Install(rest.CopyConfig(cfg)), Scheme: scheme, Addr: addr, Logger: logger.With("replica", r.id),
			KeepKlog: i > 0, EnableReplay: true,
			Shard: &shard.Options{Namespace: ns, Group: "skiff-demo", Identity: r.id, Logger: logger.With("replica", r.id)}})
		if err != nil {
			return err
		}
		r.mgr = mgr
		if r.ctrl, err = foo.Setup(mgr, controller.Options[controller.Request]{MaxWorkers: d.maxWorkers, MaxFailures: 10, Logger: logger}); err != nil {
			return fmt.Errorf("set up Foo operator %s on %s: %w", r.id, where, err)
		}
		r.done = make(chan error, 1)
		go func() { r.done <- mgr.Start(runCtx) }()
		reps[i] = r
	}
	fmt.Fprintf(stdout, "skiff demo: %d replicas share the Foos (Leases skiff-demo-* in %s)\n", d.replicas, ns)

	// An unsharded observer: the demo's view of convergence, with its own
	// informers (each replica caches only its share).
	obsFactory := cache.NewFactory()
	obs, err := client.New(cfg, client.Options{Scheme: scheme, Factory: obsFactory})
	if err != nil {
		return err
	}
	foos, err := client.InformerFor[*foo.Foo](obs, cache.Scope{Namespace: ns})
	if err != nil {
		return err
	}
	cms, err := client.InformerFor[*corev1.ConfigMap](obs, cache.Scope{Namespace: ns, LabelSelector: foo.ManagedByLabel})
	if err != nil {
		return err
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	obsDone := make(chan struct{})
	go func() { obsFactory.Run(obsCtx); close(obsDone) }()
	defer func() { stopObs(); <-obsDone }()

	want, err := makeLoad(ctx, cfg, scheme, ns, d, stdout)
	if err != nil {
		return err
	}
	if a := reps[0].mgr.Addr(); a != "" {
		fmt.Fprintf(stdout, "skiff demo: %s's live state (with its shard) at http://%s/debug/skiff\n", reps[0].id, a)
	}
	op := &operator{Foos: foos, ConfigMaps: cms}
	total := len(want.messages)
	deadline := time.Now().Add(d.timeout)
	lastPrint := time.Time{}
	for {
		done := convergedCount(op, want)
		finished := done == total
		if now := time.Now(); finished || now.Sub(lastPrint) >= 2*time.Second {
			fmt.Fprintf(stdout, "converged %d/%d · %s\n", done, total, shares(reps))
			lastPrint = now
		}
		if finished {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not converge within %v: %d of %d Foos converged", d.timeout, done, total)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %d of %d Foos converged", done, total)
		case <-time.After(250 * time.Millisecond):
		}
	}
	converged := time.Since(want.start)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(stdout, "\nskiff demo: %d replicas converged in %.2fs after the first create (whole run %.1fs)\n", d.replicas, converged.Seconds(), time.Since(start).Seconds())
	var dead int
	for _, r := range reps {
		st := r.ctrl.Stats()
		sh := r.mgr.Shard().State()
		fooCache := 0
		if inf, err := client.InformerFor[*foo.Foo](r.mgr.Client(), cache.Scope{}); err == nil {
			fooCache = inf.Store().Len()
		}
		mode := "client-side filter"
		if sh.ServerSide {
			mode = "server-side shard selector"
		}
		fmt.Fprintf(stdout, "  %s: owns %.3f of the hash space (%d ranges, %s) · caches %d Foos · %d reconciles (errors %d) · %d API requests · hand-offs %d\n",
			r.id, sh.OwnedFraction, len(sh.Ranges), mode, fooCache, st.Reconciles, st.Errors, r.counter.Total(), sh.Handoffs)
		dead += st.DeadLetters
	}
	fmt.Fprintf(stdout, "  memory: Go heap in use %.1f MiB after GC (%d replicas, an observer and the load generator in one process)\n", float64(ms.HeapInuse)/(1<<20), d.replicas)
	if dead > 0 {
		return fmt.Errorf("%d dead letters", dead)
	}
	return nil
}

// shares is the live line's per-replica part.
func shares(reps []*replica) string {
	parts := make([]string, 0, len(reps))
	for _, r := range reps {
		st := r.ctrl.Stats()
		sh := r.mgr.Shard().State()
		state := ""
		if !sh.Active {
			state = " (hand-off)"
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%% %d reconciles q %d%s", r.id, 100*sh.OwnedFraction, st.Reconciles, r.ctrl.QueueDepth(), state))
	}
	return strings.Join(parts, " · ")
}
