// Package foo is an example operator written with Skiff, the way a user
// would write one. A Foo (demo.skiff.dev/v1, a typed Go struct) owns a
// ConfigMap named foo-<name> whose data.message is the Foo's spec.message;
// the Foo's status records the generation it last reconciled, the
// ConfigMap's name and a phase.
//
// Reads come from the manager's informer caches through the typed client
// (no API calls); each Foo costs at most one ConfigMap write and one status
// write per change. The client's read-your-own-writes means the next
// reconcile of a Foo sees the status this one wrote, even before the watch
// delivers it: no second write, no self-inflicted conflict.
package foo

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/condition"
	"github.com/skiffkit/skiff/controller"
)

// ManagedBy is the label value that marks the ConfigMaps this operator
// owns (label app.kubernetes.io/managed-by), so its ConfigMap informer
// watches only those.
const ManagedBy = "skiff-foo"

// ManagedByLabel selects the ConfigMaps this operator owns.
const ManagedByLabel = "app.kubernetes.io/managed-by=" + ManagedBy

// GVR is the Foo resource, for tools that talk to it without the Go type
// (kubectl-like clients, the demo's load generator).
var GVR = GroupVersion.WithResource("foos")

// ConfigMapName is the name of the ConfigMap a Foo owns.
func ConfigMapName(foo string) string { return "foo-" + foo }

// ConditionReady is the Foo's condition type: True when its ConfigMap
// holds the current spec.message.
const ConditionReady = "Ready"

// Reconciler reconciles one Foo.
type Reconciler struct {
	Client *client.Client
	// Now stamps condition transitions. Default time.Now.
	Now func() time.Time
}

// Reconcile implements controller.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req controller.Request) (controller.Result, error) {
	f, err := client.Get[*Foo](ctx, r.Client, req)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, nil // deleted; the garbage collector removes the ConfigMap
	}
	if err != nil {
		return controller.Result{}, err
	}
	if f.Spec.Fail {
		return controller.Result{}, errors.New("spec.fail is set")
	}
	cmName := ConfigMapName(f.Name)
	cm, err := client.Get[*corev1.ConfigMap](ctx, r.Client, client.ObjectKey{Namespace: f.Namespace, Name: cmName})
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: cmName, Namespace: f.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": ManagedBy}},
			Data:       map[string]string{"message": f.Spec.Message},
		}
		if err := r.Client.SetControllerReference(f, cm); err != nil {
			return controller.Result{}, controller.Terminal(err)
		}
		err := r.Client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) { // the cache sees only managed ConfigMaps: this one is someone else's
			return controller.Result{}, controller.Terminal(fmt.Errorf("configmap %s/%s exists and is not managed by this operator", f.Namespace, cmName))
		}
		if err != nil {
			return controller.Result{}, fmt.Errorf("create configmap %s/%s: %w", f.Namespace, cmName, err)
		}
	case err != nil:
		return controller.Result{}, err
	case !metav1.IsControlledBy(cm, f):
		return controller.Result{}, controller.Terminal(fmt.Errorf("configmap %s/%s exists and is not owned by foo %s", f.Namespace, cmName, f.Name))
	case cm.Data["message"] != f.Spec.Message:
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data["message"] = f.Spec.Message
		if err := r.Client.Update(ctx, cm); err != nil {
			return controller.Result{}, fmt.Errorf("update configmap %s/%s: %w", f.Namespace, cmName, err)
		}
	}
	return controller.Result{}, r.updateStatus(ctx, f, cmName)
}

func (r *Reconciler) updateStatus(ctx context.Context, f *Foo, cmName string) error {
	changed, err := condition.Set(&f.Status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "ConfigMapCurrent",
		Message: "configmap " + cmName + " holds spec.message", ObservedGeneration: f.Generation,
	}, r.now())
	if err != nil {
		return controller.Terminal(err)
	}
	if !changed && f.Status.ObservedGeneration == f.Generation && f.Status.Phase == "Ready" && f.Status.ConfigMap == cmName {
		return nil
	}
	f.Status.ObservedGeneration, f.Status.Phase, f.Status.ConfigMap = f.Generation, "Ready", cmName
	err = r.Client.UpdateStatus(ctx, f)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // a newer Foo, or its deletion, is on its way through the watch
	}
	if err != nil {
		return fmt.Errorf("update status of foo %s/%s: %w", f.Namespace, f.Name, err)
	}
	return nil
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Converged reports whether f's status says its current generation is
// reconciled: phase Ready and a Ready condition computed from this
// generation.
func Converged(f *Foo) bool {
	return f.Status.Phase == "Ready" && f.Status.ObservedGeneration == f.Generation &&
		condition.IsTrue(f.Status.Conditions, ConditionReady) && condition.IsCurrent(f.Status.Conditions, ConditionReady, f.Generation)
}

// CRD is the Foo CustomResourceDefinition (config/crd.yaml).
//
//go:embed config/crd.yaml
var CRD []byte
