// Package foo is an example operator written with Skiff, the way a user
// would write one. A Foo (demo.skiff.dev/v1) owns a ConfigMap named
// foo-<name> whose data.message is the Foo's spec.message; the Foo's status
// records the generation it last reconciled, the ConfigMap's name and a
// phase (Ready, or Failed with a message).
//
// Reads come from informer caches (no API calls); each Foo costs at most one
// ConfigMap write and one status write per change.
package foo

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/controller"
)

// GVR is the Foo resource.
var GVR = schema.GroupVersionResource{Group: "demo.skiff.dev", Version: "v1", Resource: "foos"}

// ManagedByLabel marks the ConfigMaps this operator owns, so its ConfigMap
// informer watches only those.
const ManagedByLabel = "app.kubernetes.io/managed-by=skiff-foo"

// ConfigMapName is the name of the ConfigMap a Foo owns.
func ConfigMapName(foo string) string { return "foo-" + foo }

// Reconciler reconciles one Foo. Its lookups read caches; Kube and Dynamic
// write.
type Reconciler struct {
	GetFoo       func(namespace, name string) (*unstructured.Unstructured, bool)
	GetConfigMap func(namespace, name string) (*corev1.ConfigMap, bool)
	Kube         kubernetes.Interface
	Dynamic      dynamic.Interface

	// overwritten maps a key to the resourceVersion our last successful
	// status write replaced. While the cache still holds that version, it
	// has not seen our own write yet, and writing again would only conflict.
	overwritten sync.Map
}

// Reconcile implements controller.Reconciler for "namespace/name" keys.
func (r *Reconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return controller.Result{}, controller.Terminal(fmt.Errorf("key %q is not namespace/name", key))
	}
	foo, ok := r.GetFoo(ns, name)
	if !ok {
		r.overwritten.Delete(key)
		return controller.Result{}, nil // deleted; the garbage collector removes the ConfigMap
	}
	message, _, _ := unstructured.NestedString(foo.Object, "spec", "message")
	if fail, _, _ := unstructured.NestedBool(foo.Object, "spec", "fail"); fail {
		return controller.Result{}, errors.New("spec.fail is set")
	}
	cmName := ConfigMapName(name)
	cm, exists := r.GetConfigMap(ns, cmName)
	switch {
	case !exists:
		want := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: cmName, Namespace: ns,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "skiff-foo"},
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "demo.skiff.dev/v1", Kind: "Foo", Name: name, UID: foo.GetUID(),
					Controller: ptr(true), BlockOwnerDeletion: ptr(true),
				}},
			},
			Data: map[string]string{"message": message},
		}
		_, err := r.Kube.CoreV1().ConfigMaps(ns).Create(ctx, want, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) { // AlreadyExists: the cache is behind; the event will follow
			return controller.Result{}, fmt.Errorf("create configmap %s/%s: %w", ns, cmName, err)
		}
	case !ownedBy(cm, foo):
		return controller.Result{}, controller.Terminal(fmt.Errorf("configmap %s/%s exists and is not owned by foo %s", ns, cmName, name))
	case cm.Data["message"] != message:
		upd := cm.DeepCopy()
		if upd.Data == nil {
			upd.Data = map[string]string{}
		}
		upd.Data["message"] = message
		if _, err := r.Kube.CoreV1().ConfigMaps(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return controller.Result{}, fmt.Errorf("update configmap %s/%s: %w", ns, cmName, err)
		}
	}
	return controller.Result{}, r.updateStatus(ctx, foo, cmName)
}

func (r *Reconciler) updateStatus(ctx context.Context, foo *unstructured.Unstructured, cmName string) error {
	key := foo.GetNamespace() + "/" + foo.GetName()
	if rv, ok := r.overwritten.Load(key); ok && rv == foo.GetResourceVersion() {
		return nil // the cache lags behind our own status write; its event is on the way
	}
	gen := foo.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(foo.Object, "status", "observedGeneration")
	phase, _, _ := unstructured.NestedString(foo.Object, "status", "phase")
	have, _, _ := unstructured.NestedString(foo.Object, "status", "configMap")
	if observed == gen && phase == "Ready" && have == cmName {
		return nil
	}
	upd := foo.DeepCopy() // cached objects are shared and read-only
	unstructured.SetNestedField(upd.Object, gen, "status", "observedGeneration")
	unstructured.SetNestedField(upd.Object, "Ready", "status", "phase")
	unstructured.SetNestedField(upd.Object, cmName, "status", "configMap")
	_, err := r.Dynamic.Resource(GVR).Namespace(foo.GetNamespace()).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // a newer Foo, or its deletion, is on its way through the watch
	}
	if err != nil {
		return fmt.Errorf("update status of foo %s/%s: %w", foo.GetNamespace(), foo.GetName(), err)
	}
	r.overwritten.Store(key, foo.GetResourceVersion())
	return nil
}

// Converged reports whether foo's status says its current generation is
// reconciled.
func Converged(foo *unstructured.Unstructured) bool {
	observed, _, _ := unstructured.NestedInt64(foo.Object, "status", "observedGeneration")
	phase, _, _ := unstructured.NestedString(foo.Object, "status", "phase")
	return phase == "Ready" && observed == foo.GetGeneration()
}

func ownedBy(cm *corev1.ConfigMap, foo *unstructured.Unstructured) bool {
	for _, o := range cm.OwnerReferences {
		if o.UID == foo.GetUID() {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// CRD is the Foo CustomResourceDefinition (config/crd.yaml).
//
//go:embed config/crd.yaml
var CRD []byte
