// Package deadletter persists a controller's dead letters (keys that used
// up their retry budget, queue.Options.MaxFailures) in the cluster, so they
// survive a restart and a hand-off to another replica, and can be listed
// and replayed from any replica's /debug/skiff.
//
// # Layout
//
// One ConfigMap per controller, ConfigMapName(controller) (for example
// "skiff-deadletters-widgets"), in StoreOptions.Namespace (default
// "default"), labelled app.kubernetes.io/managed-by=skiff and
// app.kubernetes.io/component=dead-letters, annotated
// skiff.dev/dead-letters-of=<controller>. Each data key is one dead letter:
//
//	data key  DataKey(key): [-._a-zA-Z0-9]+ escaping of the key, e.g.
//	          "default_2fweb" for default/web; a SHA-256 form past 253 bytes
//	value     JSON: {"key":"default/web","attempts":5,"lastError":"…",
//	          "firstFailure":"…","lastFailure":"…","replica":"pod-a"}
//
// lastError is cut to MaxErrorBytes (1 KiB), an entry to MaxEntryBytes
// (2 KiB); at most MaxEntries data keys (default 256, at most 400), so the
// object stays well under the API server's 1 MiB limit. A dead letter that
// would exceed the bound is not persisted — it stays dead in its queue,
// counted in skiff_deadletter_dropped_total and logged — rather than
// dropping the oldest entry: a vanished entry means "replay" to its owner
// (below), so dropping would silently replay someone's dead letter.
// Entries that do not decode (Decode, Problem) are logged, counted in
// skiff_deadletter_malformed, skipped, and left untouched by every write.
//
// Keys: Entry.Key is the key as a Codec encodes it; RequestCodec does
// controller.Request ("namespace/name"), the builder's key. A controller
// with another key type passes its own Codec.
//
// # Protocol
//
// A Syncer, run by the controller (controller.Options.DeadLetterStore),
// reconciles the queue's dead-letter set with the ConfigMap for the keys
// this replica owns (controller.Options.OwnsKey; nil: all keys). Decide is
// its pure core; in short:
//
//   - newly dead here → written (Put), with this replica as "replica";
//     dead here and stored with another record (written by the previous
//     owner) → rewritten (Replace) only if the entry is still there when
//     the write lands, so a replay asked meanwhile is not undone;
//   - stored, not dead here, not being processed → queue.Restore: the load
//     on start (the controller starts its workers only after it) and after
//     a hand-off; a key being processed is restored after its reconcile
//     unless that reconcile succeeded, then its entry is deleted. Until a
//     pass has restored it, the controller's workers do not reconcile such
//     a key (Syncer.Restorable): after a hand-off the new owner's cache
//     may deliver the object before the pass that knows it owns the key;
//   - dead here and its entry deleted by someone else → queue.Replay: a
//     replay requested on another replica (or by deleting the data key by
//     hand);
//   - replayed here (Syncer.Replay, or straight through the queue) → the
//     entry is deleted.
//
// Replay from any replica (Syncer.Replay, the /debug/skiff action) deletes
// the entry first and then replays the key if it is dead here; the owner
// replays it when it sees the entry gone. Writes use the ConfigMap's
// resourceVersion and, on a conflict, re-read and re-apply their change.
//
// # Failure cases
//
//   - A replica dies before writing a new dead letter: the key is not
//     persisted; the next owner reconciles it again with a fresh budget.
//   - The API server is unreachable: writes fail (logged, counted in
//     skiff_deadletter_write_errors_total) and are retried at the next pass
//     (every change, and every 10 s); dead letters stay in the queue, and
//     entries a failed write meant to delete are deleted again (not
//     restored: that would undo a replay).
//   - A replica stops owning a key: the key's entry stays (the new owner
//     restores it); the old replica's queue keeps its copy, which it no
//     longer syncs.
//
// Metrics (label controller): skiff_deadletter_persisted,
// skiff_deadletter_malformed, skiff_deadletter_write_errors_total,
// skiff_deadletter_dropped_total.
package deadletter
