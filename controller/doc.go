// Package controller runs a Reconciler over a work queue with an adaptive
// pool of workers — the runtime half of a Kubernetes controller.
//
// Features:
//
//   - Results that say what to do next (Result): done; requeue now; requeue
//     after a duration — through the controller's requeue rate limit, so
//     RequeueAfter cannot bypass it — and at a chosen priority.
//   - Error classes: transient errors retry with per-key backoff and count
//     against the retry budget (dead letters, via queue.Options.MaxFailures);
//     Terminal errors are recorded and never retried; RetryAfter errors wait
//     the given delay without growing the backoff.
//   - Workers: a pool between MinWorkers and MaxWorkers that a Sizer resizes
//     from queue depth, busy workers and measured throughput (hill climbing),
//     resizable at runtime (SetWorkerBounds). The queue guarantees that one
//     key is never reconciled by two workers at once.
//   - Optional per-reconcile timeout; panics are recovered, counted and
//     retried as transient errors.
//   - Shutdown in a fixed order: stop taking keys, let in-flight reconciles
//     finish within ShutdownTimeout, then cancel them, join every worker,
//     shut the owned queue down.
//   - Metrics with controller-runtime's names (controller_runtime_*), logs
//     through log/slog.
//
// Wiring keys from informers into Queue() (For, Owns, Watches, predicates)
// is the job of the builder that sits on top of the cache package.
package controller
