package samplecontroller_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/samplecontroller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error {
		env = e
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := testenv.ApplyCRDs(ctx, e.Config(), samplecontroller.CRD)
		return err
	}))
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	testenv.Eventually(t, time.Minute, what, cond)
}

// TestSampleController drives the port the way sample-controller's users
// see it: a Foo gets its Deployment, replicas follow the Foo, the
// Deployment's available replicas show in the Foo's status, a Deployment
// that belongs to someone else is left alone, and deleting the Foo removes
// its Deployment.
func TestSampleController(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := samplecontroller.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr, err := manager.New(manager.Options{Config: env.Config(), Scheme: scheme, Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := samplecontroller.Setup(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	ns := testenv.Namespace(t, env.Config())
	c, err := client.New(env.Config(), client.Options{Scheme: scheme}) // a user's client: no cache
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(env.Config())
	foo := &samplecontroller.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "example-foo"},
		Spec: samplecontroller.FooSpec{DeploymentName: "example-foo", Replicas: ptr.To[int32](1)}}
	if err := c.Create(ctx, foo); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment created and owned", func() (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "example-foo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return metav1.IsControlledBy(d, foo) && *d.Spec.Replicas == 1, nil
	})

	// Replicas follow the Foo.
	eventually(t, "foo updated", func() (bool, error) {
		f, err := client.Get[*samplecontroller.Foo](ctx, c, client.KeyOf(foo))
		if err != nil {
			return false, err
		}
		f.Spec.Replicas = ptr.To[int32](3)
		return c.Update(ctx, f) == nil, nil
	})
	eventually(t, "deployment scaled to 3", func() (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "example-foo", metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 3, err
	})

	// Status: act as the deployment controller (not running here) and
	// report 2 available replicas; Owns brings the change to the Foo.
	eventually(t, "deployment status written", func() (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "example-foo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d.Status.Replicas, d.Status.AvailableReplicas, d.Status.ReadyReplicas = 2, 2, 2
		_, err = cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		return err == nil, err
	})
	eventually(t, "foo status mirrors available replicas", func() (bool, error) {
		f, err := client.Get[*samplecontroller.Foo](ctx, c, client.KeyOf(foo))
		return err == nil && f.Status.AvailableReplicas == 2, err
	})

	// A Deployment someone else owns is not touched.
	other := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"x": "y"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	terminalBefore := controllerStats(mgr).Terminal
	thief := &samplecontroller.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "thief"},
		Spec: samplecontroller.FooSpec{DeploymentName: "taken", Replicas: ptr.To[int32](5)}}
	if err := c.Create(ctx, thief); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the foreign deployment refused as a terminal error", func() (bool, error) {
		return controllerStats(mgr).Terminal > terminalBefore, nil
	})
	if d, err := cs.AppsV1().Deployments(ns).Get(ctx, "taken", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 1 || len(d.OwnerReferences) != 0 {
		t.Fatalf("the foreign deployment was changed: %+v, %v", d, err)
	}
	// The same Events as sample-controller, as events.k8s.io/v1.
	eventually(t, "Synced and ErrResourceExists events", func() (bool, error) {
		evs, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var synced, exists bool
		for _, e := range evs.Items {
			synced = synced || e.Reason == samplecontroller.ReasonSynced && e.Regarding.Name == "example-foo" && e.Regarding.Kind == "Foo" && e.Type == "Normal"
			exists = exists || e.Reason == samplecontroller.ReasonResourceExists && e.Regarding.Name == "thief" && e.Type == "Warning"
		}
		return synced && exists, nil
	})

	// Deleting the Foo removes its Deployment (garbage collector).
	if err := c.Delete(ctx, foo); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment garbage-collected", func() (bool, error) {
		_, err := cs.AppsV1().Deployments(ns).Get(ctx, "example-foo", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func controllerStats(mgr *manager.Manager) controller.Stats {
	for _, c := range mgr.State().Controllers {
		if c.Name == "foo" {
			return c.Stats
		}
	}
	return controller.Stats{}
}
