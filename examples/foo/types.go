package foo

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the Foo API's group and version.
var GroupVersion = schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}

// AddToScheme registers Foo and FooList in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Foo{}, &FooList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Foo is the custom resource (config/crd.yaml).
type Foo struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              FooSpec   `json:"spec"`
	Status            FooStatus `json:"status,omitempty"`
}

// FooSpec is what the user wants.
type FooSpec struct {
	// Message is rendered into the owned ConfigMap's data.message.
	Message string `json:"message"`
	// Fail makes every reconcile fail (to show retries and dead letters).
	Fail bool `json:"fail,omitempty"`
	// Size is how big the Foo is, 0 to MaxSize. The webhooks (Webhooks)
	// default it to DefaultSize and refuse a value out of range; the CRD
	// schema does not bound it, so that the refusal and its reason come
	// from the validating webhook. The reconciler does not use it.
	Size *int32 `json:"size,omitempty"`
}

// FooStatus is what the operator last did.
type FooStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Phase              string `json:"phase,omitempty"`
	ConfigMap          string `json:"configMap,omitempty"`
	Message            string `json:"message,omitempty"`
	// Conditions: Ready, True once the ConfigMap holds the current message.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FooList is a list of Foos.
type FooList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Foo `json:"items"`
}

// DeepCopyInto copies f into out.
func (f *Foo) DeepCopyInto(out *Foo) {
	*out = *f
	f.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if f.Spec.Size != nil {
		size := *f.Spec.Size
		out.Spec.Size = &size
	}
	if f.Status.Conditions != nil {
		out.Status.Conditions = make([]metav1.Condition, len(f.Status.Conditions))
		for i := range f.Status.Conditions {
			f.Status.Conditions[i].DeepCopyInto(&out.Status.Conditions[i])
		}
	}
}

// DeepCopy returns a deep copy of f.
func (f *Foo) DeepCopy() *Foo {
	if f == nil {
		return nil
	}
	out := new(Foo)
	f.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (f *Foo) DeepCopyObject() runtime.Object { return f.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *FooList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &FooList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Foo, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
