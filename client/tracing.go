package client

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/client-go/rest"
)

// TracerName is the instrumentation scope of the client's spans.
const TracerName = "github.com/skiffkit/skiff/client"

// Span attributes of a client request. The HTTP ones follow OpenTelemetry's
// semantic conventions; the k8s.request.* ones are Skiff's.
const (
	attrMethod     = attribute.Key("http.request.method")
	attrStatusCode = attribute.Key("http.response.status_code")
	attrURLPath    = attribute.Key("url.path")
	attrServer     = attribute.Key("server.address")
	attrErrorType  = attribute.Key("error.type")
	attrVerb       = attribute.Key("k8s.request.verb")
	attrResource   = attribute.Key("k8s.request.resource")
	attrWatch      = attribute.Key("k8s.request.watch")
)

// installTracing wraps cfg's transport so that every request is a client
// span of a tracer from tp, a child of the span in the request's context
// (a reconcile's, when the request is made with the reconcile's context).
//
// The span is named "<verb> <resource>" ("get configmaps", "update
// foos.demo.skiff.dev/status"; see Classify) and carries the HTTP method,
// URL path, server address, status code, and the Kubernetes verb and
// resource. It ends when the response body is read to its end or closed,
// so it covers the transfer; a watch's span ends when the watch is
// established. A transport error or a status of 400 or more sets the span's
// status to Error. Requests are not changed: no trace context is sent to
// the server.
func installTracing(cfg *rest.Config, tp trace.TracerProvider) {
	tracer := tp.Tracer(TracerName)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return traced{tracer: tracer, next: rt}
	})
}

type traced struct {
	tracer trace.Tracer
	next   http.RoundTripper
}

func (t traced) RoundTrip(req *http.Request) (*http.Response, error) {
	kind, watch := kindOf(req)
	_, span := t.tracer.Start(req.Context(), kind.Verb+" "+kind.Resource,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attrMethod.String(req.Method),
			attrURLPath.String(req.URL.Path),
			attrServer.String(req.URL.Host),
			attrVerb.String(kind.Verb),
			attrResource.String(kind.Resource),
			attrWatch.Bool(watch),
		))
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attrErrorType.String("transport"))
		span.End()
		return resp, err
	}
	span.SetAttributes(attrStatusCode.Int(resp.StatusCode))
	if resp.StatusCode >= 400 {
		code := strconv.Itoa(resp.StatusCode)
		span.SetStatus(codes.Error, "HTTP "+code+" "+http.StatusText(resp.StatusCode))
		span.SetAttributes(attrErrorType.String(code))
	}
	if watch || resp.Body == nil {
		span.End()
		return resp, nil
	}
	resp.Body = &endNotifier{ReadCloser: resp.Body, end: func() { span.End() }}
	return resp, nil
}
