package integration

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// gadget is a typed view of the things CRD that implements runtime.Object,
// as CustomSource requires.
type gadget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Size int `json:"size"`
	} `json:"spec"`
}

func (g *gadget) DeepCopyObject() runtime.Object {
	c := *g
	g.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// TestCustomSourceFollowsTheServer: a typed and an unstructured informer
// over CustomSource (watch-list and paginated lists) sync, skip and count a
// malformed object, follow updates and deletes, and never hold
// managedFields or the last-applied annotation.
func TestCustomSourceFollowsTheServer(t *testing.T) {
	for _, mode := range []cache.WatchListMode{cache.WatchListOn, cache.WatchListOff, cache.WatchListAuto} {
		t.Run(fmt.Sprint("mode=", []string{"auto", "off", "on"}[mode]), func(t *testing.T) {
			ctx := ctxFor(t, 2*time.Minute)
			cfg := shared.Config()
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
			src, err := cache.CustomSourceFor[*gadget](cfg, gvr, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			typed := cache.New(src, cache.Options[*gadget]{Logger: quiet, WatchList: mode, PageSize: 2})
			usrc, err := cache.CustomSourceFor[*unstructured.Unstructured](cfg, gvr, cache.Scope{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
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
			if !ok || one.Spec.Size != 1 || one.ManagedFields != nil || one.Annotations["keep"] != "me" || len(one.Annotations) != 1 {
				t.Fatalf("one = %+v, %v; want size 1, no managedFields, only the keep annotation", one, ok)
			}
			// KeepAll: what is absent was cut while decoding, not by a transform.
			u, ok := untyped.Lister().Get(ns, "one")
			if !ok || u.GetManagedFields() != nil || len(u.GetAnnotations()) != 1 {
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
				if one == nil || one.Spec.Size != 10 || big == nil || big.Spec.Size != 2 || three || uthree {
					return fmt.Sprintf("typed one=%+v big=%+v three present=%v, unstructured three present=%v", one, big, three, uthree)
				}
				return ""
			})
		})
	}
}
