package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// runCoalescer runs co until the test ends.
func runCoalescer(t *testing.T, co *client.Coalescer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestCoalescerOnServer: 50 goroutines patch different keys of one
// ConfigMap within a window; a few PATCH requests carry them all, and the
// stored object holds every key. Patches of a missing object all get its
// NotFound.
func TestCoalescerOnServer(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	var counter client.RequestCounter
	cfg := counter.Install(rest.CopyConfig(env.Config()))
	c := newClient(t, cfg)
	co := client.NewCoalescer(c, client.CoalesceOptions{Window: 200 * time.Millisecond, FieldManager: "coalesce-test"})
	runCoalescer(t, co)

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "target"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	patches := func() int64 {
		return counter.Counts()[client.RequestKind{Verb: "patch", Resource: "configmaps"}]
	}
	before := patches()
	var wg sync.WaitGroup
	errs := make([]error, 50)
	objs := make([]*corev1.ConfigMap, 50)
	for i := range 50 {
		objs[i] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "target"}}
		wg.Go(func() {
			errs[i] = co.MergePatch(ctx, objs[i], fmt.Appendf(nil, `{"data":{"k%02d":"v%d"}}`, i, i))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("patch %d: %v", i, err)
		}
		if objs[i].ResourceVersion == "" || objs[i].Data[fmt.Sprintf("k%02d", i)] == "" {
			t.Fatalf("patch %d: obj not updated with the answer: %+v", i, objs[i].ObjectMeta)
		}
	}
	n := patches() - before
	t.Logf("50 changes in %d PATCH requests", n)
	if n < 1 || n > 3 {
		t.Errorf("%d PATCH requests for 50 changes within one window, want 1–3", n)
	}
	got, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(cm))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if k := fmt.Sprintf("k%02d", i); got.Data[k] != fmt.Sprint("v", i) {
			t.Errorf("stored %s = %q, want v%d", k, got.Data[k], i)
		}
	}

	// A missing object: every waiter of the request gets the NotFound.
	before = patches()
	for i := range 10 {
		objs[i] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"}}
		wg.Go(func() { errs[i] = co.MergePatch(ctx, objs[i], fmt.Appendf(nil, `{"data":{"k%d":"v"}}`, i)) })
	}
	wg.Wait()
	for i := range 10 {
		if !apierrors.IsNotFound(errs[i]) {
			t.Errorf("waiter %d on a missing object: %v, want NotFound", i, errs[i])
		}
	}
	if n := patches() - before; n < 1 || n > 3 {
		t.Errorf("%d PATCH requests for 10 changes to a missing object, want 1–3", n)
	}
}
