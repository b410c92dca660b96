package client_test

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// appliedPod is a pod as kubectl apply leaves it: the last-applied
// annotation, and (added by the server) managedFields.
func appliedPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Pod"}`, "team": "shop"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/web:1"}}},
	}
}

func createPods(t *testing.T, c *client.Client, pods ...*corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		if err := c.Create(ctxFor(t), p, client.FieldOwner("kubectl-client-side-apply")); err != nil {
			t.Fatalf("create pod %s: %v", p.Name, err)
		}
		if len(p.ManagedFields) == 0 {
			t.Fatalf("the server set no managedFields on %s", p.Name)
		}
	}
}

// The client's informers (the ones builder.For/Owns and cached Get/List
// use) decode built-in types through the lean decoder and intern strings,
// as cache.TypedSource informers do.
func TestClientInformerIsLeanAndInterned(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	createPods(t, c, appliedPod(ns, "a"), appliedPod(ns, "b"))
	inf, err := client.InformerFor[*corev1.Pod](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if !client.HasLeanDecoder(c, reflect.TypeFor[*corev1.Pod]()) {
		t.Fatal("the client's pod informer reads without the lean decoder")
	}
	if _, err := client.InformerFor[*foo.Foo](c, cache.Scope{Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	if client.HasLeanDecoder(c, reflect.TypeFor[*foo.Foo]()) {
		t.Fatal("a JSON custom resource got a protobuf lean decoder")
	}
	runFactory(t, c)
	if err := inf.WaitForSync(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	a, okA := inf.Lister().Get(ns, "a")
	b, okB := inf.Lister().Get(ns, "b")
	if !okA || !okB {
		t.Fatalf("pods not cached: %v %v", okA, okB)
	}
	for _, p := range []*corev1.Pod{a, b} {
		if p.ManagedFields != nil || p.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" {
			t.Fatalf("cached pod %s keeps managedFields (%d) or last-applied", p.Name, len(p.ManagedFields))
		}
		if p.Annotations["team"] != "shop" {
			t.Fatalf("cached pod %s lost an annotation: %v", p.Name, p.Annotations)
		}
	}
	if unsafe.StringData(a.Namespace) != unsafe.StringData(b.Namespace) {
		t.Error("the two pods' namespaces are separate copies (not interned)")
	}
	if unsafe.StringData(a.Spec.Containers[0].Image) != unsafe.StringData(b.Spec.Containers[0].Image) {
		t.Error("the two pods' images are separate copies (not interned)")
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Error("equal label maps are not shared")
	}
}

// A compact pod informer through the client: Get and List decode fresh
// objects (no deep copy needed), selectors work, writes show up, and the
// type's informer cannot be asked for again without CompactCache.
func TestClientCompactInformer(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	other := appliedPod(ns, "c")
	other.Labels = map[string]string{"app": "db"}
	createPods(t, c, appliedPod(ns, "a"), appliedPod(ns, "b"), other)
	inf, err := client.InformerFor[*corev1.Pod](c, cache.Scope{Namespace: ns}, client.CompactCache)
	if err != nil {
		t.Fatal(err)
	}
	if !inf.Lister().Compact() {
		t.Fatal("InformerFor with CompactCache built a full cache")
	}
	if _, err := client.InformerFor[*corev1.Pod](c, cache.Scope{Namespace: ns}); err == nil || !strings.Contains(err.Error(), "compact") {
		t.Fatalf("InformerFor without CompactCache after a compact one: %v", err)
	}
	if err := client.CheckInformer[*corev1.Pod](c, cache.Scope{Namespace: ns}, client.CompactCache); err != nil {
		t.Fatalf("CheckInformer with the same options: %v", err)
	}
	updates := make(chan [2]string, 16)
	inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{OnUpdate: func(old, new *corev1.Pod) {
		updates <- [2]string{old.Annotations["team"], new.Annotations["team"]}
	}}, cache.EventHandlerOptions{})
	runFactory(t, c)
	ctx := ctxFor(t)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}

	a1, err := client.Get[*corev1.Pod](ctx, c, client.ObjectKey{Namespace: ns, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if a1.ManagedFields != nil || a1.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" || a1.Spec.Containers[0].Image != "registry.example.com/web:1" {
		t.Fatalf("compact Get: %+v", a1.ObjectMeta)
	}
	a1.Labels["app"] = "scribbled" // the caller's own copy
	a2, err := client.Get[*corev1.Pod](ctx, c, client.ObjectKey{Namespace: ns, Name: "a"})
	if err != nil || a2.Labels["app"] != "web" {
		t.Fatalf("second Get after changing the first: %v %v", a2.Labels, err)
	}
	web, err := client.List[*corev1.Pod](ctx, c, client.InNamespace(ns), client.MatchingLabels{"app": "web"})
	if err != nil || len(web) != 2 {
		t.Fatalf("List app=web: %d pods, %v", len(web), err)
	}
	sel, _ := labels.Parse("app notin (web)")
	if db := inf.Lister().List(sel); len(db) != 1 || db[0].Name != "c" {
		t.Fatalf("Lister.List(app notin (web)) = %d pods", len(db))
	}

	a2.Annotations["team"] = "search"
	if err := c.Update(ctx, a2); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-updates:
		if u != [2]string{"shop", "search"} {
			t.Fatalf("update event old/new team %v", u)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no update event within 30s")
	}
	testenv.Eventually(t, 30*time.Second, "the cache to hold the update", func() (bool, error) {
		p, ok := inf.Lister().Get(ns, "a")
		return ok && p.Annotations["team"] == "search", nil
	})
}
