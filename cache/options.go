package cache

import (
	"log/slog"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// Defaults of Options.
const (
	DefaultPageSize       = 500
	DefaultWatchTimeout   = 5 * time.Minute
	DefaultInitialBackoff = 800 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultBackoffReset   = 2 * time.Minute
	DefaultResyncPriority = -100
)

// WatchListMode chooses how the initial list (and every relist) is done.
type WatchListMode uint8

const (
	// WatchListAuto is WatchListOn, except for sources that list faster in
	// pages: custom resources (CustomSource, CustomSourceFor) use
	// paginated lists until a list comes back as CBOR. For JSON the API
	// server's cost of a watch-list is about twice that of a paginated
	// list (it encodes and flushes every object as an event: 0.27 vs
	// 0.14 s of server CPU for 2000 3 KB objects,
	// BenchmarkInformerServerBound), and on a busy control plane that
	// cost is the cold start (bench/README.md, I5); a server that serves
	// CBOR streams more cheaply than it pages.
	WatchListAuto WatchListMode = iota
	// WatchListOff always uses paginated lists.
	WatchListOff
	// WatchListOn streams the list as watch events (sendInitialEvents)
	// and falls back to paginated lists, for the informer's lifetime, when
	// the server rejects the request as invalid.
	WatchListOn
)

// Options configure an Informer. The zero value is valid; every field
// states its default.
type Options[T Object] struct {
	// Name labels logs and metrics. Default: the source's resource.
	Name string

	// Transform runs on every object before it is stored (and before
	// handlers see it); it may modify the object in place, which is
	// freshly decoded and not yet shared. It must keep the object's
	// namespace, name and resourceVersion: the store tells changed objects
	// from unchanged ones by resourceVersion, and a relist does not decode
	// (nor transform) an object whose wire namespace, name and
	// resourceVersion match a cached one, it keeps the cached object
	// (protobuf watch-lists, see relistskip.go). Unless NoIntern, the
	// interner then writes into the object's maps and slices, so the
	// object must share none with another (nor with anything the
	// Transform keeps). Default DefaultTransform
	// (strips managedFields and the last-applied annotation). Use KeepAll
	// to store objects untouched.
	Transform func(T) T

	// FullDecode makes the informer decode metadata.managedFields and the
	// last-applied annotation even when DefaultTransform then drops them.
	// Default false: while Transform is nil (DefaultTransform), sources
	// that can (TypedSource) cut both out of the wire bytes before
	// decoding, so they are never allocated. With any other Transform
	// objects are always decoded whole.
	//
	// In the same case (Transform nil, FullDecode false, not Compact), a
	// TypedSource or RESTSource/LeanRESTSource with WithProtoWatch of a
	// type whose spec is protobuf field 2 (pods, deployments, …) decodes
	// an update whose spec bytes are unchanged without its spec: the new
	// object's Spec is a shallow copy of the cached object's, sharing its
	// slices, maps and pointers (see specreuse.go). Like interning, this
	// relies on cached objects being read-only.
	FullDecode bool

	// NoIntern keeps every decoded string and map as its own allocation.
	// Default false: after Transform, strings that repeat across objects
	// (namespaces, label and annotation keys and short values, owner
	// references, and for pods images, container, volume and env names,
	// enum values, …) share one copy per informer, and so do equal label,
	// annotation and node-selector maps and resource lists, and for
	// *unstructured.Unstructured every equal map and slice inside the
	// object but its root and metadata maps (see internu.go), which
	// makes each cached object smaller. Cached objects are read-only: with
	// shared maps, writing into one would change others too.
	NoIntern bool

	// Compact keeps each cached object encoded (CompactCodec) instead of
	// decoded, with its key, resourceVersion, labels and index values
	// extracted once when it is stored: key handlers, indexes and label
	// selectors work without a decode, and Get, List and ByIndex decode a
	// fresh object on every call, which the caller owns. Event handlers get
	// the object decoded from the watch as New and, for updates and
	// deletes, one decoded from the cache as Old. A cached pod then costs
	// about its stripped protobuf size (~2–3 KB) instead of its Go
	// structure (~8 KB interned), and each read costs a decode (~10–40 µs
	// per pod; bench/README.md, I2c). Transform still runs before the
	// object is encoded; interning applies to namespaces, labels and index
	// values only. Default false.
	Compact bool

	// CompactCodec encodes objects of a compact informer. Default
	// DefaultCodec[T]: protobuf for k8s.io/api types, JSON otherwise.
	CompactCodec Codec[T]

	// Indexes are extra named indexes; NamespaceIndex is always there.
	Indexes map[string]IndexFunc[T]

	// WatchList selects streaming lists or paginated lists.
	// Default WatchListAuto.
	WatchList WatchListMode

	// PageSize is the limit of each page of a paginated list.
	// Default DefaultPageSize (500).
	PageSize int64

	// WatchTimeout is the minimum server-side timeout of each watch; each
	// watch asks for a random value in [WatchTimeout, 2·WatchTimeout) so
	// that many informers do not reconnect at once. Default 5 minutes.
	WatchTimeout time.Duration

	// InitialBackoff and MaxBackoff bound the exponential delay after a
	// failed list or watch (each delay gets up to +100% random jitter).
	// BackoffReset is how long list/watch must work before the backoff
	// starts again from InitialBackoff. Defaults 800 ms, 30 s, 2 minutes.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	BackoffReset   time.Duration

	// ResyncPeriod, if positive, makes every key handler receive every
	// cached key again each period, at its ResyncPriority. Default 0: none.
	ResyncPeriod time.Duration

	// Clock is the time source for backoff and resync. Default queue.RealClock.
	Clock queue.Clock

	// Logger receives retries, relists and skipped objects.
	// Default slog.Default().
	Logger *slog.Logger

	// OnError, if set, is called (from the informer's goroutine) with every
	// list or watch error before the informer backs off and retries.
	OnError func(error)

	// Metrics, if non-nil, exports this informer's metrics under Name.
	// Default nil: no metrics.
	Metrics *Metrics
}

// KeepAll is a Transform that stores objects as received.
func KeepAll[T Object](obj T) T { return obj }

// options are the non-generic, defaulted reflector settings.
type options struct {
	watchList      WatchListMode
	pageSize       int64
	watchTimeout   time.Duration
	initialBackoff time.Duration
	maxBackoff     time.Duration
	backoffReset   time.Duration
	clock          queue.Clock
	labelSelector  string
	fieldSelector  string
}

func orDefault[V comparable](v, def V) V {
	var zero V
	if v == zero {
		return def
	}
	return v
}
