package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

// Pods (typed, protobuf): the initial list and every later create, update
// and delete reach the store; the store equals a fresh List; handlers see
// the changes; managedFields are stripped.
func TestPodsListAndWatch(t *testing.T) {
	for _, mode := range []cache.WatchListMode{cache.WatchListAuto, cache.WatchListOff} {
		t.Run(fmt.Sprint("watchlist=", mode == cache.WatchListAuto), func(t *testing.T) {
			ctx := ctxFor(t, 2*time.Minute)
			cfg := shared.Config()
			ns := testenv.Namespace(t, cfg)
			cs := clientset(t, cfg)
			for i := range 5 {
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod(fmt.Sprint("pre-", i), map[string]string{"i": fmt.Sprint(i % 2)}), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			inf := cache.New(src, cache.Options[*corev1.Pod]{WatchList: mode, PageSize: 2})
			var deletes []string
			done := make(chan struct{}, 16)
			inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{OnDelete: func(p *corev1.Pod) {
				deletes = append(deletes, p.Name)
				done <- struct{}{}
			}}, cache.EventHandlerOptions{})
			runInformer(t, inf)
			if err := inf.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			fresh := func() []string {
				l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return snapshot(podsOf(l))
			}
			if msg := sameAs(inf, fresh()); msg != "" {
				t.Fatal(msg)
			}
			p, _ := inf.Lister().Get(ns, "pre-0")
			if p.ManagedFields != nil {
				t.Fatal("managedFields cached")
			}
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("new", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			upd := p.DeepCopy()
			upd.Labels["touched"] = "yes"
			if _, err := cs.CoreV1().Pods(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := cs.CoreV1().Pods(ns).Delete(ctx, "pre-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Fatal(err)
			}
			want := fresh()
			eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
			<-done
			if !slices.Equal(deletes, []string{"pre-1"}) {
				t.Fatalf("deletes %v", deletes)
			}
			st := inf.Stats()
			if st.Relists != 1 || st.Skipped != 0 || st.Errors != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// Label and field selectors are sent to the server; label and namespace
// indexes answer from the cache.
func TestSelectorsAndIndexes(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	cfg := shared.Config()
	ns := testenv.Namespace(t, cfg)
	cs := clientset(t, cfg)
	for i := range 6 {
		l := map[string]string{"app": []string{"web", "db", "cache"}[i%3], "tier": "x"}
		if i == 5 {
			l["tier"] = "y"
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, newPod(fmt.Sprint("p", i), l), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{LabelSelector: "tier=x", FieldSelector: "metadata.namespace=" + ns})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*corev1.Pod]{Indexes: map[string]cache.IndexFunc[*corev1.Pod]{"app": cache.LabelIndex[*corev1.Pod]("app")}})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	names := func(ps []*corev1.Pod) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	if got := names(inf.Lister().List(nil)); !slices.Equal(got, []string{"p0", "p1", "p2", "p3", "p4"}) {
		t.Fatalf("selected %v", got)
	}
	if got := names(inf.Lister().ByIndex("app", "web")); !slices.Equal(got, []string{"p0", "p3"}) {
		t.Fatalf("app=web %v", got)
	}
	if got := names(inf.Lister().ListInNamespace(ns, nil)); len(got) != 5 {
		t.Fatalf("namespace index %v", got)
	}
	// A pod relabelled out of the selector is deleted from the cache.
	p, _ := cs.CoreV1().Pods(ns).Get(ctx, "p0", metav1.GetOptions{})
	p.Labels["tier"] = "z"
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if got := names(inf.Lister().ByIndex("app", "web")); !slices.Equal(got, []string{"p3"}) {
			return fmt.Sprintf("app=web %v after relabel", got)
		}
		return ""
	})
}

// A custom resource (unstructured, JSON) and metadata-only pods.
func TestCustomResourceAndMetadata(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	cfg := shared.Config()
	if _, err := testenv.ApplyCRDFiles(ctx, cfg, "testdata/gadgets-crd.yaml"); err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, cfg)
	gvr := schema.GroupVersionResource{Group: "cache.skiff.dev", Version: "v1", Resource: "gadgets"}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gadgets := dc.Resource(gvr).Namespace(ns)
	mk := func(name, color string) {
		t.Helper()
		g := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cache.skiff.dev/v1", "kind": "Gadget",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"color": color},
		}}
		if _, err := gadgets.Create(ctx, g, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("g1", "red")
	src, err := cache.UnstructuredSource(cfg, gvr, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*unstructured.Unstructured]{})
	msrc, err := cache.MetadataSource(cfg, gvr, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	minf := cache.New(msrc, cache.Options[*metav1.PartialObjectMetadata]{})
	runInformer(t, inf)
	runInformer(t, minf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := minf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	mk("g2", "blue")
	fresh := func() []string {
		l, err := gadgets.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range l.Items {
			out = append(out, cache.KeyOf(&o).String()+"@"+o.GetResourceVersion())
		}
		slices.Sort(out)
		return out
	}
	want := fresh()
	eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
	eventually(t, 30*time.Second, func() string { return sameAs(minf, want) })
	g2, _ := inf.Lister().Get(ns, "g2")
	if c, _, _ := unstructured.NestedString(g2.Object, "spec", "color"); c != "blue" {
		t.Fatalf("g2 color %q", c)
	}
	if _, ok := g2.Object["metadata"].(map[string]any)["managedFields"]; ok {
		t.Fatal("managedFields cached for unstructured")
	}
	if err := gadgets.Delete(ctx, "g1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want = fresh()
	eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
	eventually(t, 30*time.Second, func() string { return sameAs(minf, want) })
	m, _ := minf.Lister().Get(ns, "g2")
	if m.Kind != "PartialObjectMetadata" && !strings.Contains(m.APIVersion, "meta.k8s.io") && m.Name != "g2" {
		t.Fatalf("metadata object %+v", m)
	}
}
