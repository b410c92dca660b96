package foo_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/condition"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// webhookAddr is where TestWebhooks serves the Foo webhooks and an audit
// receiver: the control plane's audit webhook backend is pointed at
// https://<webhookAddr>/audit before it starts (a loopback address, so
// without a CA bundle; batches sent while nothing listens are dropped).
var webhookAddr string

func TestMain(m *testing.M) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reserve a port for the webhook server:", err)
		os.Exit(1)
	}
	webhookAddr = ln.Addr().String()
	ln.Close()
	audit := &testenv.AuditOptions{URL: "https://" + webhookAddr + "/audit"}
	os.Exit(testenv.RunTests(m, testenv.Options{Audit: audit}, func(e *testenv.Env) error {
		env = e
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := testenv.ApplyCRDFiles(ctx, env.Config(), "config/crd.yaml")
		return err
	}))
}

// run starts a manager with the Foo operator until the test ends.
func run(t *testing.T, opts controller.Options[controller.Request]) (*controller.Controller[controller.Request], *manager.Manager) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := foo.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(manager.Options{Config: env.Config(), Scheme: scheme, Addr: "-", Logger: quiet, KeepKlog: true, SyncTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = quiet
	c, err := foo.Setup(mgr, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return c, mgr
}

// converged reports whether the Foo u (as an API client reads it) is
// reconciled at its generation.
func converged(u *unstructured.Unstructured) bool {
	var f foo.Foo
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &f); err != nil {
		return false
	}
	return foo.Converged(&f)
}

// readyCondition reads Foo name through the API and returns its Ready
// condition.
func readyCondition(t *testing.T, foos dynamic.ResourceInterface, name string) metav1.Condition {
	t.Helper()
	u, err := foos.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var f foo.Foo
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &f); err != nil {
		t.Fatal(err)
	}
	c := condition.Find(f.Status.Conditions, foo.ConditionReady)
	if c == nil {
		t.Fatalf("foo %s has no Ready condition: %+v", name, f.Status)
	}
	return *c
}

func clients(t *testing.T) (kubernetes.Interface, dynamic.NamespaceableResourceInterface) {
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs, dc.Resource(foo.GroupVersion.WithResource("foos"))
}

func newFoo(name, message string, fail bool) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "demo.skiff.dev/v1", "kind": "Foo",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"message": message, "fail": fail},
	}}
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	testenv.Eventually(t, time.Minute, what, cond)
}

func TestFooLifecycle(t *testing.T) {
	ctx := context.Background()
	run(t, controller.Options[controller.Request]{})
	ns := testenv.Namespace(t, env.Config())
	cs, foos := clients(t)

	created, err := foos.Namespace(ns).Create(ctx, newFoo("a", "hello", false), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmName := foo.ConfigMapName("a")
	eventually(t, "configmap with the message and a Ready status", func() (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		f, err := foos.Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cm.Data["message"] == "hello" && converged(f) && cm.OwnerReferences[0].UID == created.GetUID(), nil
	})
	first := readyCondition(t, foos.Namespace(ns), "a")
	if first.ObservedGeneration != 1 || first.Reason != "ConfigMapCurrent" || first.LastTransitionTime.IsZero() {
		t.Fatalf("Ready condition after the first reconcile: %+v", first)
	}

	// Update: the spec change (new generation) is reconciled into the child.
	eventually(t, "update applied", func() (bool, error) {
		f, err := foos.Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		unstructured.SetNestedField(f.Object, "bonjour", "spec", "message")
		_, err = foos.Namespace(ns).Update(ctx, f, metav1.UpdateOptions{})
		return err == nil, err
	})
	eventually(t, "configmap updated and status at the new generation", func() (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		f, err := foos.Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cm.Data["message"] == "bonjour" && f.GetGeneration() == 2 && converged(f), nil
	})

	// The condition follows the generation; it did not transition, so its
	// lastTransitionTime stays.
	if c := readyCondition(t, foos.Namespace(ns), "a"); c.ObservedGeneration != 2 || !c.LastTransitionTime.Equal(&first.LastTransitionTime) {
		t.Fatalf("Ready condition after the update: %+v, first %+v", c, first)
	}

	// Owns: deleting the child wakes the owner, which recreates it.
	old, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, cmName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "configmap recreated after its deletion", func() (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cm.UID != old.UID && cm.Data["message"] == "bonjour", nil
	})
	// Owns: editing the child is reverted.
	eventually(t, "edit of the child", func() (bool, error) {
		_, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, cmName, types.MergePatchType, []byte(`{"data":{"message":"tampered"}}`), metav1.PatchOptions{})
		return err == nil, err
	})
	eventually(t, "tampered child reverted", func() (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
		return err == nil && cm.Data["message"] == "bonjour", err
	})

	// Delete: the garbage collector removes the owned ConfigMap.
	if err := foos.Namespace(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "configmap garbage-collected", func() (bool, error) {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

func TestRetryBudgetDeadLetterReplay(t *testing.T) {
	ctx := context.Background()
	c, mgr := run(t, controller.Options[controller.Request]{MaxFailures: 3})
	ns := testenv.Namespace(t, env.Config())
	_, foos := clients(t)
	if _, err := foos.Namespace(ns).Create(ctx, newFoo("broken", "x", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := ns + "/broken"
	eventually(t, "dead letter", func() (bool, error) {
		for _, d := range c.DeadLetterInfos() {
			if d.Key == key && d.Attempts == 3 && strings.Contains(d.LastError, "spec.fail") {
				return true, nil
			}
		}
		return false, nil
	})
	// Fix the object: the key stays dead (adds are dropped) until replayed.
	f, err := foos.Namespace(ns).Get(ctx, "broken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(f.Object, false, "spec", "fail")
	if _, err := foos.Namespace(ns).Update(ctx, f, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "fixed object in the cache", func() (bool, error) {
		f, err := client.Get[*foo.Foo](ctx, mgr.Client(), client.ObjectKey{Namespace: ns, Name: "broken"})
		return err == nil && !f.Spec.Fail, err
	})
	if got, _ := foos.Namespace(ns).Get(ctx, "broken", metav1.GetOptions{}); converged(got) {
		t.Fatal("a dead-lettered key was reconciled without a replay")
	}
	if !c.ReplayKey(key) {
		t.Fatalf("ReplayKey(%s) = false", key)
	}
	eventually(t, "replayed foo converged", func() (bool, error) {
		got, err := foos.Namespace(ns).Get(ctx, "broken", metav1.GetOptions{})
		return err == nil && converged(got), err
	})
	if n := len(c.DeadLetterInfos()); n != 0 {
		t.Fatalf("%d dead letters after a successful replay", n)
	}
}

func TestMissingCRDFailsSyncNamingIt(t *testing.T) {
	mgr, err := manager.New(manager.Options{Addr: "-", Logger: quiet, KeepKlog: true, SyncTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "demo.skiff.dev", Version: "v1", Resource: "bars"}
	src, err := cache.UnstructuredSource(env.Config(), gvr, cache.Scope{})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*unstructured.Unstructured]{Name: "bars.demo.skiff.dev", Logger: quiet})
	mgr.AddCache("bars.demo.skiff.dev", inf)
	err = mgr.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bars.demo.skiff.dev did not sync") {
		t.Fatalf("Start = %v, want a sync error naming bars.demo.skiff.dev", err)
	}
	t.Logf("sync error: %v", err)
	if !strings.Contains(strings.ToLower(err.Error()), "not found") && !strings.Contains(err.Error(), "could not find") {
		t.Fatalf("sync error %q does not say the resource is missing", err)
	}
}
