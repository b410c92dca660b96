// Package audit receives the Kubernetes API server's audit events and turns
// them into work-queue keys: "somebody changed my object" as a trigger.
//
// The API server's audit webhook backend (--audit-webhook-config-file)
// POSTs batches of audit.k8s.io/v1 EventList to a URL. A Receiver is the
// http.Handler at that URL; mount it on an HTTPS server (package webhook's
// Server.Handle, or any). Watch[T] adds a Filter for a Go type and the queue
// its keys go to:
//
//	r, _ := audit.New(audit.Options{Mapper: c, Metrics: m}) // c: *client.Client
//	err := audit.Watch[*corev1.ConfigMap](r, ctrl.Queue(), audit.Filter{
//		Namespaces:   []string{"team-a"},
//		ExcludeUsers: []string{"system:serviceaccount:ops:my-controller"},
//	})
//	srv.Handle("/audit", r)
//
// Features:
//
//   - Typed: users name Go types, resolved to group/resource through a
//     Mapper (*client.Client). Keys are controller.Request values
//     (namespace/name) from each event's objectRef.
//   - Filters by verb (default: create, update, patch, delete), user and
//     group (with exclusions, e.g. the controller's own identity),
//     namespace, subresource (default: the object and its status), stage
//     (default: ResponseComplete) and outcome (default: 2xx responses only).
//   - Strict input: POST only, JSON only, size-limited (MaxBodyBytes);
//     anything that is not an audit.k8s.io/v1 EventList gets a 400 naming
//     the problem and is counted by reason. The decoder is fuzzed.
//   - Metrics skiff_audit_* (see Metrics).
//
// # What the API server must send
//
// An audit policy (--audit-policy-file) decides which requests make events
// and at what level. The receiver needs, for the watched resources and
// verbs, level Metadata or higher at stage ResponseComplete (do not list
// ResponseComplete in omitStages). Metadata is enough for every key except
// a create with metadata.generateName: its name is generated after the
// event's objectRef is filled, so it appears only in the response object,
// which is logged at level RequestResponse. Without it such events are
// counted as skipped (SkipNoName). A policy that does this for ConfigMap
// writes, and nothing else:
//
//	apiVersion: audit.k8s.io/v1
//	kind: Policy
//	omitStages: [RequestReceived]
//	rules:
//	- level: Metadata
//	  verbs: [create, update, patch, delete]
//	  resources: [{group: "", resources: [configmaps]}]
//	- level: None
//
// The webhook kubeconfig's cluster.server is the receiver's URL and its
// certificate-authority-data the CA of the receiver's serving certificate.
// Use --audit-webhook-version=audit.k8s.io/v1 (the default) and the
// default batch mode; --audit-webhook-batch-max-wait (default 30s) bounds
// how late an event arrives.
//
// # A trigger, not a source of truth
//
// Audit delivery is best-effort: the API server batches events, drops them
// when its buffer is full, gives up on a batch after a few retries (about
// 80 s with the default --audit-webhook-initial-backoff of 10s), and loses
// what is buffered when it stops. Events may also arrive twice or out of
// order. Use the keys to react sooner or to react to who changed
// something; read the object's current state from the API server or a
// cache, and keep a watch or resync for anything that must not be missed.
package audit
