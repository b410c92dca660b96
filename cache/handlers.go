package cache

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/skiffkit/skiff/queue"
)

// Registration is a handler added to an informer.
type Registration struct {
	remove func()
	synced func() bool
}

// Remove stops delivery to the handler. It is idempotent and safe to call
// from any goroutine, including the handler itself. An event handler may
// still be inside one callback when Remove returns.
func (r *Registration) Remove() { r.remove() }

// HasSynced reports whether the handler has received every object of the
// informer's first list (or, if it was added later, of the cache at the
// time it was added).
func (r *Registration) HasSynced() bool { return r.synced() }

// KeyHandlerOptions configure a key handler. The zero value is valid.
type KeyHandlerOptions struct {
	// Priority of keys from watch events and lists. Default 0.
	Priority int
	// ResyncPriority of keys delivered by Options.ResyncPeriod.
	// Default (0 is replaced): DefaultResyncPriority (−100).
	ResyncPriority int
}

type keyHandler[T Object] struct {
	q      *queue.Queue[ObjectKey]
	o      KeyHandlerOptions
	synced atomic.Bool
}

// AddKeyHandler makes every change (add, update, delete, and every object
// of a relist that changed) push its ObjectKey into q, from the
// informer's goroutine, with no buffering in between: q deduplicates bursts.
// Keys of the objects already cached are pushed at once. The handler is
// synced when the informer is.
func (inf *Informer[T]) AddKeyHandler(q *queue.Queue[ObjectKey], o KeyHandlerOptions) *Registration {
	if o.ResyncPriority == 0 {
		o.ResyncPriority = DefaultResyncPriority
	}
	h := &keyHandler[T]{q: q, o: o}
	inf.mu.Lock()
	for _, k := range inf.store.Keys() {
		q.AddWithPriority(k, o.Priority)
	}
	h.synced.Store(inf.synced)
	inf.keyHs[h] = struct{}{}
	inf.mu.Unlock()
	return &Registration{
		remove: func() {
			inf.mu.Lock()
			delete(inf.keyHs, h)
			inf.mu.Unlock()
		},
		synced: h.synced.Load,
	}
}

// EventHandler receives changes with the objects involved. Nil funcs are
// skipped. Objects are shared and read-only. Callbacks for one handler run
// one at a time on that handler's goroutine, in the order of the changes.
type EventHandler[T Object] struct {
	OnAdd    func(obj T)
	OnUpdate func(old, new T)
	// OnDelete gets the last cached state of the deleted object.
	OnDelete func(old T)
}

// EventHandlerOptions configure an event handler. The zero value is valid.
type EventHandlerOptions struct {
	// Buffer is how many changes may wait for the handler. When it is full
	// the informer waits (backpressure): the watch is not read until the
	// handler catches up, so memory stays bounded. Default 1024.
	Buffer int
}

type item[T Object] struct {
	change Change[T]
	marker bool // the end of the handler's initial objects
}

type eventHandler[T Object] struct {
	h       EventHandler[T]
	clock   queue.Clock
	ch      chan item[T]
	stop    chan struct{}
	stopped sync.Once
	initial []T // objects cached when the handler was added, delivered first
	synced  atomic.Bool
	started bool
	ctxDone <-chan struct{} // the running informer's ctx; set by startLocked under the informer's mu
	stats   *informerStats
}

// push waits for room in the buffer unless the handler was removed.
func (h *eventHandler[T]) push(it item[T]) {
	select {
	case h.ch <- it:
		return
	case <-h.stop:
		return
	default:
	}
	start := h.clock.Now()
	select {
	case h.ch <- it:
	case <-h.stop:
	case <-h.ctxDone:
	}
	h.stats.blockedNanos.Add(int64(h.clock.Now().Sub(start)))
}

// AddEventHandler delivers changes to h through a bounded buffer, on a
// goroutine of its own that Run starts (or that starts at once if Run is
// running) and joins. The objects already cached are delivered first as
// adds.
func (inf *Informer[T]) AddEventHandler(h EventHandler[T], o EventHandlerOptions) *Registration {
	eh := &eventHandler[T]{
		h:     h,
		clock: inf.o.Clock,
		ch:    make(chan item[T], orDefault(o.Buffer, DefaultEventBuffer)),
		stop:  make(chan struct{}),
		stats: inf.stats,
	}
	inf.mu.Lock()
	if inf.synced {
		eh.initial = inf.store.List(nil)
		eh.ch <- item[T]{marker: true} // the buffer is empty: never blocks
	}
	inf.eventHs[eh] = struct{}{}
	if inf.runCtx != nil {
		inf.startLocked(eh)
	}
	inf.mu.Unlock()
	return &Registration{
		remove: func() {
			eh.stopped.Do(func() { close(eh.stop) })
			inf.mu.Lock()
			delete(inf.eventHs, eh)
			inf.mu.Unlock()
		},
		synced: eh.synced.Load,
	}
}

func (inf *Informer[T]) startLocked(h *eventHandler[T]) {
	if h.started || inf.closedRuns {
		return
	}
	h.started = true
	ctx := inf.runCtx
	h.ctxDone = ctx.Done()
	inf.wg.Go(func() { h.run(ctx) })
}

func (h *eventHandler[T]) run(ctx context.Context) {
	for _, o := range h.initial {
		if h.done(ctx) {
			return
		}
		if h.h.OnAdd != nil {
			h.h.OnAdd(o)
		}
	}
	h.initial = nil
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.stop:
			return
		case it := <-h.ch:
			if it.marker {
				h.synced.Store(true)
				continue
			}
			if h.done(ctx) {
				return
			}
			h.deliver(it.change)
		}
	}
}

func (h *eventHandler[T]) done(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-h.stop:
		return true
	default:
		return false
	}
}

func (h *eventHandler[T]) deliver(c Change[T]) {
	switch c.Type {
	case Added:
		if h.h.OnAdd != nil {
			h.h.OnAdd(c.New)
		}
	case Updated:
		if h.h.OnUpdate != nil {
			h.h.OnUpdate(c.Old, c.New)
		}
	case Deleted:
		if h.h.OnDelete != nil {
			h.h.OnDelete(c.Old)
		}
	}
}
