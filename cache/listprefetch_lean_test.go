package cache

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
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
