package client_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// transportRecorder tells apart the HTTP clients client-go builds from a
// config: every time it wraps a transport (once per HTTP client), the
// requests through that wrapper are counted under a number of their own,
// with the connection and protocol of each.
type transportRecorder struct {
	mu         sync.Mutex
	clients    int                  // transports wrapped so far
	watchBy    map[int]int          // client number → watch responses
	otherBy    map[int]int          // client number → other responses
	watchProto map[int]int          // ProtoMajor → watch responses
	conns      map[net.Conn][2]bool // connection → carried [watch, other]
}

func newTransportRecorder() *transportRecorder {
	return &transportRecorder{watchBy: map[int]int{}, otherBy: map[int]int{}, watchProto: map[int]int{}, conns: map[net.Conn][2]bool{}}
}

func (r *transportRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	r.mu.Lock()
	n := r.clients
	r.clients++
	r.mu.Unlock()
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		isWatch := req.URL.Query().Get("watch") == "true"
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			r.mu.Lock()
			used := r.conns[info.Conn]
			if isWatch {
				used[0] = true
			} else {
				used[1] = true
			}
			r.conns[info.Conn] = used
			r.mu.Unlock()
		}}
		resp, err := rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err == nil {
			r.mu.Lock()
			if isWatch {
				r.watchBy[n]++
				r.watchProto[resp.ProtoMajor]++
			} else {
				r.otherBy[n]++
			}
			r.mu.Unlock()
		}
		return resp, err
	})
}

// Every informer of a Client watches through one HTTP client, built once,
// apart from the one of its other requests: watches over HTTP/1.1 on
// connections that carry nothing else.
func TestClientInformersShareOneStreamTransport(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	rec := newTransportRecorder()
	cfg := rest.CopyConfig(env.Config())
	cfg.Wrap(rec.wrap)
	c := newClient(t, cfg)

	pods, err := client.InformerFor[*corev1.Pod](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	cms, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := client.InformerFor[*corev1.Secret](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	foos, err := client.InformerFor[*foo.Foo](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	runFactory(t, c)
	for _, inf := range []interface{ WaitForSync(context.Context) error }{pods, cms, secrets, foos} {
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// One change of each type arrives on its informer's watch.
	meta := metav1.ObjectMeta{Namespace: ns, Name: "a"}
	for _, obj := range []client.Object{
		&corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}}},
		&corev1.ConfigMap{ObjectMeta: meta},
		&corev1.Secret{ObjectMeta: meta},
		&foo.Foo{ObjectMeta: meta, Spec: foo.FooSpec{Message: "a"}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "each informer to cache its object a", func() (bool, error) {
		_, p := pods.Lister().Get(ns, "a")
		_, m := cms.Lister().Get(ns, "a")
		_, s := secrets.Lister().Get(ns, "a")
		_, f := foos.Lister().Get(ns, "a")
		return p && m && s && f, nil
	})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.watchBy) != 1 {
		t.Fatalf("watch responses by HTTP client %v, want all through one", rec.watchBy)
	}
	for n, watches := range rec.watchBy {
		if watches < 4 {
			t.Errorf("%d watch responses through the stream client, want one per informer (4) at least", watches)
		}
		if rec.otherBy[n] != 0 {
			t.Errorf("the stream client also carried %d other responses", rec.otherBy[n])
		}
	}
	if rec.clients != 2 {
		t.Errorf("%d HTTP clients built from the config, want 2 (requests, watches)", rec.clients)
	}
	if len(rec.watchProto) != 1 || rec.watchProto[1] == 0 {
		t.Errorf("watch responses by HTTP major version %v, want HTTP/1 only", rec.watchProto)
	}
	watchConns := 0
	for conn, used := range rec.conns {
		if used[0] && used[1] {
			t.Errorf("connection %v carried watches and other requests", conn.LocalAddr())
		}
		if used[0] {
			watchConns++
		}
	}
	if watchConns < 4 {
		t.Errorf("%d connections carried watches, want one per running watch (4) at least", watchConns)
	}
}
