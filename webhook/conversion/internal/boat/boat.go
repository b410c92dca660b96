// Package boat is a custom resource with two versions for the conversion
// webhook's tests and examples: v1 (storage) has spec.size; v2 renamed it
// spec.replicas and added spec.tier, which v1 keeps in an annotation.
package boat

import (
	"errors"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of Boats.
const Group = "conversion.test.skiff.dev"

var (
	V1Version = schema.GroupVersion{Group: Group, Version: "v1"}
	V2Version = schema.GroupVersion{Group: Group, Version: "v2"}
)

// TierAnnotation holds v2's spec.tier on a v1 Boat.
const TierAnnotation = "conversion.test.skiff.dev/tier"

// FailTier is a tier whose conversion fails, for error-path tests.
const FailTier = "explode"

// AddToScheme registers both versions (and their lists).
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypeWithName(V1Version.WithKind("Boat"), &V1{})
	s.AddKnownTypeWithName(V1Version.WithKind("BoatList"), &V1List{})
	s.AddKnownTypeWithName(V2Version.WithKind("Boat"), &V2{})
	s.AddKnownTypeWithName(V2Version.WithKind("BoatList"), &V2List{})
	metav1.AddToGroupVersion(s, V1Version)
	metav1.AddToGroupVersion(s, V2Version)
	return nil
}

// V1 is a Boat at version v1.
type V1 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              V1Spec `json:"spec"`
}

// V1Spec is v1's spec.
type V1Spec struct {
	Size int `json:"size"`
}

// V2 is a Boat at version v2, the hub.
type V2 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              V2Spec `json:"spec"`
}

// V2Spec is v2's spec.
type V2Spec struct {
	Replicas int    `json:"replicas"`
	Tier     string `json:"tier,omitempty"`
}

// ToV2 converts v1 to the hub: size becomes replicas, the tier annotation
// becomes spec.tier (and is removed).
func ToV2(src *V1, dst *V2) error {
	dst.Spec.Replicas = src.Spec.Size
	if tier, ok := dst.Annotations[TierAnnotation]; ok {
		dst.Spec.Tier = tier
		delete(dst.Annotations, TierAnnotation)
		if len(dst.Annotations) == 0 {
			dst.Annotations = nil
		}
	}
	if dst.Spec.Tier == FailTier {
		return errors.New("tier " + strconv.Quote(FailTier) + " cannot be converted")
	}
	return nil
}

// FromV2 converts the hub to v1: replicas becomes size, spec.tier is kept
// in the tier annotation.
func FromV2(src *V2, dst *V1) error {
	if src.Spec.Tier == FailTier {
		return errors.New("tier " + strconv.Quote(FailTier) + " cannot be converted")
	}
	dst.Spec.Size = src.Spec.Replicas
	if src.Spec.Tier != "" {
		if dst.Annotations == nil {
			dst.Annotations = map[string]string{}
		}
		dst.Annotations[TierAnnotation] = src.Spec.Tier
	}
	return nil
}

// V1List is a list of v1 Boats.
type V1List struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []V1 `json:"items"`
}

// V2List is a list of v2 Boats.
type V2List struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []V2 `json:"items"`
}

// DeepCopyObject implements runtime.Object.
func (b *V1) DeepCopyObject() runtime.Object {
	out := *b
	b.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (b *V2) DeepCopyObject() runtime.Object {
	out := *b
	b.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *V1List) DeepCopyObject() runtime.Object {
	out := *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]V1, len(l.Items))
	for i := range l.Items {
		out.Items[i] = *l.Items[i].DeepCopyObject().(*V1)
	}
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *V2List) DeepCopyObject() runtime.Object {
	out := *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]V2, len(l.Items))
	for i := range l.Items {
		out.Items[i] = *l.Items[i].DeepCopyObject().(*V2)
	}
	return &out
}

// CRD is the Boat CustomResourceDefinition: v1 served and stored, v2 served,
// structural schemas, no conversion yet (the tests set it).
const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: boats.conversion.test.skiff.dev
spec:
  group: conversion.test.skiff.dev
  scope: Namespaced
  preserveUnknownFields: false
  names: {plural: boats, singular: boat, kind: Boat, listKind: BoatList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
  - name: v2
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
              tier: {type: string}
`
