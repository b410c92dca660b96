package bench

// The Foo operator of examples/foo written the way a controller-runtime user
// (kubebuilder style) writes it: a typed Foo registered in a scheme, a
// manager, builder.ControllerManagedBy(mgr).For(&Foo{}).Owns(&ConfigMap{}),
// and the manager's client (reads from its informer cache). The reconcile
// does what foo.Reconciler does, write for write.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/skiffkit/skiff/examples/foo"
)

var fooGV = schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}

// Foo is the typed demo.skiff.dev/v1 Foo (examples/foo/config/crd.yaml).
type Foo struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              FooSpec   `json:"spec"`
	Status            FooStatus `json:"status,omitempty"`
}

// FooSpec is a Foo's desired state.
type FooSpec struct {
	Message string `json:"message"`
	Fail    bool   `json:"fail,omitempty"`
}

// FooStatus is what the operator last reconciled.
type FooStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Phase              string             `json:"phase,omitempty"`
	ConfigMap          string             `json:"configMap,omitempty"`
	Message            string             `json:"message,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// FooList is a list of Foos.
type FooList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Foo `json:"items"`
}

func (f *Foo) DeepCopyInto(out *Foo) {
	*out = *f
	f.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if f.Status.Conditions != nil {
		out.Status.Conditions = make([]metav1.Condition, len(f.Status.Conditions))
		for i := range f.Status.Conditions {
			f.Status.Conditions[i].DeepCopyInto(&out.Status.Conditions[i])
		}
	}
}

func (f *Foo) DeepCopy() *Foo {
	out := new(Foo)
	f.DeepCopyInto(out)
	return out
}

func (f *Foo) DeepCopyObject() runtime.Object { return f.DeepCopy() }

func (l *FooList) DeepCopyObject() runtime.Object {
	out := &FooList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]Foo, len(l.Items))
	for i := range l.Items {
		l.Items[i].DeepCopyInto(&out.Items[i])
	}
	return out
}

func fooScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	s.AddKnownTypes(fooGV, &Foo{}, &FooList{})
	metav1.AddToGroupVersion(s, fooGV)
	return s, nil
}

// crFooReconciler is foo.Reconciler's logic on controller-runtime.
type crFooReconciler struct {
	crclient.Client
	reconciles atomic.Int64
}

func (r *crFooReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.reconciles.Add(1)
	var f Foo
	if err := r.Get(ctx, req.NamespacedName, &f); err != nil {
		return reconcile.Result{}, crclient.IgnoreNotFound(err) // deleted; the garbage collector removes the ConfigMap
	}
	if f.Spec.Fail {
		return reconcile.Result{}, errors.New("spec.fail is set")
	}
	cmName := foo.ConfigMapName(f.Name)
	var cm corev1.ConfigMap
	err := r.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: cmName}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		want := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: cmName, Namespace: f.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "skiff-foo"},
			},
			Data: map[string]string{"message": f.Spec.Message},
		}
		// Sets a controller reference with BlockOwnerDeletion, as foo.Reconciler does.
		if err := controllerutil.SetControllerReference(&f, want, r.Scheme()); err != nil {
			return reconcile.Result{}, reconcile.TerminalError(err)
		}
		if err := r.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return reconcile.Result{}, fmt.Errorf("create configmap %s/%s: %w", f.Namespace, cmName, err)
		}
	case err != nil:
		return reconcile.Result{}, err
	case !metav1.IsControlledBy(&cm, &f):
		return reconcile.Result{}, reconcile.TerminalError(fmt.Errorf("configmap %s/%s exists and is not owned by foo %s", f.Namespace, cmName, f.Name))
	case cm.Data["message"] != f.Spec.Message:
		upd := cm.DeepCopy()
		if upd.Data == nil {
			upd.Data = map[string]string{}
		}
		upd.Data["message"] = f.Spec.Message
		if err := r.Update(ctx, upd); err != nil {
			return reconcile.Result{}, fmt.Errorf("update configmap %s/%s: %w", f.Namespace, cmName, err)
		}
	}
	// The Ready condition as examples/foo sets it, the controller-runtime way.
	changed := meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{
		Type: foo.ConditionReady, Status: metav1.ConditionTrue, Reason: "ConfigMapCurrent",
		Message: "configmap " + cmName + " holds spec.message", ObservedGeneration: f.Generation,
	})
	if !changed && f.Status.ObservedGeneration == f.Generation && f.Status.Phase == "Ready" && f.Status.ConfigMap == cmName {
		return reconcile.Result{}, nil
	}
	f.Status.ObservedGeneration, f.Status.Phase, f.Status.ConfigMap = f.Generation, "Ready", cmName
	err = r.Status().Update(ctx, &f)
	if apierrors.IsConflict(err) {
		return reconcile.Result{}, nil // a newer Foo is on its way through the watch
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("update status of foo %s/%s: %w", f.Namespace, f.Name, err)
	}
	return reconcile.Result{}, nil
}

func init() {
	// Reconcile errors and controller-runtime's own complaints reach stderr;
	// anything below error level is dropped, as for the Skiff manager.
	crlog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

// skipNameValidation lets every iteration build a manager with a controller
// named "foo" in one process.
var skipNameValidation = true

// startCtrlRuntime runs the controller-runtime Foo operator on cfg with
// maxConcurrent workers (0: its default, 1) and returns once its caches
// (Foos and ConfigMaps) have synced.
func startCtrlRuntime(ctx context.Context, cfg *rest.Config, maxConcurrent int) (fooOperator, error) {
	s, err := fooScheme()
	if err != nil {
		return nil, err
	}
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:  s,
		Metrics: metricsserver.Options{BindAddress: "0"}, // off
		// Health probes and leader election are off by default.
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("controller-runtime manager: %w", err)
	}
	r := &crFooReconciler{Client: mgr.GetClient()}
	err = builder.ControllerManagedBy(mgr).
		Named("foo").
		For(&Foo{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
	if err != nil {
		return nil, fmt.Errorf("controller-runtime foo controller: %w", err)
	}
	// The controller creates these informers when it starts; creating them
	// first lets WaitForCacheSync below cover them.
	for _, obj := range []crclient.Object{&Foo{}, &corev1.ConfigMap{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("controller-runtime informer for %T: %w", obj, err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	if !mgr.GetCache().WaitForCacheSync(runCtx) {
		cancel()
		return nil, fmt.Errorf("controller-runtime caches did not sync: %v", <-done)
	}
	return &crFooOperator{r: r, cancel: cancel, done: done}, nil
}

type crFooOperator struct {
	r      *crFooReconciler
	cancel context.CancelFunc
	done   chan error
}

func (o *crFooOperator) Reconciles() int64 { return o.r.reconciles.Load() }
func (o *crFooOperator) PeakWorkers() int  { return 0 }

func (o *crFooOperator) Stop() error {
	o.cancel()
	return <-o.done
}
