package client

import (
	"context"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SetControllerReference makes owner the controller of obj: an owner
// reference with controller and blockOwnerDeletion set, apiVersion and kind
// from the client's scheme. It fails if obj already has another controller,
// or if a namespaced obj would be owned by an object of another namespace
// (Kubernetes' garbage collector does not allow that). Nothing is written;
// Create or Update obj afterwards.
func (c *Client) SetControllerReference(owner, obj Object) error {
	gvk, err := c.GVKFor(owner)
	if err != nil {
		return err
	}
	if owner.GetUID() == "" {
		return fmt.Errorf("client: owner %s %s has no UID (read it from the server first)", gvk.Kind, KeyOf(owner))
	}
	if ns := owner.GetNamespace(); ns != "" && ns != obj.GetNamespace() {
		return fmt.Errorf("client: %s %s cannot own %s: owners must be in the same namespace or cluster-scoped", gvk.Kind, KeyOf(owner), KeyOf(obj))
	}
	t := true
	ref := metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: &t, BlockOwnerDeletion: &t}
	refs := obj.GetOwnerReferences()
	for i, r := range refs {
		if r.Controller != nil && *r.Controller && r.UID != owner.GetUID() {
			return fmt.Errorf("client: %s already has controller %s %s", KeyOf(obj), r.Kind, r.Name)
		}
		if r.UID == owner.GetUID() {
			refs[i] = ref
			obj.SetOwnerReferences(refs)
			return nil
		}
	}
	obj.SetOwnerReferences(append(refs, ref))
	return nil
}

// Operation says what CreateOrUpdate did.
type Operation string

// Operations of CreateOrUpdate.
const (
	OperationNone    Operation = "unchanged"
	OperationCreated Operation = "created"
	OperationUpdated Operation = "updated"
)

// CreateOrUpdate reads the object named by obj's namespace and name (from the
// cache when there is one; read-your-own-writes applies), calls mutate on
// it (or on obj itself if there is none), and creates it, updates it if
// mutate changed it, or does nothing. obj holds the result. mutate must not
// change the name or namespace.
func CreateOrUpdate[T Object](ctx context.Context, c *Client, obj T, mutate func(T) error) (Operation, error) {
	key := KeyOf(obj)
	have, err := Get[T](ctx, c, key)
	switch {
	case apierrors.IsNotFound(err):
		if err := mutate(obj); err != nil {
			return OperationNone, err
		}
		if KeyOf(obj) != key {
			return OperationNone, fmt.Errorf("client: CreateOrUpdate: mutate renamed %s to %s", key, KeyOf(obj))
		}
		if err := c.Create(ctx, obj); err != nil {
			return OperationNone, err
		}
		return OperationCreated, nil
	case err != nil:
		return OperationNone, err
	}
	before := have.DeepCopyObject()
	if err := mutate(have); err != nil {
		return OperationNone, err
	}
	if KeyOf(have) != key {
		return OperationNone, fmt.Errorf("client: CreateOrUpdate: mutate renamed %s to %s", key, KeyOf(have))
	}
	if equality.Semantic.DeepEqual(before, have) {
		reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(have).Elem())
		return OperationNone, nil
	}
	if err := c.Update(ctx, have); err != nil {
		return OperationNone, err
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(have).Elem())
	return OperationUpdated, nil
}
