package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/skiffkit/skiff/queue"
)

// ErrHandlerStopped is returned by Registration.WaitForSync when the
// handler will never sync: the informer's Run returned before the handler
// was given the informer's contents (a handler added after Run returned
// included), or the handler was removed first.
var ErrHandlerStopped = errors.New("cache: handler stopped before it synced")

// Registration is a handler added to an informer.
type Registration struct {
	remove func()
	sync   *handlerSync
}

// Remove stops delivery to the handler. It is idempotent and safe to call
// from any goroutine, including the handler itself. An event handler may
// still be inside one callback when Remove returns.
func (r *Registration) Remove() { r.remove() }

// HasSynced reports whether the handler has received every object of the
// informer's first list (or, if it was added later, of the cache at the
// time it was added). Once true it stays true. It stays false for good
// when the handler stops first (see WaitForSync).
func (r *Registration) HasSynced() bool { return r.sync.hasSynced() }

// WaitForSync blocks until the handler has synced (see HasSynced) and
// returns nil; or until the handler can no longer sync and returns
// ErrHandlerStopped: the informer's Run returned first, or had returned
// when the handler was added (an event handler's deliveries run on Run's
// goroutines, so one added then receives nothing; a key handler added then
// is given the cached keys at once and syncs if the informer had), or the
// handler was removed first; or until ctx ends and returns an error
// wrapping ctx.Err(). Before Run starts, it waits.
func (r *Registration) WaitForSync(ctx context.Context) error {
	if r.sync.hasSynced() {
		return nil
	}
	select {
	case <-r.sync.synced:
		return nil
	case <-r.sync.stopped:
		if r.sync.hasSynced() { // synced, then stopped: both closed
			return nil
		}
		return ErrHandlerStopped
	case <-ctx.Done():
		return fmt.Errorf("handler not synced: %w", ctx.Err())
	}
}

// handlerSync is a handler's synced state: synced is closed when the
// handler has been given the informer's contents, stopped when it will be
// given nothing more (both may be closed).
type handlerSync struct {
	synced, stopped    chan struct{}
	syncOnce, stopOnce sync.Once
}

func newHandlerSync() *handlerSync {
	return &handlerSync{synced: make(chan struct{}), stopped: make(chan struct{})}
}

func (s *handlerSync) markSynced()  { s.syncOnce.Do(func() { close(s.synced) }) }
func (s *handlerSync) markStopped() { s.stopOnce.Do(func() { close(s.stopped) }) }

func (s *handlerSync) hasSynced() bool {
	select {
	case <-s.synced:
		return true
	default:
		return false
	}
}

// KeyHandlerOptions configure a key handler. The zero value is valid.
type KeyHandlerOptions struct {
	// Priority of keys from watch events and lists. Default 0.
	Priority int
	// ResyncPriority of keys delivered by Options.ResyncPeriod.
	// Default (0 is replaced): DefaultResyncPriority (−100).
	ResyncPriority int
}

type keyHandler[T Object] struct {
	q    *queue.Queue[ObjectKey]
	o    KeyHandlerOptions
	sync *handlerSync
}

// AddKeyHandler makes every change (add, update, delete, and every object
// of a relist that changed) push its ObjectKey into q, from the
// informer's goroutine, with no buffering in between: q deduplicates bursts.
// Keys of the objects already cached are pushed at once. The handler is
// synced when the informer is; it stops when the informer's Run returns
// (or had returned when it was added) or it is removed.
func (inf *Informer[T]) AddKeyHandler(q *queue.Queue[ObjectKey], o KeyHandlerOptions) *Registration {
	if o.ResyncPriority == 0 {
		o.ResyncPriority = DefaultResyncPriority
	}
	h := &keyHandler[T]{q: q, o: o, sync: newHandlerSync()}
	inf.mu.Lock()
	for _, k := range inf.store.Keys() {
		q.AddWithPriority(k, o.Priority)
	}
	if inf.synced {
		h.sync.markSynced()
	}
	if inf.closedRuns {
		h.sync.markStopped()
	} else {
		inf.keyHs[h] = struct{}{}
	}
	inf.mu.Unlock()
	return &Registration{
		remove: func() {
			inf.mu.Lock()
			delete(inf.keyHs, h)
			inf.mu.Unlock()
			h.sync.markStopped()
		},
		sync: h.sync,
	}
}

// EventHandler receives changes with the objects involved. Nil funcs are
// skipped. Objects are shared and read-only. Callbacks for one handler run
// one at a time on that handler's goroutine. Changes of one key arrive in
// order; changes of different keys arrive in the order their keys changed
// (a key that changes again before the handler received it keeps its
// place).
//
// A handler that falls behind never holds the informer back: the watch is
// read into the store at the server's pace, and the changes the handler has
// not received yet wait merged per key (see AddEventHandler), so a slow
// handler costs memory for the keys it is behind on, never a watch that the
// API server closes for not being read.
type EventHandler[T Object] struct {
	OnAdd    func(obj T)
	OnUpdate func(old, new T)
	// OnDelete gets the last cached state of the deleted object.
	OnDelete func(old T)
}

// EventHandlerOptions configure an event handler. The zero value is valid;
// there are no options yet.
type EventHandlerOptions struct{}

type eventHandler[T Object] struct {
	h       EventHandler[T]
	wake    chan struct{} // capacity 1: something was pushed
	stop    chan struct{}
	stopped sync.Once
	initial []T // objects cached when the handler was added, delivered first
	sync    *handlerSync
	started bool // set by startLocked under the informer's mu
	stats   *informerStats

	mu      sync.Mutex
	pending backlog[T]
	closed  bool // the delivery goroutine has exited: drop pushes
}

// push records changes for the handler and wakes it once. It never waits
// for the handler.
func (h *eventHandler[T]) push(cs []Change[T]) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	before := h.pending.keys()
	var merged int64
	for _, c := range cs {
		if h.pending.push(c) {
			merged++
		}
	}
	h.stats.backlog.Add(int64(h.pending.keys() - before))
	h.mu.Unlock()
	if merged > 0 {
		h.stats.coalesced.Add(merged)
	}
	h.signal()
}

// pushMarker records the end of the handler's initial objects.
func (h *eventHandler[T]) pushMarker() {
	h.mu.Lock()
	if !h.closed {
		h.pending.pushMarker()
	}
	h.mu.Unlock()
	h.signal()
}

func (h *eventHandler[T]) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// AddEventHandler delivers changes to h on a goroutine of its own that Run
// starts (or that starts at once if Run is running) and joins. The objects
// already cached are delivered first as adds. A handler added after Run
// returned receives nothing: its registration reports ErrHandlerStopped
// (see Registration.WaitForSync), as does one whose deliveries end (Run
// returns, or Remove) before it synced.
//
// Changes wait for the handler in a backlog merged per key, so the
// informer never waits for a handler: while a key waits, its further
// changes merge into what the handler will receive — an add then updates
// arrive as one add of the latest object, updates as one update from the
// object the handler last received to the latest, an add then a delete as
// nothing, a delete then an add as that delete then the add. The handler
// always ends with the current state of every key; only the intermediate
// states it was too slow to see are skipped. Memory is bounded by the
// number of waiting keys (skiff_informer_handler_backlog) however many
// changes arrive; skiff_informer_handler_coalesced_total counts merges.
func (inf *Informer[T]) AddEventHandler(h EventHandler[T], _ EventHandlerOptions) *Registration {
	eh := &eventHandler[T]{
		h:     h,
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		stats: inf.stats,
		sync:  newHandlerSync(),
	}
	inf.mu.Lock()
	if inf.closedRuns { // no goroutine is left to deliver to it
		eh.close()
		eh.sync.markStopped()
	} else {
		if inf.synced {
			eh.initial = inf.store.List(nil)
			eh.pushMarker()
		}
		inf.eventHs[eh] = struct{}{}
		if inf.runCtx != nil {
			inf.startLocked(eh)
		}
	}
	inf.mu.Unlock()
	return &Registration{
		remove: func() {
			eh.stopped.Do(func() { close(eh.stop) })
			inf.mu.Lock()
			delete(inf.eventHs, eh)
			inf.mu.Unlock()
			eh.close()
			eh.sync.markStopped()
		},
		sync: eh.sync,
	}
}

func (inf *Informer[T]) startLocked(h *eventHandler[T]) {
	if h.started || inf.closedRuns {
		return
	}
	h.started = true
	ctx := inf.runCtx
	inf.wg.Go(func() {
		defer h.sync.markStopped()
		defer h.close()
		h.run(ctx)
	})
}

// close drops what waits and every later push. Idempotent.
func (h *eventHandler[T]) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	h.stats.backlog.Add(-int64(h.pending.keys()))
	h.pending = backlog[T]{}
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
	var buf [2]Change[T]
	for {
		h.mu.Lock()
		before := h.pending.keys()
		changes, marker, ok := h.pending.pop(buf[:0])
		h.stats.backlog.Add(int64(h.pending.keys() - before))
		if ok && marker && !h.closed {
			// Under h.mu: a Remove (close, then markStopped) either
			// comes after this, or the marker is never popped.
			h.sync.markSynced()
		}
		h.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-h.stop:
				return
			case <-h.wake:
			}
			continue
		}
		if marker {
			continue
		}
		for _, c := range changes {
			if h.done(ctx) {
				return
			}
			h.deliver(c)
		}
		clear(buf[:])
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
