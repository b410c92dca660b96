package cache

import (
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Structured turns a source of unstructured objects (custom resources,
// JSON on the wire) into one of T, a pointer to a Go struct with json tags —
// typically a CRD type that embeds metav1.TypeMeta and metav1.ObjectMeta.
//
// An object that does not fit T (a field of the wrong type, say a string
// where T has an int) is malformed for this informer: it is skipped, logged
// and counted in Stats().Skipped, and the informer carries on with the
// rest. Fields T does not declare are ignored.
func Structured[T Object](src Source[*unstructured.Unstructured]) Source[T] {
	elem := reflect.TypeFor[T]()
	if elem.Kind() != reflect.Pointer || elem.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("cache.Structured: %v is not a pointer to a struct", elem))
	}
	decode := src.Decode
	return Source[T]{
		LW: src.LW,
		Decode: func(o runtime.Object) (T, error) {
			var zero T
			u, err := decode(o)
			if err != nil {
				return zero, err
			}
			t := reflect.New(elem.Elem()).Interface().(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
				return zero, fmt.Errorf("%s/%s does not fit %v: %w", u.GetNamespace(), u.GetName(), elem, err)
			}
			return t, nil
		},
		Resource: src.Resource,
		Scope:    src.Scope,
	}
}
