package integration

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// contentTypes records the Content-Type of every response to a request for
// a path containing match, with the request's Accept header.
type contentTypes struct {
	match string
	mu    sync.Mutex
	seen  []string // "accept → content type"
}

func (c *contentTypes) wrap(cfg *rest.Config) *rest.Config {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil && strings.Contains(req.URL.Path, c.match) && resp.StatusCode == http.StatusOK {
				c.mu.Lock()
				c.seen = append(c.seen, req.Header.Get("Accept")+" → "+resp.Header.Get("Content-Type"))
				c.mu.Unlock()
			}
			return resp, err
		})
	})
	return cfg
}

// types returns the distinct content types seen, sorted.
func (c *contentTypes) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.seen {
		_, ct, _ := strings.Cut(s, " → ")
		if !slices.Contains(out, ct) {
			out = append(out, ct)
		}
	}
	slices.Sort(out)
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// customSourceWith is cache.CustomSourceFor with options: a REST client of
// the caller's own for lists, and watches over cache.WithWatchConfig.
func customSourceWith[T cache.Object](t *testing.T, cfg *rest.Config, gvr schema.GroupVersionResource, scope cache.Scope, o cache.CustomOptions) cache.Source[T] {
	t.Helper()
	c := rest.CopyConfig(cfg)
	gv := gvr.GroupVersion()
	c.GroupVersion, c.APIPath = &gv, "/apis"
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	c.QPS, c.Burst = 1000, 1000
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		t.Fatal(err)
	}
	src, err := cache.WithWatchConfig(cache.CustomSourceWith[T](rc, gvr, scope, o), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// followsThings creates things in a new namespace of cfg's server, runs a
// typed and an unstructured informer over src (built by mk), and checks
// that they sync, skip the malformed object, follow an update, a fix and a
// delete, and never hold managedFields or the last-applied annotation.
func followsThings(t *testing.T, cfg *rest.Config, mode cache.WatchListMode, mk func(ns string) (cache.Source[*gadget], cache.Source[*unstructured.Unstructured])) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	if _, err := testenv.ApplyCRDs(ctx, cfg, []byte(thingsCRD)); err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, cfg)
	gvr := schema.GroupVersionResource{Group: "cache.skiff.dev", Version: "v1", Resource: "things"}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	things := dc.Resource(gvr).Namespace(ns)
	for name, size := range map[string]any{"one": int64(1), "big": "very", "three": int64(3)} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cache.skiff.dev/v1", "kind": "Thing",
			"metadata": map[string]any{"name": name, "annotations": map[string]any{
				cache.LastAppliedAnnotation: `{"kind":"Thing"}`, "keep": "me"}},
			"spec": map[string]any{"size": size},
		}}
		if _, err := things.Create(ctx, u, metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, usrc := mk(ns)
	typed := cache.New(src, cache.Options[*gadget]{Logger: quiet, WatchList: mode, PageSize: 2})
	untyped := cache.New(usrc, cache.Options[*unstructured.Unstructured]{Logger: quiet, WatchList: mode, PageSize: 2,
		Transform: cache.KeepAll[*unstructured.Unstructured]})
	runInformer(t, typed)
	runInformer(t, untyped)
	if err := typed.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := untyped.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := typed.Stats(); st.Objects != 2 || st.Skipped != 1 {
		t.Fatalf("typed stats %+v, want 2 objects and 1 skipped (big)", st)
	}
	if st := untyped.Stats(); st.Objects != 3 || st.Skipped != 0 {
		t.Fatalf("unstructured stats %+v, want 3 objects", st)
	}
	one, ok := typed.Lister().Get(ns, "one")
	if !ok || one.Spec.Size != 1 || one.ManagedFields != nil || one.Annotations["keep"] != "me" || len(one.Annotations) != 1 ||
		one.CreationTimestamp.IsZero() || one.UID == "" {
		t.Fatalf("one = %+v, %v; want size 1, no managedFields, only the keep annotation", one, ok)
	}
	u, ok := untyped.Lister().Get(ns, "one")
	if size, _, _ := unstructured.NestedInt64(u.Object, "spec", "size"); !ok || u.GetManagedFields() != nil || len(u.GetAnnotations()) != 1 || size != 1 {
		t.Fatalf("unstructured one = %v, %v", u, ok)
	}

	one2, err := things.Get(ctx, "one", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(one2.Object, int64(10), "spec", "size")
	if _, err := things.Update(ctx, one2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	big, err := things.Get(ctx, "big", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(big.Object, int64(2), "spec", "size")
	if _, err := things.Update(ctx, big, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := things.Delete(ctx, "three", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		one, _ := typed.Lister().Get(ns, "one")
		big, _ := typed.Lister().Get(ns, "big")
		_, three := typed.Lister().Get(ns, "three")
		_, uthree := untyped.Lister().Get(ns, "three")
		if one == nil || one.Spec.Size != 10 || one.ManagedFields != nil || big == nil || big.Spec.Size != 2 || three || uthree {
			return fmt.Sprintf("typed one=%+v big=%+v three present=%v, unstructured three present=%v", one, big, three, uthree)
		}
		return ""
	})
}

// TestCustomSourceCBOR: against a server with CBORServingAndStorage, the
// default CustomSource lists (application/cbor) and watches
// (application/cbor-seq) in CBOR and follows the server; with
// EncodingJSON it gets JSON only. Either way, with WithWatchConfig, the
// watches speak HTTP/1.1 and the lists HTTP/2.
func TestCustomSourceCBOR(t *testing.T) {
	ctx := ctxFor(t, 5*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{APIServerArgs: []string{"--feature-gates=CBORServingAndStorage=true"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	gvr := schema.GroupVersionResource{Group: "cache.skiff.dev", Version: "v1", Resource: "things"}
	for _, c := range []struct {
		name string
		mode cache.WatchListMode
		enc  cache.Encoding
		want []string
	}{
		{"cbor/watchlist", cache.WatchListOn, cache.EncodingAuto, []string{"application/cbor-seq"}},
		{"cbor/paginated", cache.WatchListOff, cache.EncodingAuto, []string{"application/cbor", "application/cbor-seq"}},
		{"forced-json/paginated", cache.WatchListOff, cache.EncodingJSON, []string{"application/json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen := &contentTypes{match: "/things"}
			rec := &protoRecorder{watch: map[int]int{}, other: map[int]int{}}
			cfg := seen.wrap(env.Config())
			cfg.Wrap(rec.wrap)
			followsThings(t, env.Config(), c.mode, func(ns string) (cache.Source[*gadget], cache.Source[*unstructured.Unstructured]) {
				o := cache.CustomOptions{Encoding: c.enc}
				return customSourceWith[*gadget](t, cfg, gvr, cache.Scope{Namespace: ns}, o),
					customSourceWith[*unstructured.Unstructured](t, cfg, gvr, cache.Scope{Namespace: ns}, o)
			})
			if got := seen.types(); !slices.Equal(got, c.want) {
				t.Fatalf("response content types %q, want %q (requests: %q)", got, c.want, seen.seen)
			}
			wantHTTP1Watches(t, rec, c.mode == cache.WatchListOff)
		})
	}
}

// TestCustomSourceJSONFallback: a server without the gate answers the
// CBOR-preferring request with JSON, and the source decodes that.
func TestCustomSourceJSONFallback(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "cache.skiff.dev", Version: "v1", Resource: "things"}
	seen := &contentTypes{match: "/things"}
	cfg := seen.wrap(shared.Config())
	followsThings(t, shared.Config(), cache.WatchListOff, func(ns string) (cache.Source[*gadget], cache.Source[*unstructured.Unstructured]) {
		src, err := cache.CustomSourceFor[*gadget](cfg, gvr, cache.Scope{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		usrc, err := cache.CustomSourceFor[*unstructured.Unstructured](cfg, gvr, cache.Scope{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		return src, usrc
	})
	if got := seen.types(); !slices.Equal(got, []string{"application/json"}) {
		t.Fatalf("response content types %q, want JSON only (requests: %q)", got, seen.seen)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if !strings.HasPrefix(seen.seen[0], "application/cbor, application/json;q=0.9 →") {
		t.Fatalf("the request did not ask for CBOR first: %q", seen.seen[0])
	}
}
