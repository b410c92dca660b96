package finalizer_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/finalizer"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

const name = "test.skiff.dev/cleanup"

func TestAddRemoveHas(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Finalizers: []string{"other.dev/x"}}}
	if finalizer.Has(cm, name) || !finalizer.Add(cm, name) || finalizer.Add(cm, name) || !finalizer.Has(cm, name) {
		t.Fatalf("Add/Has misbehave: %v", cm.Finalizers)
	}
	shared := cm.Finalizers
	if !finalizer.Remove(cm, name) || finalizer.Remove(cm, name) || finalizer.Has(cm, name) {
		t.Fatalf("Remove misbehaves: %v", cm.Finalizers)
	}
	if !slices.Equal(cm.Finalizers, []string{"other.dev/x"}) || !slices.Equal(shared, []string{"other.dev/x", name}) {
		t.Fatalf("Remove changed a slice it does not own: now %v, before %v", cm.Finalizers, shared)
	}
}

func TestEnsureRejectsUnqualifiedNames(t *testing.T) {
	c, err := client.New(env.Config(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"cleanup", "/cleanup", "nodot/cleanup", "example.com/"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}}
		if _, err := finalizer.Ensure(context.Background(), c, cm, bad); err == nil {
			t.Errorf("Ensure(%q) accepted an unqualified name", bad)
		}
	}
}

// TestHandleRunsCleanupOnceAndLetsTheObjectGo: the finalizer is added once,
// deletion waits for it, a failing cleanup keeps it, a successful cleanup
// runs once and the object goes — with reads from a cache.
func TestHandleRunsCleanupOnceAndLetsTheObjectGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := testenv.Namespace(t, env.Config())
	c, err := client.New(env.Config(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Factory().Run(fctx); close(done) }()
	defer func() { stop(); <-done }()

	key := client.ObjectKey{Namespace: ns, Name: "guarded"}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name}}); err != nil {
		t.Fatal(err)
	}
	cleanups := 0
	fail := true
	reconcile := func() (bool, error) {
		cm, err := client.Get[*corev1.ConfigMap](ctx, c, key)
		if err != nil {
			return false, err
		}
		return finalizer.Handle(ctx, c, cm, name, func(context.Context) error {
			cleanups++
			if fail {
				return errors.New("external system down")
			}
			return nil
		})
	}
	for range 3 { // repeated reconciles add the finalizer once
		if deleting, err := reconcile(); deleting || err != nil {
			t.Fatalf("reconcile of a live object = %v, %v", deleting, err)
		}
	}
	cm, err := client.Get[*corev1.ConfigMap](ctx, c, key)
	if err != nil || !slices.Equal(cm.Finalizers, []string{name}) {
		t.Fatalf("finalizers after reconciles: %v, %v", cm.Finalizers, err)
	}
	if err := c.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if deleting, err := reconcile(); !deleting || err == nil || cleanups != 1 {
		t.Fatalf("reconcile with failing cleanup = %v, %v (cleanups %d)", deleting, err, cleanups)
	}
	if got, err := client.Get[*corev1.ConfigMap](ctx, c, key); err != nil || got.DeletionTimestamp == nil || !finalizer.Has(got, name) {
		t.Fatalf("after a failed cleanup the object should wait with its finalizer: %+v, %v", got, err)
	}
	fail = false
	if deleting, err := reconcile(); !deleting || err != nil || cleanups != 2 {
		t.Fatalf("reconcile with working cleanup = %v, %v (cleanups %d)", deleting, err, cleanups)
	}
	// Later reconciles (events of the deletion) do not clean up again.
	for range 3 {
		if _, err := reconcile(); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if cleanups != 2 {
		t.Fatalf("cleanup ran %d times, want 2 (one failure, one success)", cleanups)
	}
	testenv.Eventually(t, 30*time.Second, "the object to go once its finalizer was removed", func() (bool, error) {
		_, err := client.Get[*corev1.ConfigMap](ctx, c, key)
		return apierrors.IsNotFound(err), err
	})
}
