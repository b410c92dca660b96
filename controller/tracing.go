package controller

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of reconcile spans.
const TracerName = "github.com/skiffkit/skiff/controller"

// Attributes of a reconcile span: the first three have the names of the
// attributes of Logger's lines, so a span and its log lines are found by the
// same reconcileID.
const (
	attrController   = attribute.Key("controller")
	attrKey          = attribute.Key("key")
	attrReconcileID  = attribute.Key("reconcileID")
	attrRequeue      = attribute.Key("requeue")
	attrRequeueAfter = attribute.Key("requeueAfterSeconds")
)

// startReconcileSpan starts the span of one reconcile, named "reconcile
// <controller>", with the controller's name, the key and the reconcile ID
// (the one in Logger's lines) as attributes. It is a new root: what started
// the controller did not cause the reconcile. Requests made with the
// returned context (through a Client with a TracerProvider) are its
// children. Without a tracer it returns ctx and a nil span.
func (c *Controller[K]) startReconcileSpan(ctx context.Context, key, id string) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	return c.tracer.Start(ctx, "reconcile "+c.name,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrController.String(c.name), attrKey.String(key), attrReconcileID.String(id)))
}

// endReconcileSpan records what the reconcile asked for next, or its error
// (a panic is a *PanicError), and ends span; a nil span is ignored.
func endReconcileSpan(span trace.Span, res Result, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else if res.Requeue || res.RequeueAfter > 0 {
		span.SetAttributes(attrRequeue.Bool(true), attrRequeueAfter.Float64(res.RequeueAfter.Seconds()))
	}
	span.End()
}
