package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/queue"
)

// ErrAlreadyRun is returned by Run when the informer was already run.
var ErrAlreadyRun = errors.New("cache: informer already run")

// Informer keeps a Store of T in step with the API server and tells
// handlers what changed. Build it with New (nothing starts until Run), add
// handlers at any time, run it with Run(ctx), and read it through Lister.
type Informer[T Object] struct {
	name  string
	store *Store[T]
	refl  *reflector[T]
	o     Options[T]
	stats *informerStats

	// mu serialises store writes with handler dispatch and registration,
	// so a handler added at any time sees each change exactly once: either
	// in its initial snapshot or as an event.
	mu         sync.Mutex
	keyHs      map[*keyHandler[T]]struct{}
	eventHs    map[*eventHandler[T]]struct{}
	synced     bool
	syncedCh   chan struct{}
	runCtx     context.Context // set while Run runs
	wg         sync.WaitGroup
	ran        atomic.Bool
	closedRuns bool // Run returned: no new handler goroutines
}

// New returns an informer over src. It starts nothing; call Run.
func New[T Object](src Source[T], o Options[T]) *Informer[T] {
	name := orDefault(o.Name, src.Resource)
	src, o, reuse := leanSource(src, o)
	if o.Transform == nil {
		o.Transform = DefaultTransform[T]
	}
	if o.Clock == nil {
		o.Clock = queue.RealClock{}
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	store, writer := NewStore(storeOptions(o, log.With("informer", name)))
	inf := &Informer[T]{
		name:     name,
		store:    store,
		o:        o,
		stats:    &informerStats{},
		keyHs:    map[*keyHandler[T]]struct{}{},
		eventHs:  map[*eventHandler[T]]struct{}{},
		syncedCh: make(chan struct{}),
	}
	decode, transform := src.Decode, o.Transform
	inf.refl = &reflector[T]{
		lw: src.LW,
		decode: func(obj runtime.Object) (T, error) {
			t, err := decode(obj)
			if err != nil {
				return t, err
			}
			return transform(t), nil
		},
		resource: src.Resource,
		log:      log.With("informer", name),
		store:    writer,
		reuse:    reuse,
		stats:    inf.stats,
		onErr:    o.OnError,
		dmu:      &inf.mu,
		emit:     inf.emitLocked,
		synced:   inf.syncedLocked,
		o: &options{
			watchList:      o.WatchList,
			pageSize:       orDefault(o.PageSize, DefaultPageSize),
			watchTimeout:   orDefault(o.WatchTimeout, DefaultWatchTimeout),
			initialBackoff: orDefault(o.InitialBackoff, DefaultInitialBackoff),
			maxBackoff:     orDefault(o.MaxBackoff, DefaultMaxBackoff),
			backoffReset:   orDefault(o.BackoffReset, DefaultBackoffReset),
			clock:          o.Clock,
			labelSelector:  src.Scope.LabelSelector,
			fieldSelector:  src.Scope.FieldSelector,
		},
	}
	return inf
}

// Name returns the informer's name (Options.Name or the source's resource).
func (inf *Informer[T]) Name() string { return inf.name }

// Run lists and watches until ctx ends, then waits for every goroutine it
// started (the reflector, event handler deliveries, resync) and returns nil.
// An informer runs once; a second Run returns ErrAlreadyRun.
func (inf *Informer[T]) Run(ctx context.Context) error {
	if !inf.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	if m := inf.o.Metrics; m != nil {
		m.add(inf.name, inf.stats, inf.store.Len)
		defer m.remove(inf.name, inf.stats)
	}
	inf.mu.Lock()
	inf.runCtx = ctx
	for h := range inf.eventHs {
		inf.startLocked(h)
	}
	inf.mu.Unlock()
	if inf.o.ResyncPeriod > 0 {
		inf.wg.Go(func() { inf.resyncLoop(ctx) })
	}
	inf.refl.run(ctx)
	inf.mu.Lock()
	inf.closedRuns = true
	for h := range inf.keyHs {
		h.sync.markStopped() // no more keys: a handler not synced by now never will be
	}
	inf.mu.Unlock()
	inf.wg.Wait()
	return nil
}

// HasSynced reports whether the first list has been stored.
func (inf *Informer[T]) HasSynced() bool {
	select {
	case <-inf.syncedCh:
		return true
	default:
		return false
	}
}

// WaitForSync blocks until the first list is stored or ctx ends; then it
// returns an error that includes the last list/watch error, if any.
func (inf *Informer[T]) WaitForSync(ctx context.Context) error {
	select {
	case <-inf.syncedCh:
		return nil
	case <-ctx.Done():
		if last := inf.stats.lastError(); last != nil {
			return fmt.Errorf("informer %s not synced: %w (last error: %w)", inf.name, ctx.Err(), last)
		}
		return fmt.Errorf("informer %s not synced: %w", inf.name, ctx.Err())
	}
}

// LastError returns the most recent list or watch error, nil if none yet.
// It is not cleared by later successes.
func (inf *Informer[T]) LastError() error { return inf.stats.lastError() }

// Stats is a snapshot of an informer's counters.
type Stats struct {
	Objects       int
	Relists       int64 // lists done (the first included)
	WatchRestarts int64 // watches reopened after one ended
	Events        int64 // watch events applied
	Skipped       int64 // objects that could not be decoded or had no name
	// Kept counts objects a relist found unchanged on the wire (same
	// key and resourceVersion as stored) and kept without decoding them.
	Kept   int64
	Errors int64 // failed lists and watches
	// HandlerBacklog is how many keys wait for the informer's event
	// handlers (summed over handlers): changes they have not received yet.
	HandlerBacklog int64
	// Coalesced counts changes merged into changes already waiting for a
	// handler (see AddEventHandler).
	Coalesced       int64
	ResourceVersion string
}

// Stats returns the informer's counters.
func (inf *Informer[T]) Stats() Stats {
	rv, _ := inf.stats.lastRV.Load().(string)
	return Stats{
		Objects: inf.store.Len(), Relists: inf.stats.relists.Load(), WatchRestarts: inf.stats.watchRestarts.Load(),
		Events: inf.stats.events.Load(), Skipped: inf.stats.skipped.Load(), Kept: inf.stats.kept.Load(), Errors: inf.stats.errors.Load(),
		HandlerBacklog: inf.stats.backlog.Load(), Coalesced: inf.stats.coalesced.Load(), ResourceVersion: rv,
	}
}

// Lister reads the informer's store without API calls. Objects it returns
// are shared with the cache and other readers: read-only.
type Lister[T Object] struct{ s *Store[T] }

// Lister returns a reader of the cache.
func (inf *Informer[T]) Lister() Lister[T] { return Lister[T]{inf.store} }

// Store returns the informer's store, read-only: only the informer holds
// its Writer.
func (inf *Informer[T]) Store() *Store[T] { return inf.store }

// Get returns the object namespace/name (namespace "" for cluster-scoped).
func (l Lister[T]) Get(namespace, name string) (T, bool) {
	return l.s.Get(ObjectKey{Namespace: namespace, Name: name})
}

// List returns objects matching sel (nil: all).
func (l Lister[T]) List(sel labels.Selector) []T { return l.s.List(sel) }

// ListInNamespace returns the objects of namespace matching sel (nil: all).
func (l Lister[T]) ListInNamespace(namespace string, sel labels.Selector) []T {
	objs, _ := l.s.loadByIndex(NamespaceIndex, namespace, sel)
	return objs
}

// ByIndex returns the objects with value in index name.
func (l Lister[T]) ByIndex(name, value string) []T { return l.s.ByIndex(name, value) }

// emitLocked hands a batch of changes to every handler: keys to key
// handlers' queues, the changes to each event handler's backlog with one
// wake-up per handler. Called with mu held.
func (inf *Informer[T]) emitLocked(cs []Change[T]) {
	if inf.o.Metrics != nil {
		var d int64
		for _, c := range cs {
			if c.Type != Deleted {
				d += sizeOf(c.New)
			}
			if c.Type != Added {
				d -= sizeOf(c.Old)
			}
		}
		inf.stats.bytes.Add(d)
	}
	for h := range inf.keyHs {
		for _, c := range cs {
			h.q.AddWithPriority(c.Key, h.o.Priority)
		}
	}
	for h := range inf.eventHs {
		h.push(cs)
	}
}

// syncedLocked hands the changes of a completed list to every handler and
// marks the informer synced. Called with mu held.
func (inf *Informer[T]) syncedLocked(changes []Change[T], _ string) {
	first := !inf.synced
	if len(changes) > 0 {
		inf.emitLocked(changes)
	}
	if first {
		inf.synced = true
		for h := range inf.keyHs {
			h.sync.markSynced()
		}
		for h := range inf.eventHs {
			h.pushMarker()
		}
		close(inf.syncedCh)
	}
}

func (inf *Informer[T]) resyncLoop(ctx context.Context) {
	t := inf.o.Clock.NewTimer(inf.o.ResyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		inf.mu.Lock()
		hs := make([]*keyHandler[T], 0, len(inf.keyHs))
		for h := range inf.keyHs {
			hs = append(hs, h)
		}
		inf.mu.Unlock()
		if len(hs) > 0 {
			keys := inf.store.Keys()
			for _, h := range hs {
				for _, k := range keys {
					h.q.AddWithPriority(k, h.o.ResyncPriority)
				}
			}
		}
		t.Reset(inf.o.ResyncPeriod)
	}
}
