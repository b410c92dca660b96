package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/queue"
)

// Request is the key of controllers built by the builder: the namespace
// ("" for cluster-scoped objects) and name of the object to reconcile. It
// prints as "namespace/name".
type Request = types.NamespacedName

// Reconciler brings the world in line with the desired state of one key.
// Reconcile must be safe to call concurrently for different keys; the
// controller never calls it concurrently for the same key.
type Reconciler[K comparable] interface {
	Reconcile(ctx context.Context, key K) (Result, error)
}

// ReconcileFunc adapts a function to Reconciler.
type ReconcileFunc[K comparable] func(ctx context.Context, key K) (Result, error)

// Reconcile calls f.
func (f ReconcileFunc[K]) Reconcile(ctx context.Context, key K) (Result, error) { return f(ctx, key) }

// Options configure a Controller. Every field states its default.
type Options[K comparable] struct {
	// Name identifies the controller in metrics (label "controller") and
	// logs. Required.
	Name string
	// MinWorkers and MaxWorkers bound the adaptive worker pool (see Sizer).
	// Defaults: 1 and 32. MinWorkers == MaxWorkers gives a fixed pool.
	MinWorkers, MaxWorkers int
	// SizingInterval is how often the pool is resized. Default 250ms.
	SizingInterval time.Duration
	// ReconcileTimeout, if > 0, bounds each Reconcile through its context.
	// Default 0: no timeout.
	ReconcileTimeout time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight reconciles
	// after its context ends; then their contexts are cancelled and Run
	// waits for them to return. Default 30s.
	ShutdownTimeout time.Duration
	// RequeueQPS and RequeueBurst rate-limit requeues asked for by Result
	// (Requeue, RequeueAfter) across all keys, so RequeueAfter cannot
	// bypass the controller's rate limit. Defaults: 50 per second, burst 100.
	// Negative RequeueQPS: no limit.
	RequeueQPS   float64
	RequeueBurst int
	// Queue is the work queue. Default: a new queue.Queue named Name with
	// MaxFailures; the controller then shuts it down when Run returns.
	Queue *queue.Queue[K]
	// MaxFailures is the retry budget of the default queue (see
	// queue.Options.MaxFailures): after that many transient failures in a
	// row a key becomes a dead letter. Default 0: retry forever.
	MaxFailures int
	// Clock is the time source. Default queue.RealClock{}.
	Clock queue.Clock
	// Metrics, if non-nil, receives controller_runtime_* metrics.
	Metrics *Metrics
	// QueueMetrics, if non-nil, receives the default queue's workqueue_*
	// metrics (client-go's names and labels, name=Name). Ignored when Queue
	// is set (give that queue its own queue.Options.Metrics).
	QueueMetrics *queue.Metrics
	// Logger receives reconcile errors. Default slog.Default().
	Logger *slog.Logger
	// DeadLetterStore, if non-nil, persists the queue's dead letters in the
	// cluster, so they survive a restart and a hand-off to another
	// replica: Run runs a deadletter.Syncer (see package deadletter for the
	// protocol), starts the workers only after the persisted dead letters
	// of owned keys are loaded into the queue (or after 30 s, logged, if
	// the store cannot be read), and DeadLetterInfos, ReplayKey and
	// ReplayAll cover every replica's dead letters. A key whose persisted
	// dead letter is not loaded here yet (just handed over) is not
	// reconciled: it stays dead until a replay. Default nil: dead
	// letters live only in the queue.
	DeadLetterStore *deadletter.Store
	// DeadLetterCodec turns keys into the store's strings and back.
	// Default: deadletter.RequestCodec when K is Request; other key types
	// need one when DeadLetterStore is set.
	DeadLetterCodec deadletter.Codec[K]
	// OwnsKey reports whether this replica owns a key now (a shard's
	// ownership filter); only owned keys' dead letters are persisted,
	// loaded and replayed here. Default nil: every key is owned.
	OwnsKey func(K) bool
	// OwnershipChanges, if non-nil, returns a channel closed at the next
	// change of OwnsKey's answers, so dead letters move at once after a
	// hand-off (see deadletter.SyncOptions). Default nil: within 10 s.
	OwnershipChanges func() <-chan struct{}
	// Gate, if non-nil, admits every key before its reconcile (see Gate);
	// refused keys are dropped. Default nil: every key is reconciled.
	Gate Gate[K]
	// TracerProvider, if non-nil, traces every reconcile: a span "reconcile
	// <Name>" with attributes controller, key and reconcileID (as in
	// Logger's lines), the parent of the spans of requests made with the
	// reconcile's context (see client.Options.TracerProvider). Default nil:
	// no spans.
	TracerProvider trace.TracerProvider
}

// Controller runs a Reconciler over the keys of a queue with an adaptive pool
// of workers. Create it with New, feed keys into Queue(), and call Run once.
type Controller[K comparable] struct {
	name       string
	rec        Reconciler[K]
	q          *queue.Queue[K]
	ownsQueue  bool
	clock      queue.Clock
	interval   time.Duration
	timeout    time.Duration
	shutdown   time.Duration
	requeueLim queue.RateLimiter[K]
	log        *slog.Logger
	m          *Metrics
	tracer     trace.Tracer          // nil: no spans
	dl         *deadletter.Syncer[K] // nil without DeadLetterStore
	gate       Gate[K]               // nil: admit everything

	started atomic.Bool

	mu        sync.Mutex
	sizer     Sizer
	workers   []context.CancelFunc // one per running worker, newest last
	resize    func(n int)          // set while Run runs
	active    int
	busyInt   float64 // ∫ active dt over the current interval, in seconds
	lastBusy  time.Time
	completed int

	stats stats
}

type stats struct {
	reconciles, errors, terminal, panics, requeues atomic.Int64
}

// New validates o and returns a controller that has started nothing.
func New[K comparable](r Reconciler[K], o Options[K]) (*Controller[K], error) {
	if r == nil {
		return nil, errors.New("controller: nil Reconciler")
	}
	if o.Name == "" {
		return nil, errors.New("controller: Options.Name is required")
	}
	if o.MinWorkers < 0 || o.MaxWorkers < 0 {
		return nil, fmt.Errorf("controller %s: negative worker bounds (min %d, max %d)", o.Name, o.MinWorkers, o.MaxWorkers)
	}
	if o.MinWorkers == 0 {
		o.MinWorkers = 1
	}
	if o.MaxWorkers == 0 {
		o.MaxWorkers = max(32, o.MinWorkers)
	}
	if o.MinWorkers > o.MaxWorkers {
		return nil, fmt.Errorf("controller %s: MinWorkers %d > MaxWorkers %d", o.Name, o.MinWorkers, o.MaxWorkers)
	}
	if o.SizingInterval < 0 || o.ReconcileTimeout < 0 || o.ShutdownTimeout < 0 || o.RequeueBurst < 0 || o.MaxFailures < 0 {
		return nil, fmt.Errorf("controller %s: negative SizingInterval, ReconcileTimeout, ShutdownTimeout, RequeueBurst or MaxFailures", o.Name)
	}
	c := &Controller[K]{
		name: o.Name, rec: r, q: o.Queue, clock: o.Clock, interval: o.SizingInterval,
		timeout: o.ReconcileTimeout, shutdown: o.ShutdownTimeout, log: o.Logger, m: o.Metrics,
		sizer: Sizer{Min: o.MinWorkers, Max: o.MaxWorkers}, gate: o.Gate,
	}
	if c.clock == nil {
		c.clock = queue.RealClock{}
	}
	if o.TracerProvider != nil {
		c.tracer = o.TracerProvider.Tracer(TracerName)
	}
	if c.m != nil {
		c.m.init(o.Name)
	}
	if c.interval == 0 {
		c.interval = 250 * time.Millisecond
	}
	if c.shutdown == 0 {
		c.shutdown = 30 * time.Second
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("controller", o.Name)
	if c.q == nil {
		c.q = queue.New(queue.Options[K]{Name: o.Name, Clock: c.clock, MaxFailures: o.MaxFailures, Metrics: o.QueueMetrics})
		c.ownsQueue = true
	}
	if o.DeadLetterStore != nil {
		codec := o.DeadLetterCodec
		if codec == nil {
			var ok bool
			if codec, ok = any(deadletter.RequestCodec{}).(deadletter.Codec[K]); !ok {
				return nil, fmt.Errorf("controller %s: DeadLetterStore needs a DeadLetterCodec for key type %T", o.Name, *new(K))
			}
		}
		var err error
		c.dl, err = deadletter.NewSyncer(deadletter.SyncOptions[K]{
			Store: o.DeadLetterStore, Queue: c.q, Codec: codec, OwnsKey: o.OwnsKey, OwnershipChanges: o.OwnershipChanges,
			Clock: c.clock, Logger: c.log,
		})
		if err != nil {
			return nil, fmt.Errorf("controller %s: %w", o.Name, err)
		}
	}
	qps, burst := o.RequeueQPS, o.RequeueBurst
	if qps == 0 {
		qps = 50
	}
	if burst == 0 {
		burst = 100
	}
	if qps > 0 {
		c.requeueLim = queue.NewTokenBucket[K](qps, burst)
	}
	return c, nil
}

// Name is the controller's name.
func (c *Controller[K]) Name() string { return c.name }

// Queue is the controller's work queue: event handlers add keys to it.
func (c *Controller[K]) Queue() *queue.Queue[K] { return c.q }

// Workers returns the pool's current size and how many workers are
// reconciling right now.
func (c *Controller[K]) Workers() (size, active int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.workers), c.active
}

// SetWorkerBounds changes the adaptive pool's bounds at runtime; the pool is
// resized into them at once if Run is running. It fails on invalid bounds.
func (c *Controller[K]) SetWorkerBounds(minWorkers, maxWorkers int) error {
	if minWorkers < 1 || maxWorkers < minWorkers {
		return fmt.Errorf("controller %s: invalid worker bounds min %d max %d (need 1 <= min <= max)", c.name, minWorkers, maxWorkers)
	}
	c.mu.Lock()
	c.sizer = Sizer{Min: minWorkers, Max: maxWorkers, HoldIntervals: c.sizer.HoldIntervals}
	resize := c.resize
	c.mu.Unlock()
	if resize != nil {
		resize(min(max(c.size(), minWorkers), maxWorkers))
	}
	return nil
}

func (c *Controller[K]) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.workers)
}
