package cache

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
)

// fooCR is examples/foo's Foo (which imports this package, so a test here
// cannot): the custom resource of bench's I5.
type fooCR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Message string `json:"message"`
		Fail    bool   `json:"fail,omitempty"`
		Size    *int32 `json:"size,omitempty"`
	} `json:"spec"`
	Status struct {
		ObservedGeneration int64              `json:"observedGeneration,omitempty"`
		Phase              string             `json:"phase,omitempty"`
		ConfigMap          string             `json:"configMap,omitempty"`
		Message            string             `json:"message,omitempty"`
		Conditions         []metav1.Condition `json:"conditions,omitempty"`
	} `json:"status,omitempty"`
}

func (f *fooCR) DeepCopyObject() runtime.Object { c := *f; return &c }

// fooJSON is Foo i as the API server sends it in I5 (bench's benchFoo:
// six labels, three annotations, the last-applied copy, a 600-byte
// message), with the server's metadata and managedFields.
func fooJSON(i int) []byte {
	app := fmt.Sprintf("svc-%03d", i%97)
	meta := map[string]any{
		"name":              fmt.Sprintf("%s-foo-%05d", app, i),
		"namespace":         "bench",
		"uid":               fmt.Sprintf("6f1c2a4e-0000-4000-8000-%012d", i),
		"resourceVersion":   fmt.Sprint(100000 + i),
		"generation":        1,
		"creationTimestamp": "2026-11-26T11:00:00Z",
		"labels": map[string]any{
			"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app + "-prod",
			"app.kubernetes.io/component": "frontend", "app.kubernetes.io/part-of": "shop",
			"app.kubernetes.io/managed-by": "skiff-bench", "team": fmt.Sprintf("team-%d", i%7),
		},
		"annotations": map[string]any{
			"demo.skiff.dev/owner":    fmt.Sprintf("owner-%d@example.com", i%13),
			"demo.skiff.dev/revision": fmt.Sprint(i % 5),
			"demo.skiff.dev/note":     "created by the I5 benchmark",
		},
	}
	obj := map[string]any{
		"apiVersion": "demo.skiff.dev/v1",
		"kind":       "Foo",
		"metadata":   meta,
		"spec": map[string]any{
			"message": fmt.Sprintf("foo %d: ", i) + strings.Repeat("lorem ipsum dolor sit amet ", 22),
			"fail":    false,
		},
	}
	applied, _ := json.Marshal(obj)
	meta["annotations"].(map[string]any)[LastAppliedAnnotation] = string(applied)
	meta["managedFields"] = []any{map[string]any{
		"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "demo.skiff.dev/v1",
		"time": "2026-11-26T11:00:00Z", "fieldsType": "FieldsV1",
		"fieldsV1": map[string]any{"f:spec": map[string]any{".": map[string]any{}, "f:message": map[string]any{}, "f:fail": map[string]any{}}},
	}}
	b, _ := json.Marshal(obj)
	return b
}

// TestFooJSONFast: the benchmark's objects take the fast path.
func TestFooJSONFast(t *testing.T) {
	for i := range 50 {
		in := fooJSON(i)
		if !fastVsKjson[fooCR](t, string(in)) || !wireVsStrip[fooCR](t, string(in)) {
			t.Fatalf("fast path refused Foo %d", i)
		}
		stripped, err := stripJSONObject(append([]byte(nil), in...))
		if err != nil || !fastVsKjson[fooCR](t, string(stripped)) {
			t.Fatalf("fast path refused stripped Foo %d (%v)", i, err)
		}
	}
}

// BenchmarkJSONStructDecode decodes 2000 Foos as I5's informer receives
// them: kjson against the fast path on the Foos with managedFields and the
// last-applied annotation already cut; and, on the Foos as served,
// stripJSONObject then kjson (wireDecoder.decode without the fast path)
// against wireDecoder.decode (the wire plan skips what strip would cut).
// fooWire is n Foos as the server sends them (raw) and as stripJSONObject
// leaves them (objs), with the stripped bytes' total size.
func fooWire(b *testing.B, n int) (raw, objs [][]byte, size int) {
	b.Helper()
	raw, objs = make([][]byte, n), make([][]byte, n)
	for i := range objs {
		raw[i] = fooJSON(i)
		s, err := stripJSONObject(append([]byte(nil), raw[i]...))
		if err != nil {
			b.Fatal(err)
		}
		objs[i] = s
		size += len(s)
	}
	return raw, objs, size
}

func BenchmarkJSONStructDecode(b *testing.B) {
	const n = 2000
	raw, objs, size := fooWire(b, n)
	plan := jsonPlanFor(reflect.TypeFor[fooCR]())
	b.Run("decoder=kjson", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, o := range objs {
				f := &fooCR{}
				if err := kjson.UnmarshalCaseSensitivePreserveInts(o, f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("decoder=fast", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, o := range objs {
				f := &fooCR{}
				if !decodeJSONStruct(plan, o, unsafe.Pointer(f)) {
					b.Fatal("fast path refused a Foo")
				}
			}
		}
	})
	buf := make([][]byte, n)
	b.Run("decoder=strip+kjson", func(b *testing.B) { // wireDecoder.decode without the fast path
		b.SetBytes(int64(size))
		for b.Loop() {
			for i, o := range raw {
				buf[i] = append(buf[i][:0], o...)
				s, err := stripJSONObject(buf[i])
				if err != nil {
					b.Fatal(err)
				}
				if err := kjson.UnmarshalCaseSensitivePreserveInts(s, &fooCR{}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	d := newWireDecoder[*fooCR]("foos")
	b.Run("decoder=wire", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for i, o := range raw {
				buf[i] = append(buf[i][:0], o...)
				if _, bad := d.decode(buf[i]); bad != nil {
					b.Fatal(bad.err)
				}
			}
		}
	})
}
