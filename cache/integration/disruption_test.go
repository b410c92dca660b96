package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

var cmGVR = corev1.SchemeGroupVersion.WithResource("configmaps")

func cmSnapshot(t *testing.T, ctx context.Context, env *testenv.Env, ns string) []string {
	t.Helper()
	l, err := clientset(t, env.Config()).CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs := make([]*corev1.ConfigMap, len(l.Items))
	for i := range l.Items {
		objs[i] = &l.Items[i]
	}
	return snapshot(objs)
}

func newCM(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "0"}}
}

// Bad input gives a clear error through WaitForSync and LastError while the
// informer keeps retrying.
func TestBadInputErrors(t *testing.T) {
	cfg := shared.Config()
	unreachable := shared.Config()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable.Host = "https://" + l.Addr().String()
	l.Close()
	forbidden := shared.Config()
	forbidden.Impersonate = impersonateNobody()
	for _, tc := range []struct {
		name string
		cfg  func() (cache.Source[*corev1.ConfigMap], error)
		want string
	}{
		{"unknown resource", func() (cache.Source[*corev1.ConfigMap], error) {
			return cache.TypedSource[*corev1.ConfigMap](cfg, schema.GroupVersionResource{Version: "v1", Resource: "nosuchthings"}, cache.Scope{})
		}, "the server could not find the requested resource"},
		{"forbidden", func() (cache.Source[*corev1.ConfigMap], error) {
			return cache.TypedSource[*corev1.ConfigMap](forbidden, cmGVR, cache.Scope{})
		}, `"skiff-nobody" cannot watch resource "configmaps"`},
		{"unreachable", func() (cache.Source[*corev1.ConfigMap], error) {
			return cache.TypedSource[*corev1.ConfigMap](unreachable, cmGVR, cache.Scope{})
		}, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := tc.cfg()
			if err != nil {
				t.Fatal(err)
			}
			inf := cache.New(src, cache.Options[*corev1.ConfigMap]{InitialBackoff: 50 * time.Millisecond})
			runInformer(t, inf)
			eventually(t, 30*time.Second, func() string {
				if inf.Stats().Errors < 2 {
					return fmt.Sprintf("%d errors so far, want retries", inf.Stats().Errors)
				}
				return ""
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			err = inf.WaitForSync(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "configmaps") && tc.name != "unknown resource" {
				t.Fatalf("WaitForSync error %v, want it to name the resource and say %q", err, tc.want)
			}
		})
	}
}

// flakyLW wraps a ListerWatcher and cuts watches at random, to exercise
// resume; every cut is counted.
type flakyLW struct {
	cache.ListerWatcher
	mu   sync.Mutex
	rng  *rand.Rand
	open []watch.Interface
	cuts int
}

func (f *flakyLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := f.ListerWatcher.Watch(ctx, opts)
	if err == nil {
		f.mu.Lock()
		f.open = append(f.open, w)
		f.mu.Unlock()
	}
	return w, err
}

func (f *flakyLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return f.ListerWatcher.List(ctx, opts)
}

func (f *flakyLW) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.open {
		w.Stop()
		f.cuts++
	}
	f.open = nil
}

// A seeded random mix of creates, updates and deletes while watches are cut
// at random ends with a store equal to a fresh List, exactly.
func TestRandomChurnWithDisruptions(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := ctxFor(t, 3*time.Minute)
	cfg := shared.Config()
	ns := testenv.Namespace(t, cfg)
	cms := clientset(t, cfg).CoreV1().ConfigMaps(ns)
	src, err := cache.TypedSource[*corev1.ConfigMap](cfg, cmGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyLW{ListerWatcher: src.LW, rng: rng}
	src.LW = flaky
	inf := cache.New(src, cache.Options[*corev1.ConfigMap]{InitialBackoff: 10 * time.Millisecond})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for i := range 300 {
		name := fmt.Sprint("cm-", rng.IntN(40))
		switch {
		case !live[name]:
			if _, err := cms.Create(ctx, newCM(name), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			live[name] = true
		case rng.IntN(3) == 0:
			if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			delete(live, name)
		default:
			cm := newCM(name)
			cm.Data["v"] = fmt.Sprint(i)
			if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(25) == 0 {
			flaky.cut()
		}
	}
	want := cmSnapshot(t, ctx, shared, ns)
	eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
	if flaky.cuts == 0 || inf.Stats().WatchRestarts == 0 {
		t.Fatalf("no disruption happened: cuts=%d stats=%+v", flaky.cuts, inf.Stats())
	}
	t.Logf("cuts %d, stats %+v", flaky.cuts, inf.Stats())
}

// With the watch cache off for configmaps, watches are served by etcd; after
// a compaction, resuming from an old resourceVersion is 410 Gone, and the
// informer relists and ends up exact.
func TestGoneAfterCompactionRelists(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{APIServerArgs: []string{"--watch-cache-sizes=configmaps#0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cfg := env.Config()
	ns, err := testenv.CreateNamespace(ctx, clientset(t, cfg), "compact")
	if err != nil {
		t.Fatal(err)
	}
	cms := clientset(t, cfg).CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, newCM("watched"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := cache.TypedSource[*corev1.ConfigMap](cfg, cmGVR, cache.Scope{Namespace: ns, LabelSelector: "watched=yes"})
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyLW{ListerWatcher: src.LW}
	src.LW = flaky
	inf := cache.New(src, cache.Options[*corev1.ConfigMap]{InitialBackoff: 10 * time.Millisecond})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes the informer does not see (outside its selector) move etcd on;
	// compaction then makes the informer's resume point history.
	for i := range 5 {
		if _, err := cms.Create(ctx, newCM(fmt.Sprint("other-", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.CompactEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	flaky.cut()
	eventually(t, 30*time.Second, func() string {
		if r := inf.Stats().Relists; r < 2 {
			return fmt.Sprintf("relists %d, want a relist after 410", r)
		}
		return ""
	})
	cm := newCM("labelled")
	cm.Labels = map[string]string{"watched": "yes"}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "watched=yes"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range l.Items {
		want = append(want, cache.KeyOf(&l.Items[i]).String()+"@"+l.Items[i].ResourceVersion)
	}
	eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
}

// The informer survives a control plane restart (same data dir and port):
// it backs off while the server is down, resumes, and catches up exactly.
func TestResumeAfterControlPlaneRestart(t *testing.T) {
	ctx := ctxFor(t, 4*time.Minute)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := testenv.Options{DataDir: t.TempDir(), Port: port}
	env, err := testenv.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.Config()
	cs := clientset(t, cfg)
	ns, err := testenv.CreateNamespace(ctx, cs, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, newCM("before"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := cache.TypedSource[*corev1.ConfigMap](cfg, cmGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*corev1.ConfigMap]{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.Stop(); err != nil {
		// Seen: with a watch open, kube-apiserver may not finish its
		// graceful shutdown within testenv's 30 s and is killed; the
		// data dir survives, which is what this test needs.
		t.Logf("stop: %v", err)
	}
	eventually(t, 30*time.Second, func() string {
		if inf.Stats().Errors == 0 {
			return "no error seen while the control plane is down"
		}
		return ""
	})
	env, err = testenv.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cs = clientset(t, env.Config())
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, newCM("after"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "before", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := cmSnapshot(t, ctx, env, ns)
	eventually(t, 60*time.Second, func() string { return sameAs(inf, want) })
	t.Logf("stats after restart: %+v", inf.Stats())
}
