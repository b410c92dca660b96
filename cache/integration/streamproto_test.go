package integration

import (
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// protoRecorder records the HTTP protocol of every watch response and of
// every other response.
type protoRecorder struct {
	mu           sync.Mutex
	watch, other map[int]int // ProtoMajor → responses
}

func (r *protoRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil {
			r.mu.Lock()
			if req.URL.Query().Get("watch") == "true" {
				r.watch[resp.ProtoMajor]++
			} else {
				r.other[resp.ProtoMajor]++
			}
			r.mu.Unlock()
		}
		return resp, err
	})
}

func (r *protoRecorder) counts() (watch, other map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := func(m map[int]int) map[int]int {
		out := map[int]int{}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(r.watch), cp(r.other)
}

// An informer's watch streams speak HTTP/1.1 while the config's other
// requests stay on HTTP/2; a config that sets NextProtos keeps its choice.
func TestWatchStreamsUseHTTP1(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nextProtos []string
		wantWatch  int
	}{
		{"default", nil, 1},
		{"h2 asked for", []string{"h2", "http/1.1"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, time.Minute)
			base := shared.Config()
			ns := testenv.Namespace(t, base)
			cs := clientset(t, base)
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("a", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rec := &protoRecorder{watch: map[int]int{}, other: map[int]int{}}
			cfg := rest.CopyConfig(base)
			cfg.TLSClientConfig.NextProtos = tc.nextProtos
			cfg.Wrap(rec.wrap)
			src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			inf := cache.New(src, cache.Options[*corev1.Pod]{})
			runInformer(t, inf)
			if err := inf.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			// A change after the sync arrives on the same stream.
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("b", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, func() string {
				if _, ok := inf.Lister().Get(ns, "b"); !ok {
					return "pod b not cached"
				}
				return ""
			})
			// The same config's other requests: a clientset's list.
			if _, err := clientset(t, cfg).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
			watches, others := rec.counts()
			if len(watches) != 1 || watches[tc.wantWatch] == 0 {
				t.Errorf("watch responses by HTTP major version %v, want only %d", watches, tc.wantWatch)
			}
			if others[2] == 0 || others[1] != 0 {
				t.Errorf("other responses by HTTP major version %v, want HTTP/2 only", others)
			}
		})
	}
}

// A CustomSourceFor informer's watches speak HTTP/1.1 while its own lists
// (watch-list off) stay on HTTP/2; a config that sets NextProtos keeps its
// choice for the watches too.
func TestCustomSourceWatchesUseHTTP1(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "cache.skiff.dev", Version: "v1", Resource: "things"}
	for _, tc := range []struct {
		name       string
		mode       cache.WatchListMode
		nextProtos []string
		wantWatch  int
	}{
		{"default/watchlist", cache.WatchListOn, nil, 1},
		{"default/paginated", cache.WatchListOff, nil, 1},
		// WatchListAuto lists custom resources in pages.
		{"default/auto", cache.WatchListAuto, nil, 1},
		{"h2 asked for/paginated", cache.WatchListOff, []string{"h2", "http/1.1"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, time.Minute)
			base := shared.Config()
			if _, err := testenv.ApplyCRDs(ctx, base, []byte(thingsCRD)); err != nil {
				t.Fatal(err)
			}
			ns := testenv.Namespace(t, base)
			dc, err := dynamic.NewForConfig(base)
			if err != nil {
				t.Fatal(err)
			}
			things := dc.Resource(gvr).Namespace(ns)
			newThing := func(name string) {
				t.Helper()
				u := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "cache.skiff.dev/v1", "kind": "Thing",
					"metadata": map[string]any{"name": name}, "spec": map[string]any{"size": int64(1)},
				}}
				if _, err := things.Create(ctx, u, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			newThing("a")
			newThing("b")
			rec := &protoRecorder{watch: map[int]int{}, other: map[int]int{}}
			cfg := rest.CopyConfig(base)
			cfg.TLSClientConfig.NextProtos = tc.nextProtos
			cfg.Wrap(rec.wrap)
			src, err := cache.CustomSourceFor[*gadget](cfg, gvr, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			inf := cache.New(src, cache.Options[*gadget]{WatchList: tc.mode, PageSize: 1})
			runInformer(t, inf)
			if err := inf.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			// A change after the sync arrives on the watch.
			newThing("c")
			eventually(t, 30*time.Second, func() string {
				if _, ok := inf.Lister().Get(ns, "c"); !ok {
					return "thing c not cached"
				}
				return ""
			})
			watches, others := rec.counts()
			if len(watches) != 1 || watches[tc.wantWatch] == 0 {
				t.Errorf("watch responses by HTTP major version %v, want only %d", watches, tc.wantWatch)
			}
			if tc.mode != cache.WatchListOn && (others[2] < 2 || len(others) != 1) {
				t.Errorf("list responses by HTTP major version %v, want HTTP/2 only (2 pages at least)", others)
			}
			if tc.mode == cache.WatchListOn && others[1] != 0 {
				t.Errorf("other responses by HTTP major version %v, want none over HTTP/1", others)
			}
		})
	}
}

// wantHTTP1Watches fails t unless rec saw watches over HTTP/1 only and,
// if lists, other responses over HTTP/2 only.
func wantHTTP1Watches(t *testing.T, rec *protoRecorder, lists bool) {
	t.Helper()
	watches, others := rec.counts()
	if len(watches) != 1 || watches[1] == 0 {
		t.Errorf("watch responses by HTTP major version %v, want HTTP/1 only", watches)
	}
	if lists && (others[2] == 0 || len(others) != 1) {
		t.Errorf("other responses by HTTP major version %v, want HTTP/2 only", others)
	}
	if !lists && others[1] != 0 {
		t.Errorf("other responses by HTTP major version %v, want none over HTTP/1", others)
	}
}

// stallProxy forwards TCP connections to a backend. stall freezes the
// connections open at that moment: they stay open, bytes sent to them are
// acknowledged by the kernel and never forwarded — a path that died
// silently behind a proxy or tunnel, which keepalive probes cannot see.
// Connections accepted later forward normally.
type stallProxy struct {
	ln      net.Listener
	backend string
	frozen  chan struct{} // closed at cleanup: frozen copies give up
	mu      sync.Mutex
	conns   []*stallConn
	wg      sync.WaitGroup
}

type stallConn struct {
	client, server net.Conn
	stalled        atomic.Bool
}

func startStallProxy(t *testing.T, backend string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, backend: backend, frozen: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		close(p.frozen)
		p.mu.Lock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) accept() {
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", p.backend)
		if err != nil {
			cc.Close()
			continue
		}
		c := &stallConn{client: cc, server: sc}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, sc, cc) })
		p.wg.Go(func() { p.pipe(c, cc, sc) })
	}
}

// pipe copies src to dst until either closes, or holds what it read
// once c is stalled.
func (p *stallProxy) pipe(c *stallConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if c.stalled.Load() {
			<-p.frozen
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.stalled.Store(true)
	}
}

// A watch whose path dies silently (the server's own end of the watch
// never arrives) is ended by the client shortly after the timeout it
// asked for, and the informer watches again on a new connection.
func TestSilentlyDeadWatchPathIsLeft(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	base := shared.Config()
	ns := testenv.Namespace(t, base)
	cs := clientset(t, base)
	u, err := url.Parse(base.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startStallProxy(t, u.Host)
	cfg := rest.CopyConfig(base)
	cfg.Host = "https://" + proxy.ln.Addr().String()
	src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	// Watches ask for 2–4 s; the client gives up on one 2–4 s later.
	inf := cache.New(src, cache.Options[*corev1.Pod]{WatchTimeout: 2 * time.Second})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.stall()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("after-stall", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if _, ok := inf.Lister().Get(ns, "after-stall"); !ok {
			return "the pod created after the stall is not cached"
		}
		return ""
	})
}
