package integration

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// thing is a user's typed view of the schemaless things.cache.skiff.dev CRD.
type thing struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Size int `json:"size"`
	} `json:"spec"`
}

const thingsCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.cache.skiff.dev
spec:
  group: cache.skiff.dev
  scope: Namespaced
  names: {plural: things, singular: thing, kind: Thing, listKind: ThingList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`

// TestMalformedObjectsAreSkippedAndCounted: the server accepts any spec
// (no schema), so an object whose spec.size is a string is malformed for a
// typed informer. It must be skipped and counted while the rest syncs, and
// picked up once it is fixed.
func TestMalformedObjectsAreSkippedAndCounted(t *testing.T) {
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
	mk := func(name string, size any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cache.skiff.dev/v1", "kind": "Thing",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"size": size},
		}}
	}
	for name, size := range map[string]any{"one": int64(1), "big": "very", "three": int64(3)} {
		if _, err := things.Create(ctx, mk(name, size), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := cache.UnstructuredSource(cfg, gvr, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(cache.Structured[*thing](src), cache.Options[*thing]{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatalf("a malformed object must not stop the sync: %v", err)
	}
	if st := inf.Stats(); st.Objects != 2 || st.Skipped != 1 {
		t.Fatalf("stats %+v, want 2 objects and 1 skipped", st)
	}
	if th, ok := inf.Lister().Get(ns, "three"); !ok || th.Spec.Size != 3 {
		t.Fatalf("three = %+v, %v; want size 3", th, ok)
	}
	big, err := things.Get(ctx, "big", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(big.Object, int64(2), "spec", "size")
	if _, err := things.Update(ctx, big, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if th, ok := inf.Lister().Get(ns, "big"); !ok || th.Spec.Size != 2 {
			return fmt.Sprintf("fixed object not in the cache; stats %+v", inf.Stats())
		}
		return ""
	})
}
