package integration

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// releasePods is how many pods the release tests cache.
const releasePods = 300

// createPods creates n pods named p-0… in ns, a few at a time.
func createPods(t *testing.T, ctx context.Context, cfg *rest.Config, ns string, n int) {
	t.Helper()
	cs := clientset(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	names := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range names {
				p := newPod(fmt.Sprintf("p-%d", i), map[string]string{"app": "release"})
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create pod: %v", err)
	}
}

// syncAndStop runs an informer over src until it holds n objects, stops
// it, waits for Run to return, and returns weak pointers to the informer
// and to one of its cached objects. Nothing else of the informer leaves
// this function.
func syncAndStop(t *testing.T, src cache.Source[*corev1.Pod], o cache.Options[*corev1.Pod], n int) (weak.Pointer[cache.Informer[*corev1.Pod]], weak.Pointer[corev1.Pod]) {
	t.Helper()
	inf := cache.New(src, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = inf.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("the informer to cache %d pods", n), func() (bool, error) {
		if got := inf.Store().Len(); got != n {
			return false, fmt.Errorf("%d pods cached", got)
		}
		return true, nil
	})
	objs := inf.Lister().List(nil)
	cancel()
	<-done
	return weak.Make(inf), weak.Make(objs[len(objs)/2])
}

// waitUnreachable collects garbage until p's object is gone, failing t
// after d, and returns how long that took.
func waitUnreachable[T any](t *testing.T, what string, p weak.Pointer[T], d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for p.Value() != nil {
		if time.Since(start) > d {
			buf := make([]byte, 1<<20)
			t.Fatalf("%s still reachable %v after the informer stopped; goroutines:\n%s", what, d, buf[:runtime.Stack(buf, true)])
		}
		runtime.GC()
		time.Sleep(testenv.PollInterval)
	}
	return time.Since(start)
}

// contextKeeper keeps the context of every request it sees, as a
// RoundTripper, a tracing exporter or net/http itself might.
type contextKeeper struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (k *contextKeeper) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		k.mu.Lock()
		k.ctxs = append(k.ctxs, req.Context())
		k.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (k *contextKeeper) kept() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.ctxs)
}

// A stopped informer leaves nothing of itself reachable: once Run has
// returned, the informer and every object it cached are garbage, whether
// it listed by watch-list (its relist filter, which reads the store, and
// its spec reuse table, which holds stored objects, ride in the watch
// request's context) or by pages — even when something keeps the
// contexts of its requests.
func TestStoppedInformerIsReleased(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	base := shared.Config()
	ns := testenv.Namespace(t, base)
	createPods(t, ctx, base, ns, releasePods)
	for _, tc := range []struct {
		name  string
		mode  cache.WatchListMode
		keep  bool
		fresh bool // a config client-go has no transport for yet: the informer's requests dial
	}{
		{"watchlist", cache.WatchListOn, false, false},
		{"paginated", cache.WatchListOff, false, false},
		{"watchlist/contexts kept", cache.WatchListOn, true, false},
		{"paginated/contexts kept", cache.WatchListOff, true, false},
		{"auto/new connections", cache.WatchListAuto, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rest.CopyConfig(base)
			if tc.fresh {
				// Part of client-go's transport cache key, so a new
				// transport whose first connection the informer dials.
				cfg.DisableCompression = true
				cfg.UserAgent = "release-test/" + tc.name
			}
			keeper := &contextKeeper{}
			if tc.keep {
				cfg.Wrap(keeper.wrap)
			}
			src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			infP, objP := syncAndStop(t, src, cache.Options[*corev1.Pod]{WatchList: tc.mode}, releasePods)
			src = cache.Source[*corev1.Pod]{}
			took := waitUnreachable(t, "a cached pod", objP, 30*time.Second)
			waitUnreachable(t, "the informer", infP, 5*time.Second)
			if tc.keep && keeper.kept() == 0 {
				t.Error("no request context was kept")
			}
			runtime.KeepAlive(keeper)
			t.Logf("cache unreachable %v after Run returned (%d request contexts kept)", took, keeper.kept())
		})
	}
}
