// Package cache is Skiff's informer engine: it keeps a local, indexed copy of
// Kubernetes objects in step with the API server and tells controllers what
// changed.
//
// Features:
//
//   - Store[T]: typed, thread-safe, keyed "namespace/name"; named indexes
//     (NamespaceIndex built in, LabelIndex, any IndexFunc); Get, List(selector),
//     ByIndex. Readers hold a read lock only while copying pointers out.
//     Objects handed out are shared and read-only.
//   - Relists without two copies: Store.BeginReplace streams a full listing
//     in, keeps only objects that differ (new key or new resourceVersion),
//     swaps them in at Finish in one step and reports only real changes
//     (adds, updates, deletes of vanished keys). A protobuf watch-list
//     relist does not even decode an object the store holds at the same
//     resourceVersion: it reads namespace, name and resourceVersion from
//     the wire bytes and keeps the cached object (ReplaceSession.Keep).
//   - Transform before storing: DefaultTransform strips managedFields and
//     the last-applied-configuration annotation. Project caches a small
//     struct of your own (embed Meta) instead of the full object.
//   - Decode only what is kept: with the default transform, TypedSource cuts
//     managedFields and the last-applied annotation out of the protobuf
//     bytes before decoding (Options.FullDecode turns it off). After the
//     transform, strings and small maps that repeat across objects (for
//     unstructured objects, any equal subtree) are shared through a
//     bounded per-informer interner (Options.NoIntern).
//     LeanSerializer and LeanRESTSource give other REST clients (the client
//     package's) the same cut. Pods read from a watch stream share the
//     parts their template repeats (resources, probes, ports, env, mounts,
//     security contexts, affinity, tolerations, …) by wire bytes: decoded
//     once per distinct part, bounded tables (cache/specshare.go).
//   - Compact mode (Options.Compact, opt-in): objects are kept encoded
//     (Codec: protobuf for k8s.io/api types, JSON otherwise) with key,
//     resourceVersion, labels and index values extracted at insert, so key
//     handlers, indexes and selectors never decode; every read decodes a
//     fresh object the caller owns. Several times less memory per object,
//     a decode per read.
//   - Reflector behind ListerWatcher (the only I/O): streaming watch-list
//     (sendInitialEvents, ended by the k8s.io/initial-events-end bookmark),
//     falling back to paginated lists (PageSize, default 500) when the
//     server rejects it; custom sources list in pages until the server
//     answers in CBOR (WatchListAuto: a JSON watch-list costs the server
//     twice a paginated list; WatchListOn streams always); watches from the list's resourceVersion with
//     bookmarks; resumes from the last resourceVersion seen after a
//     disconnect; relists on 410 Gone, Expired or "too large resource
//     version"; server-side watch timeouts with jitter; exponential backoff
//     with jitter that resets after a healthy period; injected clock.
//   - Sources: TypedSource (k8s.io/api types, protobuf on the wire),
//     CustomSource/CustomSourceFor (custom resources decoded from JSON or
//     CBOR straight into your own Go struct or unstructured; objects that
//     do not fit are skipped and counted; JSON into a struct goes through
//     a one-pass decoder that follows the struct's fields, skipping
//     managedFields and the last-applied annotation as it reads, and hands
//     an object to sigs.k8s.io/json whole whenever it cannot be sure to
//     decode it exactly as that would: duplicate member names, escaped
//     names, type mismatches, null for an UnmarshalJSON value, subtle
//     embedding), UnstructuredSource (custom
//     resources, JSON, through client-go's dynamic client), Structured
//     (an unstructured source decoded into your own Go struct),
//     MetadataSource (PartialObjectMetadata), or any ListerWatcher.
//   - Watch streams over HTTP/1.1: the watches of TypedSource,
//     WithProtoWatch, CustomSourceFor and WithWatchConfig ask for HTTP/1.1
//     on a connection of their own, while lists and every other request
//     share the config's HTTP/2 connection (a long stream of small frames
//     costs both ends less CPU without HTTP/2's framing and flow control);
//     a keepalive dialer finds a dead server in ~30 s; a config that sets
//     TLSClientConfig.NextProtos or a Transport keeps its choice.
//   - Informer[T]: Run(ctx) blocks and joins what it started (New starts
//     nothing); HasSynced, WaitForSync (its error names the last list/watch
//     error); a Lister; Stats. Objects that cannot be decoded are skipped,
//     logged and counted; the informer goes on.
//   - Factory: one informer (one watch) per resource, type, namespace,
//     selectors and projection per process.
//   - Handlers: key handlers push keys into a queue.Queue[string] with no
//     buffering in between (the queue deduplicates); event handlers get
//     add/update/delete with old and new objects on their own goroutine,
//     from a backlog merged per key: a slow handler never stops the watch
//     from being read (which would make the API server close it), and its
//     memory is bounded by the keys it is behind on; both can be removed
//     and report their own synced state (WaitForSync returns
//     ErrHandlerStopped once a handler can no longer sync: Run returned or
//     it was removed first); optional periodic resync of keys at low
//     priority.
//   - Metrics: objects, approximate bytes, relists, watch restarts, events,
//     skipped objects, errors, handler backlog and merged changes, last
//     resourceVersion.
//
// Concurrency: each Informer has one writer (its Run goroutine); every read
// method of Store, Lister and Informer is safe for concurrent use.
package cache
