package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// TestBulkCreatesConfigMaps bulk-creates 300 ConfigMaps on the local control
// plane: every one succeeds and is there afterwards.
func TestBulkCreatesConfigMaps(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	const n = 300
	objs := make([]*corev1.ConfigMap, n)
	for i := range objs {
		objs[i] = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bulk-%03d", i)},
			Data:       map[string]string{"i": fmt.Sprint(i)},
		}
	}
	create := func(ctx context.Context, cm *corev1.ConfigMap) error { return c.Create(ctx, cm) }
	res := client.Bulk(ctx, objs, create, client.BulkOptions{})
	if err := res.Err(); err != nil {
		t.Fatalf("bulk create: %v", err)
	}
	if res.Succeeded != n {
		t.Fatalf("%d succeeded, want %d", res.Succeeded, n)
	}
	t.Logf("300 ConfigMaps: concurrency settled at %d (peak %d, 429s %d)", res.Concurrency, res.PeakConcurrency, res.Throttled)

	list, err := client.List[*corev1.ConfigMap](ctx, c, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, cm := range list {
		if len(cm.Name) == len("bulk-000") && cm.Name[:5] == "bulk-" {
			got++
		}
	}
	if got != n {
		t.Fatalf("the namespace holds %d bulk ConfigMaps, want %d", got, n)
	}
	for _, cm := range objs {
		if cm.UID == "" || cm.ResourceVersion == "" {
			t.Fatalf("%s was not updated with the server's answer", cm.Name)
		}
	}
}
