package client_test

import (
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// The client's pod informer reuses specs as cache.TypedSource's does: an
// update that leaves the spec alone (a label, an annotation) is cached
// with the Spec of the object it replaces — the same Containers array — and
// an update of the spec is cached with a spec of its own. (Interning shares
// strings and small maps, never a slice, so a shared Containers array is
// spec reuse.)
func TestClientInformerReusesUnchangedSpecs(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	createPods(t, c, appliedPod(ns, "a"))
	inf, err := client.InformerFor[*corev1.Pod](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	runFactory(t, c)
	if err := inf.WaitForSync(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	cached := func() *corev1.Pod {
		p, ok := inf.Lister().Get(ns, "a")
		if !ok {
			t.Fatal("pod a not cached")
		}
		return p
	}
	// patch applies a patch of type pt to pod a and returns the cached pod once
	// the informer has the patched version.
	patch := func(what, body string, pt types.PatchType) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a"}}
		if err := c.Patch(ctxFor(t), p, client.RawPatch(pt, []byte(body))); err != nil {
			t.Fatalf("patch %s of pod a: %v", what, err)
		}
		var got *corev1.Pod
		testenv.Eventually(t, 30*time.Second, "the cache to have pod a after the "+what+" patch", func() (bool, error) {
			got = cached()
			return got.ResourceVersion == p.ResourceVersion, nil
		})
		return got
	}
	containers := func(p *corev1.Pod) *corev1.Container { return unsafe.SliceData(p.Spec.Containers) }

	first := cached()
	labeled := patch("label", `{"metadata":{"labels":{"rev":"2"}}}`, types.MergePatchType)
	if labeled == first || labeled.Labels["rev"] != "2" {
		t.Fatalf("the label patch is not a new cached object with the label: %v", labeled.Labels)
	}
	if containers(labeled) != containers(first) {
		t.Error("after a label update the cached pod has a spec of its own, not the previous one's")
	}
	annotated := patch("annotation", `{"metadata":{"annotations":{"note":"hi"}}}`, types.MergePatchType)
	if containers(annotated) != containers(labeled) {
		t.Error("after an annotation update the cached pod has a spec of its own, not the previous one's")
	}
	image := "registry.example.com/web:2"
	respecced := patch("image", `{"spec":{"containers":[{"name":"app","image":"`+image+`"}]}}`, types.StrategicMergePatchType)
	if respecced.Spec.Containers[0].Image != image {
		t.Fatalf("cached image %q after the image patch, want %q", respecced.Spec.Containers[0].Image, image)
	}
	if containers(respecced) == containers(annotated) {
		t.Error("after a spec update the cached pod still shares the previous spec")
	}
	if first.Spec.Containers[0].Image != "registry.example.com/web:1" {
		t.Errorf("the first cached pod's image changed to %q: a shared spec was written", first.Spec.Containers[0].Image)
	}
}
