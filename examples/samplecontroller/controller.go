// Package samplecontroller ports Kubernetes' sample-controller
// (k8s.io/sample-controller) to Skiff: a Foo (samplecontroller.k8s.io/
// v1alpha1) asks for a Deployment of nginx with a name and a replica count;
// the controller creates and owns it, keeps its replicas in line with the
// Foo, and mirrors its available replicas into the Foo's status.
//
// The original needs generated clientsets, listers and informers, a
// hand-written work queue loop and an event broadcaster (about 300 lines of
// controller.go plus main.go). Here it is a typed reconciler over the typed
// client and the builder, recording the same Events (events.k8s.io/v1).
package samplecontroller

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/event"
	"github.com/skiffkit/skiff/manager"
)

// CRD is the Foo CustomResourceDefinition (config/crd.yaml).
//
//go:embed config/crd.yaml
var CRD []byte

// Reasons of the Events the controller records, as sample-controller's.
const (
	ReasonSynced         = "Synced"
	ReasonResourceExists = "ErrResourceExists"
)

// Reconciler reconciles one Foo.
type Reconciler struct {
	Client *client.Client
	Events *event.Recorder
}

// Setup registers the controller with mgr (whose scheme must know Foo).
func Setup(mgr *manager.Manager) error {
	_, err := builder.Build(mgr, &Reconciler{Client: mgr.Client(), Events: mgr.EventRecorder()},
		builder.For[*Foo](),
		builder.Owns[*appsv1.Deployment](),
	)
	return err
}

// Reconcile implements controller.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req controller.Request) (controller.Result, error) {
	foo, err := client.Get[*Foo](ctx, r.Client, req)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, nil // deleted: the garbage collector removes its Deployment
	}
	if err != nil {
		return controller.Result{}, err
	}
	if foo.Spec.DeploymentName == "" {
		return controller.Result{}, controller.Terminal(errors.New("spec.deploymentName must be specified"))
	}
	key := client.ObjectKey{Namespace: foo.Namespace, Name: foo.Spec.DeploymentName}
	dep, err := client.Get[*appsv1.Deployment](ctx, r.Client, key)
	if apierrors.IsNotFound(err) {
		dep = newDeployment(foo)
		if err = r.Client.SetControllerReference(foo, dep); err == nil {
			err = r.Client.Create(ctx, dep)
		}
	}
	if err != nil {
		return controller.Result{}, err
	}
	if !metav1.IsControlledBy(dep, foo) {
		err := fmt.Errorf("deployment %s already exists and is not managed by Foo %s", key, foo.Name)
		r.Events.Event(foo, event.Warning, ReasonResourceExists, "Sync", err.Error())
		return controller.Result{}, controller.Terminal(err)
	}
	if foo.Spec.Replicas != nil && (dep.Spec.Replicas == nil || *foo.Spec.Replicas != *dep.Spec.Replicas) {
		dep.Spec.Replicas = foo.Spec.Replicas
		if err := r.Client.Update(ctx, dep); err != nil {
			return controller.Result{}, err
		}
	}
	if foo.Status.AvailableReplicas != dep.Status.AvailableReplicas {
		foo.Status.AvailableReplicas = dep.Status.AvailableReplicas
		if err := r.Client.UpdateStatus(ctx, foo); err != nil {
			return controller.Result{}, err
		}
	}
	r.Events.Event(foo, event.Normal, ReasonSynced, "Sync", "Foo synced successfully")
	return controller.Result{}, nil
}

// newDeployment is the Deployment foo asks for: nginx, labelled with the
// Foo's name.
func newDeployment(foo *Foo) *appsv1.Deployment {
	labels := map[string]string{"app": "nginx", "controller": foo.Name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: foo.Spec.DeploymentName, Namespace: foo.Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: foo.Spec.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:latest"}}},
			},
		},
	}
}
