package cache

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// A partition over a TypedSource lists pages itself, item by item with
// the informer's spec reuse and sharer (what pagedecode_test.go checks of
// the page reader). Against the server: TestPartitionListsPagesFromTheServer
// in cache/integration. Building the sources does no I/O.
func TestPartitionWiresThePageReader(t *testing.T) {
	typed, err := TypedSource[*corev1.Pod](&rest.Config{Host: "https://127.0.0.1:1"}, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Scope{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	src, _, reuse := leanSource(PartitionSource(typed, NewPartition()), Options[*corev1.Pod]{})
	if reuse == nil || reuse.share == nil {
		t.Fatal("default options: no spec reuse or sharer")
	}
	ps, ok := src.LW.(pageSource)
	if !ok || !ps.canListPages() {
		t.Fatalf("%T does not list pages itself", src.LW)
	}
}
