package cache

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LastAppliedAnnotation is the annotation kubectl apply writes; it holds a
// full copy of the object and is dropped by DefaultTransform.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// metaWriter is implemented by every type embedding metav1.ObjectMeta,
// *unstructured.Unstructured and *metav1.PartialObjectMetadata.
type metaWriter interface {
	SetManagedFields([]metav1.ManagedFieldsEntry)
	GetAnnotations() map[string]string
	SetAnnotations(map[string]string)
}

// DefaultTransform strips metadata.managedFields and the
// kubectl.kubernetes.io/last-applied-configuration annotation in place. Those
// two are typically half of a realistic object's size and no controller
// should read them from a cache. It returns obj.
func DefaultTransform[T Object](obj T) T {
	if m, ok := any(obj).(metaWriter); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[LastAppliedAnnotation]; ok {
				// Set back, not only deleted: Unstructured's
				// GetAnnotations returns a copy.
				delete(a, LastAppliedAnnotation)
				if len(a) == 0 {
					a = nil
				}
				m.SetAnnotations(a)
			}
		}
	}
	return obj
}
