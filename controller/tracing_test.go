package controller_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/skiffkit/skiff/controller"
)

func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestReconcileSpans checks one span per reconcile: its name, attributes,
// status (error for an error and for a panic), that the reconcile's context
// carries it, and that it is a root even when Run's context has a span.
func TestReconcileSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var mu sync.Mutex
	inCtx := map[string]trace.SpanContext{}
	c := newController(t, controller.Options[string]{
		Name: "traced", TracerProvider: tp, MaxFailures: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, func(ctx context.Context, k string) (controller.Result, error) {
		mu.Lock()
		inCtx[k] = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		switch k {
		case "fail":
			return controller.Result{}, controller.Terminal(errors.New("bad spec"))
		case "panic":
			panic("boom")
		case "later":
			return controller.Result{RequeueAfter: time.Hour}, nil
		}
		return controller.Result{}, nil
	})
	// A span in Run's context must not become the reconciles' parent.
	runCtx, outer := tp.Tracer("test").Start(context.Background(), "outer")
	defer outer.End()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(runCtx)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for _, k := range []string{"ok", "fail", "panic", "later"} {
		c.Queue().Add(k)
	}
	waitFor(t, "four reconcile spans", 10*time.Second, func() bool { return len(rec.Ended()) == 4 })

	byKey := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		a := attrs(s.Attributes())
		if s.Name() != "reconcile traced" {
			t.Errorf("span name %q, want %q", s.Name(), "reconcile traced")
		}
		if got := a["controller"].AsString(); got != "traced" {
			t.Errorf("span %v: controller %q", a["key"], got)
		}
		if len(a["reconcileID"].AsString()) != 16 {
			t.Errorf("span %v: reconcileID %q is not 16 hex digits", a["key"], a["reconcileID"].AsString())
		}
		if s.Parent().IsValid() {
			t.Errorf("span %v has parent %v; a reconcile span is a root", a["key"], s.Parent().SpanID())
		}
		byKey[a["key"].AsString()] = s
	}
	mu.Lock()
	defer mu.Unlock()
	for k, want := range map[string]codes.Code{"ok": codes.Unset, "fail": codes.Error, "panic": codes.Error, "later": codes.Unset} {
		s, ok := byKey[k]
		if !ok {
			t.Errorf("no span for key %q", k)
			continue
		}
		if s.Status().Code != want {
			t.Errorf("key %q: status %v (%q), want %v", k, s.Status().Code, s.Status().Description, want)
		}
		if got := inCtx[k]; got.SpanID() != s.SpanContext().SpanID() {
			t.Errorf("key %q: the reconcile's context carries span %v, want %v", k, got.SpanID(), s.SpanContext().SpanID())
		}
	}
	if a := attrs(byKey["later"].Attributes()); a["requeueAfterSeconds"].AsFloat64() != 3600 {
		t.Errorf("requeueAfterSeconds = %v, want 3600", a["requeueAfterSeconds"])
	}
	if d := byKey["panic"].Status().Description; d == "" {
		t.Error("the panic's span has no status description")
	}
}

// TestNoTracerProviderNoSpan checks the default: the reconcile's context
// carries no span.
func TestNoTracerProviderNoSpan(t *testing.T) {
	got := make(chan trace.SpanContext, 1)
	c := newController(t, controller.Options[string]{}, func(ctx context.Context, k string) (controller.Result, error) {
		got <- trace.SpanContextFromContext(ctx)
		return controller.Result{}, nil
	})
	start(t, c)
	c.Queue().Add("a")
	select {
	case sc := <-got:
		if sc.IsValid() {
			t.Errorf("the reconcile's context carries span %v without a TracerProvider", sc.SpanID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reconcile within 10s")
	}
}
