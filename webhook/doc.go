// Package webhook serves typed Kubernetes admission webhooks over HTTPS and
// generates the webhook configurations that point the API server at them.
//
// A webhook names a Go type; its handler gets the request's objects decoded
// straight into that type (encoding/json, no scheme machinery per request):
//
//   - Validating[T]: the handler decides — Allow (with warnings), Deny with
//     a reason (HTTP 403), or DenyWithCode.
//   - Mutating[T]: the handler changes req.Object, its own copy; the server
//     answers with the RFC 6902 JSON patch from the object the API server
//     sent to the changed one (github.com/wI2L/jsondiff, chosen over
//     gomodules.xyz/jsonpatch/v2 by a benchmark on a pod: faster, fewer
//     allocations).
//
// Request carries the operation (Create, Update, Delete, Connect), the new
// and old objects (a Delete has only the old one), the user, the namespace,
// name, kind, resource, subresource and UID, and DryRun: a handler with side
// effects must skip them on a dry run and declare SideEffects NoneOnDryRun.
//
// Only admission.k8s.io/v1 AdmissionReviews are served (generated
// configurations ask for v1 only). The server refuses, with HTTP 400, an
// AdmissionReview body that says what was wrong, and
// skiff_webhook_bad_requests_total{reason}: a body that is not JSON, not an
// AdmissionReview, another apiVersion, a kind that is not the webhook's
// type, an object that does not decode into it, or a body over
// ServerOptions.MaxBodyBytes (8 MiB by default). A handler that panics is
// answered with HTTP 500 and counted; the process lives on. Each handler
// runs under a deadline below its webhook's timeoutSeconds
// (Options.HandlerTimeout); if it overruns, the server answers
// Options.OnTimeout at once — before the API server gives up — and Run
// still waits for the handler to return.
//
// Server is one HTTPS listener (TLS 1.2 or later, optional client
// certificates) for any number of webhooks (Register) and other handlers
// such as conversion or audit receivers (Handle). Its certificate comes from
// a CertificateSource on every handshake, so rotation needs no restart; a
// source that is also a CABundler supplies the caBundle of the generated
// configurations. Run serves until its ctx ends and then shuts down
// gracefully; a manager runs it on every replica:
//
//	mgr.Add("webhooks", srv)               // before cache sync and leader election
//	mgr.AddHealthCheck("webhooks", srv.Healthz)
//
// Metrics (ServerOptions.Registerer), labelled by the webhook's path:
// controller_runtime_webhook_requests_total{webhook,code},
// controller_runtime_webhook_requests_in_flight{webhook} and
// controller_runtime_webhook_latency_seconds{webhook} as in
// controller-runtime, and skiff_webhook_rejections_total{webhook,code},
// skiff_webhook_panics_total{webhook},
// skiff_webhook_bad_requests_total{webhook,reason} and
// skiff_webhook_timeouts_total{webhook}.
//
// Configurations builds the ValidatingWebhookConfiguration and
// MutatingWebhookConfiguration from the registered webhooks (rules from
// each type's group, version and resource; operations, failurePolicy,
// sideEffects, timeoutSeconds, matchConditions, selectors, reinvocation
// policy from its Options), reaching the server through a Service or a URL;
// ApplyConfigurations server-side applies them and ConfigurationsYAML
// prints them for GitOps.
package webhook
