package integration

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// A partitioned informer over a TypedSource lists in pages (two pods a
// page here), its tweak sent to the server and its keep applied to every
// page; the pods it caches equal the server's (their specs decoded by the
// page reader, which shares template parts), and a new Set relists to the
// new part.
func TestPartitionListsPagesFromTheServer(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	cfg := shared.Config()
	ns := testenv.Namespace(t, cfg)
	cs := clientset(t, cfg)
	for i, name := range []string{"a", "drop", "b", "c", "d"} {
		p := newPod(name, map[string]string{"part": fmt.Sprint(1 + i/3)}) // a, drop, b: part 1; c, d: part 2
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "SAME", Value: "for every pod"}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	part := cache.NewPartition()
	part.Set(func(o *metav1.ListOptions) { o.LabelSelector = "part=1" }, func(o metav1.Object) bool { return o.GetName() != "drop" })
	inf := cache.New(cache.PartitionSource(src, part), cache.Options[*corev1.Pod]{WatchList: cache.WatchListOff, PageSize: 2})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	serverPods := func(selector string, skip string) []*corev1.Pod {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		var out []*corev1.Pod
		for _, p := range podsOf(l) {
			if p.Name != skip {
				out = append(out, p)
			}
		}
		return out
	}
	want := serverPods("part=1", "drop")
	if msg := sameAs(inf, snapshot(want)); msg != "" {
		t.Fatal(msg)
	}
	for _, w := range want {
		got, ok := inf.Lister().Get(ns, w.Name)
		if !ok || !equality.Semantic.DeepEqual(got.Spec, w.Spec) || !equality.Semantic.DeepEqual(got.Labels, w.Labels) || got.ManagedFields != nil {
			t.Fatalf("pod %s cached as %+v\nserver has %+v", w.Name, got, w)
		}
	}
	part.Set(func(o *metav1.ListOptions) { o.LabelSelector = "part=2" }, nil)
	want2 := snapshot(serverPods("part=2", ""))
	eventually(t, 30*time.Second, func() string { return sameAs(inf, want2) })
	if st := inf.Stats(); st.Skipped != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
