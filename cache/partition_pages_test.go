package cache

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// A partition over a TypedSource runs the source's prefetching paginated
// list, pages decoded item by item (specs shared), with its tweak and
// keep applied to every page, and the relist skip off (keep must see
// whole objects); the last page marks the list done.
func TestPartitionListsPages(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "42"}}
	for i, name := range []string{"a", "drop", "b"} {
		p := templatePod(r, 0, i)
		p.Namespace, p.Name, p.ResourceVersion = "ns", name, "7"
		l.Items = append(l.Items, p)
	}
	body := envelope("PodList", listMessage(t, l))
	var mu sync.Mutex
	var selectors []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		selectors = append(selectors, r.URL.Query().Get("labelSelector"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
		w.Write(body)
	}))
	defer srv.Close()
	typed, err := TypedSource[*corev1.Pod](&rest.Config{Host: srv.URL}, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Scope{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	part := NewPartition()
	part.Set(func(o *metav1.ListOptions) { o.LabelSelector = "part=1" }, func(o metav1.Object) bool { return o.GetName() != "drop" })
	src, _, reuse := leanSource(PartitionSource(typed, part), Options[*corev1.Pod]{})
	if reuse == nil || reuse.share == nil {
		t.Fatal("default options: no spec reuse or sharer; the test checks they are used")
	}
	ps, ok := src.LW.(pageSource)
	if !ok || !ps.canListPages() {
		t.Fatalf("%T does not list pages itself", src.LW)
	}
	everything := &fakeFilter{held: map[string]bool{"ns/a@7": true, "ns/drop@7": true, "ns/b@7": true}}
	ctx, cancel := context.WithTimeout(withRelistFilter(context.Background(), everything), 30*time.Second)
	defer cancel()
	var got []*corev1.Pod
	err = ps.listPages(ctx, metav1.ListOptions{Limit: 500}, func(obj runtime.Object) error {
		page, ok := obj.(*objectPage)
		if !ok {
			t.Fatalf("page %T, want it decoded item by item", obj)
		}
		for _, o := range page.Items {
			p, ok := o.(*corev1.Pod)
			if !ok {
				t.Fatalf("item %T: the relist skip reached a partition's keep", o)
			}
			if !reuse.specInterned(p) {
				t.Errorf("pod %s: spec not decoded by the sharer", p.Name)
			}
			got = append(got, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("listed %v, want a and b", got)
	}
	for i, want := range []corev1.Pod{l.Items[0], l.Items[2]} {
		if !reflect.DeepEqual(got[i], DefaultTransform(&want)) {
			t.Fatalf("pod %s:\n%#v\nwant\n%#v", want.Name, got[i], &want)
		}
	}
	if len(everything.asked) != 0 {
		t.Errorf("relist filter asked %v through a partition", everything.asked)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(selectors) != 1 || selectors[0] != "part=1" {
		t.Errorf("requests with label selectors %q, want one with the tweak's", selectors)
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	if part.doneGen != part.gen {
		t.Errorf("list done with generation %d, want %d", part.doneGen, part.gen)
	}
}
