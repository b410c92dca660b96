package cache

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// The informer's default options wrap a REST source for lean decoding; the
// wrapped source must still run prefetching paginated lists (a type
// assertion on the wrapper would otherwise miss them and fall back to one
// request after another).
func TestLeanSourceKeepsPrefetchingLists(t *testing.T) {
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	src, err := TypedSource[*corev1.Pod](&rest.Config{Host: "https://127.0.0.1:1"}, gvr, Scope{Namespace: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if ps, ok := src.LW.(pageSource); !ok || !ps.canListPages() {
		t.Fatalf("TypedSource's ListerWatcher %T does not list pages itself", src.LW)
	}
	for _, o := range []Options[*corev1.Pod]{{}, {NoIntern: true}, {Compact: true}} {
		lean, _, _ := leanSource(src, o)
		if _, wrapped := lean.LW.(leanLW); !wrapped {
			t.Fatalf("options %+v: source not wrapped for lean decoding (%T); the test checks the wrapper", o, lean.LW)
		}
		if ps, ok := lean.LW.(pageSource); !ok || !ps.canListPages() {
			t.Errorf("options %+v: the lean source %T does not pass prefetching lists on", o, lean.LW)
		}
	}
}

// Custom sources list pages themselves too (prefetching the next page
// while one is decoded), also behind the lean wrapper.
func TestCustomSourceListsPages(t *testing.T) {
	src := CustomSource[*unstructured.Unstructured](nil, schema.GroupVersionResource{Group: "g", Version: "v1", Resource: "things"}, Scope{})
	lean, _, _ := leanSource(src, Options[*unstructured.Unstructured]{})
	for _, lw := range []ListerWatcher{src.LW, lean.LW} {
		if ps, ok := lw.(pageSource); !ok || !ps.canListPages() {
			t.Errorf("%T does not list pages itself", lw)
		}
	}
}

// jsonListMeta reads the top-level metadata only, wherever it is; items'
// own metadata do not count.
func TestJSONListMeta(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`{"apiVersion":"v1","items":[{"metadata":{"continue":"no"}}],"kind":"List","metadata":{"continue":"tok","resourceVersion":"7"}}`, "tok", true},
		{`{"metadata":{"continue":"first"},"items":[]}`, "first", true},
		{` {"items":[]} `, "", true},
		{`{"items":[1,],"metadata":{"continue":"tok"}}`, "", false},
		{"\xd9\xd9\xf7\xa1", "", false}, // CBOR
		{`{"metadata":{"continue":5}}`, "", false},
	} {
		lm, err := jsonListMeta([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && lm.Continue != tc.want) {
			t.Errorf("jsonListMeta(%s) = %q, %v; want %q, ok %v", tc.in, lm.Continue, err, tc.want, tc.ok)
		}
	}
}
