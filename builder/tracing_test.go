package builder_test

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// TestManagerTracerProviderReachesReconcilesAndRequests: with
// manager.Options.TracerProvider, a builder-built controller's reconcile is
// a span, and the client requests it makes are its children.
func TestManagerTracerProviderReachesReconcilesAndRequests(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{TracerProvider: tp})
	c := mgr.Client()
	rec := newRecorder()
	_, err := builder.Build(mgr, rec.reconciler(func(ctx context.Context, req request, n int) (controller.Result, error) {
		cm, err := client.Get[*corev1.ConfigMap](ctx, c, req)
		if err != nil || n > 1 {
			return controller.Result{}, client.IgnoreNotFound(err)
		}
		orig := cm.DeepCopy()
		cm.Labels = map[string]string{"traced": "yes"}
		return controller.Result{}, c.Patch(ctx, cm, client.MergeFrom(orig))
	}), single("traced"), configMapsIn(ns), builder.For[*corev1.ConfigMap]())
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	if _, err := clientset(t).CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "t"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := request{Namespace: ns, Name: "t"}
	rec.waitDone(t, key, 1)
	waitUntil(t, "a reconcile span with a patch span under it", func() bool {
		reconciles := map[trace.SpanID]bool{}
		for _, s := range spans.Ended() {
			if s.Name() == "reconcile traced" {
				reconciles[s.SpanContext().SpanID()] = true
			}
		}
		for _, s := range spans.Ended() {
			if strings.HasPrefix(s.Name(), "patch ") && reconciles[s.Parent().SpanID()] {
				return true
			}
		}
		return false
	})
}
