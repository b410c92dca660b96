package builder_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}
}

func replicaSet(ns, name string, labels map[string]string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: podTemplate(labels)},
	}
}

// TestForDeploymentOwnsReplicaSets: a controller For Deployments that Owns
// ReplicaSets reconciles a Deployment when a ReplicaSet it controls is
// created or changes, and not for ReplicaSets that have no owner or whose
// controller is of another group or kind. Everything is named by Go type. (The
// control plane runs no deployment controller: the test creates the
// ReplicaSets itself.)
func TestForDeploymentOwnsReplicaSets(t *testing.T) {
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	c := mgr.Client()
	rec := newRecorder()
	scope := cache.Scope{Namespace: ns}
	_, err := builder.Build(mgr, rec.reconciler(nil),
		builder.Owns[*appsv1.ReplicaSet](), // before For on purpose: the order of triggers does not matter
		single("deployments"),
		builder.Scope[*appsv1.Deployment](scope),
		builder.Scope[*appsv1.ReplicaSet](scope),
		builder.For[*appsv1.Deployment](),
	)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: podTemplate(labels)},
	}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	web := request{Namespace: ns, Name: "web"}
	rec.waitDone(t, web, 1)

	owned := replicaSet(ns, "web-1", labels)
	if err := c.SetControllerReference(dep, owned); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, owned); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, web, 2)

	// ReplicaSets that must map to nothing: an orphan, one controlled by a
	// ConfigMap (another group and kind) and one by a ControllerRevision
	// (the Deployment's group, another kind). The owned ReplicaSet's update comes
	// after them through the same handler, so a key they had wrongly
	// enqueued would be reconciled (one worker, FIFO) before web's third
	// reconcile ends.
	if err := c.Create(ctx, replicaSet(ns, "orphan", map[string]string{"app": "orphan"})); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-a-deployment"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	byConfigMap := replicaSet(ns, "by-configmap", map[string]string{"app": "cm"})
	if err := c.SetControllerReference(cm, byConfigMap); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, byConfigMap); err != nil {
		t.Fatal(err)
	}
	rev := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "same-group-other-kind"}, Data: runtime.RawExtension{Raw: []byte(`{}`)}, Revision: 1}
	if err := c.Create(ctx, rev); err != nil {
		t.Fatal(err)
	}
	byRevision := replicaSet(ns, "by-revision", map[string]string{"app": "rev"})
	if err := c.SetControllerReference(rev, byRevision); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, byRevision); err != nil {
		t.Fatal(err)
	}
	orig := owned.DeepCopy()
	owned.Annotations = map[string]string{"touched": "yes"}
	if err := c.Patch(ctx, owned, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, web, 3)
	for k := range rec.keys() {
		if k != web {
			t.Errorf("reconciled %v; only the Deployment %v owns a ReplicaSet", k, web)
		}
	}
}

// TestScopeLimitsTheInformerAndCachedReads: Scope with a label selector
// gives the controller, and client.Get/List through the manager's client,
// only the matching objects; a non-matching object reads as NotFound.
func TestScopeLimitsTheInformerAndCachedReads(t *testing.T) {
	ctx := context.Background()
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	rec := newRecorder()
	scope := cache.Scope{Namespace: ns, LabelSelector: "team=a"}
	if _, err := builder.Build(mgr, rec.reconciler(nil), single("team-a"), builder.Scope[*corev1.ConfigMap](scope), builder.For[*corev1.ConfigMap]()); err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	create := func(name, team string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": team}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("a1", "a")
	create("b1", "b")
	create("a2", "a") // a barrier: had b1 been seen, its key would come first
	rec.waitDone(t, request{Namespace: ns, Name: "a1"}, 1)
	rec.waitDone(t, request{Namespace: ns, Name: "a2"}, 1)
	if n := rec.count(request{Namespace: ns, Name: "b1"}); n != 0 {
		t.Fatalf("b1 (team=b) reconciled %d times by a controller scoped to team=a", n)
	}

	c := mgr.Client()
	if _, err := client.Get[*corev1.ConfigMap](ctx, c, client.ObjectKey{Namespace: ns, Name: "a1"}); err != nil {
		t.Fatalf("get a1 (in scope): %v", err)
	}
	if cm, err := client.Get[*corev1.ConfigMap](ctx, c, client.ObjectKey{Namespace: ns, Name: "b1"}); !apierrors.IsNotFound(err) {
		t.Fatalf("get b1 (out of scope) through the manager's client = %v, %v; want NotFound", cm, err)
	}
	cms, err := client.List[*corev1.ConfigMap](ctx, c, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range cms {
		names = append(names, cm.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a1", "a2"}) {
		t.Fatalf("list through the manager's client = %v, want [a1 a2]", names)
	}
	// One informer per type: the same scope returns it, another is refused.
	if _, err := client.InformerFor[*corev1.ConfigMap](c, scope); err != nil {
		t.Fatalf("InformerFor with the builder's scope: %v", err)
	}
	if _, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns}); err == nil {
		t.Fatal("InformerFor with a second scope of the same type accepted")
	}
}

// TestInformerCreatedAfterStart: once the manager runs, a Get of a type
// with no informer goes to the API server (and creates no informer); an
// informer created then through the manager's client is run by the
// manager, syncs, and serves later Gets and Lists, including objects
// created afterwards.
func TestInformerCreatedAfterStart(t *testing.T) {
	ctx := context.Background()
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	var counter client.RequestCounter
	mgr := newManager(t, manager.Options{Config: counter.Install(env.Config())})
	startManager(t, mgr)
	requests := func(verb string) int64 {
		return counter.Counts()[client.RequestKind{Verb: verb, Resource: "secrets"}]
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s1"}, StringData: map[string]string{"k": "v1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := mgr.Client()
	s1 := client.ObjectKey{Namespace: ns, Name: "s1"}

	before := requests("get")
	got, err := client.Get[*corev1.Secret](ctx, c, s1)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data["k"]) != "v1" {
		t.Fatalf("s1 data = %q, want v1", got.Data)
	}
	if n := requests("get") - before; n != 1 {
		t.Fatalf("Get without an informer made %d GET secrets requests, want 1", n)
	}
	if n := len(mgr.Factory().Informers()); n != 0 {
		t.Fatalf("the manager's factory has %d informers after a Get; Get must not create one", n)
	}

	inf, err := client.InformerFor[*corev1.Secret](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	syncCtx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	if err := inf.WaitForSync(syncCtx); err != nil {
		t.Fatalf("informer created after Start did not sync (the manager must run it): %v", err)
	}
	gets, lists := requests("get"), requests("list")
	if _, err := client.Get[*corev1.Secret](ctx, c, s1); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "s2 in client.List", func() bool {
		secrets, err := client.List[*corev1.Secret](ctx, c, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(secrets, func(s *corev1.Secret) bool { return s.Name == "s2" })
	})
	if g, l := requests("get")-gets, requests("list")-lists; g != 0 || l != 0 {
		t.Fatalf("with the informer synced, Get and List made %d GET and %d LIST secrets requests, want 0 (served from the cache)", g, l)
	}
}

// TestOwnsWithAClusterScopedOwner: an object owned by a cluster-scoped
// object (a Namespace here) enqueues the owner's key with no namespace.
func TestOwnsWithAClusterScopedOwner(t *testing.T) {
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	c := mgr.Client()
	rec := newRecorder()
	_, err := builder.Build(mgr, rec.reconciler(nil), single("namespaces"),
		builder.For[*corev1.Namespace](), builder.Owns[*corev1.ConfigMap](), configMapsIn(ns))
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	owner, err := client.Get[*corev1.Namespace](ctx, c, client.ObjectKey{Name: ns})
	if err != nil {
		t.Fatal(err)
	}
	want := request{Name: ns}
	rec.waitDone(t, want, 1) // the namespace's own add
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}}
	if err := c.SetControllerReference(owner, cm); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, want, 2)
	if n := rec.count(request{Namespace: ns, Name: ns}); n != 0 {
		t.Fatalf("Owns enqueued %s/%s (%d times) for a cluster-scoped owner", ns, ns, n)
	}
}

// TestNotOwnWritesSkipsUpdatesThisProcessWrote: a reconcile that writes its
// own object is not triggered again by that write, but is by someone
// else's change.
func TestNotOwnWritesSkipsUpdatesThisProcessWrote(t *testing.T) {
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	c := mgr.Client()
	rec := newRecorder()
	_, err := builder.Build(mgr, rec.reconciler(func(ctx context.Context, req request, n int) (controller.Result, error) {
		if req.Name == "barrier" {
			return controller.Result{}, nil
		}
		cm, err := client.Get[*corev1.ConfigMap](ctx, c, req)
		if err != nil {
			return controller.Result{}, client.IgnoreNotFound(err)
		}
		orig := cm.DeepCopy()
		cm.Annotations = map[string]string{"reconciled": fmt.Sprint(n)}
		return controller.Result{}, c.Patch(ctx, cm, client.MergeFrom(orig))
	}), single("own-writes"), configMapsIn(ns),
		builder.For[*corev1.ConfigMap](builder.NotOwnWrites[*corev1.ConfigMap](c)))
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	cs := clientset(t)
	key := request{Namespace: ns, Name: "self"}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "self"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, key, 1)
	// Our write's event, if it enqueued anything, comes before the
	// barrier's through the same handler and the one-worker FIFO queue.
	inf, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "our write in the cache", func() bool {
		cm, ok := inf.Lister().Get(ns, "self")
		return ok && cm.Annotations["reconciled"] != ""
	})
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "barrier"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, request{Namespace: ns, Name: "barrier"}, 1)
	if n := rec.count(key); n != 1 {
		t.Fatalf("our own write triggered a reconcile: %d reconciles, want 1", n)
	}
	// Someone else's change does trigger one.
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "self", types.MergePatchType, []byte(`{"data":{"x":"y"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitDone(t, key, 2)
}
