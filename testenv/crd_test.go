package testenv_test

import (
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/testenv"
)

func TestApplyCRDAndCreateCustomObject(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	names, err := testenv.ApplyCRDFiles(ctx, shared.Config(), "testdata/widgets-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "widgets.test.skiff.dev" {
		t.Fatalf("applied %v", names)
	}
	// Applying again updates in place.
	if _, err := testenv.ApplyCRDFiles(ctx, shared.Config(), "testdata/widgets-crd.yaml"); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	ns := testenv.Namespace(t, shared.Config())
	dc, err := dynamic.NewForConfig(shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	widgets := dc.Resource(schema.GroupVersionResource{Group: "test.skiff.dev", Version: "v1", Resource: "widgets"}).Namespace(ns)
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.skiff.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w1"},
		"spec":     map[string]any{"size": int64(3)},
	}}
	if _, err := widgets.Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create widget: %v", err)
	}
	got, err := widgets.Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size"); size != 3 {
		t.Fatalf("spec.size = %d, want 3", size)
	}
	// The schema is enforced: size must be >= 1.
	bad := w.DeepCopy()
	bad.SetName("w2")
	unstructured.SetNestedField(bad.Object, int64(0), "spec", "size")
	if _, err := widgets.Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("create invalid widget: err=%v, want Invalid", err)
	}
}

func TestApplyCRDsRejectsBadDocuments(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	cases := map[string]struct {
		doc  string
		want string
	}{
		"not yaml":   {"{{{", "CRD document 0"},
		"not a CRD":  {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", `kind "ConfigMap"`},
		"no name":    {"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec: {}\n", "no metadata.name"},
		"bad schema": {"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: bad.test.skiff.dev\nspec:\n  group: test.skiff.dev\n", "apply CRD bad.test.skiff.dev"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := testenv.ApplyCRDs(ctx, shared.Config(), []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want it to contain %q", err, tc.want)
			}
		})
	}
}
