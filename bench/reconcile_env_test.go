package bench

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// roundEnv starts a control plane for one round of a benchmark whose
// contenders share it, and stops it when tb ends.
func roundEnv(tb testing.TB) *testenv.Env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		tb.Fatalf("control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop control plane: %v", err)
		}
	})
	return env
}

// convergeEnv starts a control plane with the Foo CRD for one round of C1
// (every contender of the round runs against it) and stops it when tb ends.
// The package's TestMain belongs to the informer benchmarks, so C1 keeps its
// control plane's lifetime to its own round.
func convergeEnv(tb testing.TB) *testenv.Env {
	tb.Helper()
	env := roundEnv(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := testenv.ApplyCRDs(ctx, env.Config(), foo.CRD); err != nil {
		tb.Fatalf("install the Foo CRD: %v", err)
	}
	// The first Foo create after the CRD is established takes about 2 s
	// (the apiserver sets up the resource's storage); pay it here, not in
	// the first contender's timed run.
	dc, err := dynamic.NewForConfig(env.Config())
	if err != nil {
		tb.Fatal(err)
	}
	warm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "demo.skiff.dev/v1", "kind": "Foo",
		"metadata": map[string]any{"name": "warm-up"},
		"spec":     map[string]any{"message": "warm-up"},
	}}
	foos := dc.Resource(foo.GVR).Namespace("default")
	if _, err := foos.Create(ctx, warm, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("warm-up Foo: %v", err)
	}
	if err := foos.Delete(ctx, "warm-up", metav1.DeleteOptions{}); err != nil {
		tb.Fatalf("warm-up Foo: %v", err)
	}
	return env
}
