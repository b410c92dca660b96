package client_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// protoCounter counts responses by HTTP major version, watches apart.
type protoCounter struct {
	mu           sync.Mutex
	watch, other map[int]int // ProtoMajor → responses
}

func (p *protoCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil {
			p.mu.Lock()
			if req.URL.Query().Get("watch") == "true" {
				p.watch[resp.ProtoMajor]++
			} else {
				p.other[resp.ProtoMajor]++
			}
			p.mu.Unlock()
		}
		return resp, err
	})
}

// The client's informer of a custom resource watches over HTTP/1.1 (a
// connection of its own) while its reads and writes, the list of the same
// REST client included, stay on the shared HTTP/2 connection.
func TestClientCustomInformerWatchesOverHTTP1(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	rec := &protoCounter{watch: map[int]int{}, other: map[int]int{}}
	cfg := rest.CopyConfig(env.Config())
	cfg.Wrap(rec.wrap)
	c := newClient(t, cfg)
	if err := c.Create(ctx, &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a"}, Spec: foo.FooSpec{Message: "a"}}); err != nil {
		t.Fatal(err)
	}
	// No informer yet: this list goes to the server through the REST
	// client the informer lists through.
	if l, err := client.List[*foo.Foo](ctx, c, client.InNamespace(ns)); err != nil || len(l) != 1 {
		t.Fatalf("List from the server = %d Foos, %v; want 1", len(l), err)
	}
	inf, err := client.InformerFor[*foo.Foo](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	runFactory(t, c)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}, Spec: foo.FooSpec{Message: "b"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "Foo b in the informer", func() (bool, error) {
		_, ok := inf.Lister().Get(ns, "b")
		return ok, nil
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.watch) != 1 || rec.watch[1] == 0 {
		t.Errorf("watch responses by HTTP major version %v, want HTTP/1 only", rec.watch)
	}
	if len(rec.other) != 1 || rec.other[2] == 0 {
		t.Errorf("other responses by HTTP major version %v, want HTTP/2 only", rec.other)
	}
}
