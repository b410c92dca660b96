package integration

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/internal/doctor"
	"github.com/skiffkit/skiff/testenv"
)

// serverTerminatedWatchers reads apiserver_terminated_watchers_total for a
// core resource from the server's /metrics (absent: zero).
func serverTerminatedWatchers(t *testing.T, ctx context.Context, cs kubernetes.Interface, resource string) float64 {
	t.Helper()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("read the API server's /metrics: %v", err)
	}
	m, err := doctor.ParseMetrics(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := m.Sum("apiserver_terminated_watchers_total", "resource", map[string]string{"group": ""})
	return sums[resource]
}

// A handler stuck for the whole of a fast write burst must not cost a
// watch: the informer keeps reading the watch into its store (so the API
// server never finds the watcher's buffer full and never closes it for
// unresponsiveness), and when the handler is released it catches up to the
// current state of every key from its merged backlog.
//
// The burst is sized so that a reader that stopped with the handler would
// be closed by the server: 2500 updates of ~8 KiB ConfigMaps are ~20 MiB of
// watch stream, far beyond a client's HTTP/2 stream window (4 MiB), the
// server's per-watcher buffers (10–100 events) and any fixed handler buffer
// (Skiff's former one held 1024 changes). A control plane of its own, with
// no controller manager, makes the test's informer the only ConfigMap
// watcher whose terminations the server counts.
func TestStuckHandlerCostsNoWatchTermination(t *testing.T) {
	ctx := ctxFor(t, 5*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{Controllers: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	cfg := env.Config()
	cs := clientset(t, cfg)
	ns, err := testenv.CreateNamespace(ctx, cs, "slow-handler")
	if err != nil {
		t.Fatal(err)
	}
	const keys, updates, writers = 20, 2500, 4
	pad := strings.Repeat("x", 8<<10)
	for i := range keys {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("cm-", i)}, Data: map[string]string{"pad": pad, "n": "initial"}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	src, err := cache.TypedSource[*corev1.ConfigMap](cfg, cmGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*corev1.ConfigMap]{})
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // runs before runInformer's cleanup stops the informer
	var mu sync.Mutex
	seen := map[string]string{} // the handler's view: name -> resourceVersion
	inf.AddEventHandler(cache.EventHandler[*corev1.ConfigMap]{
		OnAdd: func(cm *corev1.ConfigMap) {
			mu.Lock()
			seen[cm.Name] = cm.ResourceVersion
			mu.Unlock()
		},
		OnUpdate: func(_, cm *corev1.ConfigMap) {
			<-release // stuck until the burst is over
			mu.Lock()
			seen[cm.Name] = cm.ResourceVersion
			mu.Unlock()
		},
	}, cache.EventHandlerOptions{})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	terminatedBefore := serverTerminatedWatchers(t, ctx, cs, "configmaps")

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < updates; i += writers {
				name := fmt.Sprint("cm-", i%keys)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"pad": pad, "n": fmt.Sprint(i)}}
				if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					errs <- fmt.Errorf("update %s: %w", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fresh := func() []string {
		l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]*corev1.ConfigMap, len(l.Items))
		for i := range l.Items {
			out[i] = &l.Items[i]
		}
		return snapshot(out)
	}
	want := fresh()
	// The store catches up while the handler is still stuck: the watch was
	// read past it.
	eventually(t, time.Minute, func() string { return sameAs(inf, want) })
	stuckStats := inf.Stats()
	unblock()
	eventually(t, time.Minute, func() string {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for name, rv := range seen {
			got = append(got, ns+"/"+name+"@"+rv)
		}
		slices.Sort(got)
		if msg := sameAs(inf, got); msg != "" {
			return "handler's view differs from the store: " + msg
		}
		return ""
	})
	st := inf.Stats()
	terminated := serverTerminatedWatchers(t, ctx, cs, "configmaps") - terminatedBefore
	t.Logf("events %d, watch restarts %d, relists %d, merged for the stuck handler %d (backlog %d keys while stuck); server-terminated configmaps watchers %.0f",
		st.Events, st.WatchRestarts, st.Relists, st.Coalesced, stuckStats.HandlerBacklog, terminated)
	if st.Events < updates {
		t.Errorf("informer applied %d watch events, want at least the %d updates", st.Events, updates)
	}
	if st.WatchRestarts != 0 || terminated != 0 {
		t.Errorf("watch restarts %d, server-terminated watchers %.0f; want 0 and 0", st.WatchRestarts, terminated)
	}
	if st.Coalesced == 0 {
		t.Errorf("no change merged for the stuck handler: the test did not make it fall behind")
	}
}
