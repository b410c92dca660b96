package client_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/testenv"
)

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp
}

func tracedClient(t *testing.T, cfg *rest.Config, tp *sdktrace.TracerProvider) *client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme(t), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestReconcileSpanParentsClientSpans runs a traced controller whose
// reconcile Gets a ConfigMap from the API server and Updates it, and checks
// the trace: one reconcile span with exactly two children, the client spans
// of the Get and the Update, with their attributes.
func TestReconcileSpanParentsClientSpans(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	rec, tp := newRecorder(t)
	c := tracedClient(t, env.Config(), tp)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "traced"}}
	if err := c.Create(ctx, cm); err != nil { // also runs discovery, outside any reconcile
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctrl, err := controller.New[controller.Request](controller.ReconcileFunc[controller.Request](func(ctx context.Context, req controller.Request) (controller.Result, error) {
		defer close(done)
		got, err := client.Get[*corev1.ConfigMap](ctx, c, req)
		if err != nil {
			return controller.Result{}, err
		}
		got.Data = map[string]string{"seen": "yes"}
		return controller.Result{}, c.Update(ctx, got)
	}), controller.Options[controller.Request]{Name: "tracing", TracerProvider: tp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- ctrl.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-stopped; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	ctrl.Queue().Add(client.KeyOf(cm))
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("no reconcile before the test's deadline")
	}
	var reconcile sdktrace.ReadOnlySpan
	testenv.Eventually(t, 10*time.Second, "the reconcile span to end", func() (bool, error) {
		for _, s := range rec.Ended() {
			if s.Name() == "reconcile tracing" {
				reconcile = s
				return true, nil
			}
		}
		return false, nil
	})
	if reconcile.Status().Code == codes.Error {
		t.Fatalf("the reconcile failed: %s", reconcile.Status().Description)
	}
	var children []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == reconcile.SpanContext().SpanID() {
			children = append(children, s)
		}
	}
	if len(children) != 2 {
		var names []string
		for _, s := range children {
			names = append(names, s.Name())
		}
		t.Fatalf("the reconcile span has %d children %v, want the Get and the Update", len(children), names)
	}
	path := "/api/v1/namespaces/" + ns + "/configmaps/traced"
	for i, want := range []struct{ name, verb, method string }{{"get configmaps", "get", "GET"}, {"update configmaps", "update", "PUT"}} {
		s := children[i]
		a := spanAttrs(s)
		if s.Name() != want.name || a["k8s.request.verb"].AsString() != want.verb || a["http.request.method"].AsString() != want.method {
			t.Errorf("child %d: %q verb %q method %q, want %q %q %q", i, s.Name(), a["k8s.request.verb"].AsString(), a["http.request.method"].AsString(), want.name, want.verb, want.method)
		}
		if a["url.path"].AsString() != path || a["k8s.request.resource"].AsString() != "configmaps" || a["http.response.status_code"].AsInt64() != 200 {
			t.Errorf("child %d: path %q resource %q status %d, want %q configmaps 200", i, a["url.path"].AsString(), a["k8s.request.resource"].AsString(), a["http.response.status_code"].AsInt64(), path)
		}
		if s.SpanKind().String() != "client" || s.Status().Code == codes.Error {
			t.Errorf("child %d: kind %v status %v", i, s.SpanKind(), s.Status())
		}
		if s.SpanContext().TraceID() != reconcile.SpanContext().TraceID() {
			t.Errorf("child %d is in trace %v, the reconcile in %v", i, s.SpanContext().TraceID(), reconcile.SpanContext().TraceID())
		}
	}
}

// TestClientSpanErrors checks the error status of a request the server
// refused (404) and of one that never reached a server.
func TestClientSpanErrors(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	rec, tp := newRecorder(t)
	c := tracedClient(t, env.Config(), tp)
	if _, err := client.Get[*corev1.ConfigMap](ctx, c, types.NamespacedName{Namespace: ns, Name: "missing"}); !apierrors.IsNotFound(err) {
		t.Fatalf("Get a missing ConfigMap: %v, want NotFound", err)
	}
	var notFound sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if spanAttrs(s)["url.path"].AsString() == "/api/v1/namespaces/"+ns+"/configmaps/missing" {
			notFound = s
		}
	}
	if notFound == nil {
		t.Fatal("no span for the Get")
	}
	if a := spanAttrs(notFound); notFound.Status().Code != codes.Error || a["http.response.status_code"].AsInt64() != 404 || a["error.type"].AsString() != "404" {
		t.Errorf("404 span: status %v, attributes %v", notFound.Status(), notFound.Attributes())
	}

	bad := env.Config()
	bad.Host = "https://127.0.0.1:1" // nothing listens on port 1
	rec2, tp2 := newRecorder(t)
	c2 := tracedClient(t, bad, tp2)
	if _, err := client.Get[*corev1.ConfigMap](ctx, c2, types.NamespacedName{Namespace: ns, Name: "x"}); err == nil {
		t.Fatal("Get through an unreachable server succeeded")
	}
	spans := rec2.Ended()
	if len(spans) == 0 {
		t.Fatal("no span for a request to an unreachable server")
	}
	for _, s := range spans {
		if s.Status().Code != codes.Error || spanAttrs(s)["error.type"].AsString() != "transport" || len(s.Events()) == 0 {
			t.Errorf("span %q: status %v, attributes %v, %d events; want Error, error.type=transport, the error recorded", s.Name(), s.Status(), s.Attributes(), len(s.Events()))
		}
	}
}

// TestWatchSpanEndsWhenEstablished checks that a watch's span ends once
// the watch is open, not when it closes: it is seen ended while the
// informer still runs.
func TestWatchSpanEndsWhenEstablished(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	rec, tp := newRecorder(t)
	c := tracedClient(t, env.Config(), tp)
	inf, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	runFactory(t, c)
	if err := inf.WaitForSync(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "an ended watch span while the informer runs", func() (bool, error) {
		for _, s := range rec.Ended() {
			if a := spanAttrs(s); a["k8s.request.verb"].AsString() == "watch" && a["k8s.request.watch"].AsBool() {
				return true, nil
			}
		}
		return false, nil
	})
}
