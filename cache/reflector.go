package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// ListerWatcher is the reflector's only I/O: list a page and open a watch,
// both scoped to one resource (namespace included). The reflector fills in
// selectors, resourceVersion, pagination and watch-list fields of opts.
//
// List returns a list object (meta.ListAccessor and meta.EachListItem work
// on it: a typed list, *unstructured.UnstructuredList or
// *metav1.PartialObjectMetadataList). Watch returns a stream whose ERROR
// events carry a *metav1.Status. A wrapper of another ListerWatcher that
// passes watch events on unread should implement EventRelay.
type ListerWatcher interface {
	List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// errWatchEndedEarly reports a watch-list stream that closed before the
// initial-events-end bookmark.
var errWatchEndedEarly = errors.New("watch-list stream ended before the initial-events-end bookmark")

// isStale reports errors after which resuming from the last resourceVersion
// cannot work and a fresh list is needed: 410 Gone, Expired, and "too large
// resource version" (a server that is behind the version we ask for).
func isStale(err error) bool {
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge) {
		return true
	}
	var st apierrors.APIStatus
	return errors.As(err, &st) && strings.Contains(st.Status().Message, "Too large resource version")
}

// watchListRejected reports the error a server gives when it does not
// support streaming initial events (feature disabled or too old to accept
// the parameters): the request is invalid or bad.
func watchListRejected(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// reflector keeps a Store in step with the server: list (streaming
// watch-list, else paginated), then watch from the list's resourceVersion,
// resume after disconnects, relist when the version is gone. It is the
// informer's single writer; every write goes through apply.
type reflector[T Object] struct {
	lw       ListerWatcher
	decode   func(runtime.Object) (T, error)
	resource string
	o        *options
	log      *slog.Logger

	// emit is called with the real changes of each batch of events, in
	// order, from run's goroutine; synced is called after each completed
	// list with its changes. Both with dmu held; the slice is reused after
	// the call returns.
	emit   func([]Change[T])
	synced func(changes []Change[T], rv string)
	store  *Writer[T]
	// reuse, if not nil, is told what the store holds (see specReuse);
	// the watch decoder fills it on this goroutine.
	reuse *specReuse
	stats *informerStats
	onErr func(error)
	// dmu is held around each store write and its emit, so that handler
	// registration sees a consistent store and event stream.
	dmu *sync.Mutex

	// ops and changes are reused between batches (run's goroutine only).
	ops     []watchOp[T]
	changes []Change[T]

	watchListOff bool
	lastRV       string
	failures     int
	healthySince time.Time
}

// run loops until ctx ends.
func (r *reflector[T]) run(ctx context.Context) {
	needList, watched := true, false
	for ctx.Err() == nil {
		var err error
		switch {
		case needList:
			r.lastRV = ""
			if r.reuse != nil {
				r.reuse.reset()
			}
			if r.useWatchList() {
				err = r.watchList(ctx)
				if err != nil && r.lastRV == "" && watchListRejected(err) {
					r.log.Info("server does not stream initial events; using paginated lists", "resource", r.resource, "err", err)
					r.watchListOff = true
					continue
				}
				watched = r.lastRV != ""
			} else {
				err = r.list(ctx)
			}
			needList = r.lastRV == ""
		default:
			if watched {
				r.stats.watchRestarts.Add(1)
			}
			watched = true
			err = r.watch(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue // a list that worked, or a watch that ended normally (timeout): go on at once
		}
		if isStale(err) {
			r.log.Info("resourceVersion is gone; relisting", "resource", r.resource, "resourceVersion", r.lastRV, "err", err)
			needList = true
			continue
		}
		r.stats.errors.Add(1)
		r.stats.setLastError(err)
		if r.onErr != nil {
			r.onErr(err)
		}
		d := r.backoff()
		r.log.Info("list/watch failed; backing off", "resource", r.resource, "err", err, "backoff", d)
		t := r.o.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// backoff returns the next delay: exponential from InitialBackoff to
// MaxBackoff with up to +100% jitter, starting over when the last failure
// came after at least BackoffReset of healthy operation.
func (r *reflector[T]) backoff() time.Duration {
	now := r.o.clock.Now()
	if !r.healthySince.IsZero() && now.Sub(r.healthySince) >= r.o.backoffReset {
		r.failures = 0
	}
	r.healthySince = time.Time{}
	d := r.o.initialBackoff << min(r.failures, 30)
	if d > r.o.maxBackoff || d <= 0 {
		d = r.o.maxBackoff
	}
	r.failures++
	return d + time.Duration(rand.Float64()*float64(d))
}

func (r *reflector[T]) healthy() {
	if r.healthySince.IsZero() {
		r.healthySince = r.o.clock.Now()
	}
}

func (r *reflector[T]) baseOptions() metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: r.o.labelSelector, FieldSelector: r.o.fieldSelector}
}

func (r *reflector[T]) watchTimeout() *int64 {
	s := int64((r.o.watchTimeout + time.Duration(rand.Float64()*float64(r.o.watchTimeout))) / time.Second)
	return &s
}

// list does a paginated consistent list into a replace session.
func (r *reflector[T]) list(ctx context.Context) error {
	if ps, ok := r.lw.(pageSource); ok && ps.canListPages() {
		return r.listPrefetched(ctx, ps)
	}
	opts := r.baseOptions()
	opts.Limit = r.o.pageSize
	session := r.store.BeginReplace()
	restarted := false
	for {
		obj, err := r.lw.List(ctx, opts)
		if err != nil {
			if isStale(err) && opts.Continue != "" && !restarted {
				// The continue token expired mid-list: start over once.
				restarted, opts.Continue = true, ""
				session = r.store.BeginReplace()
				continue
			}
			return fmt.Errorf("list %s: %w", r.resource, err)
		}
		lm, err := meta.ListAccessor(obj)
		if err != nil {
			return fmt.Errorf("list %s: unexpected list type %T: %w", r.resource, obj, err)
		}
		err = meta.EachListItemWithAlloc(obj, func(o runtime.Object) error {
			if t, ok := r.decodeOrSkip(o); ok {
				session.Put(t)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", r.resource, err)
		}
		if lm.GetContinue() == "" {
			r.finish(session, lm.GetResourceVersion())
			return nil
		}
		opts.Continue = lm.GetContinue()
	}
}

func (r *reflector[T]) finish(session *ReplaceSession[T], rv string) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	changes := session.Finish(rv)
	r.stats.relists.Add(1)
	r.lastRV = rv
	r.stats.lastRV.Store(rv)
	r.synced(changes, rv)
	r.healthy()
}

// useWatchList reports whether the next (re)list streams: the mode says
// so, and the server did not reject streaming (WatchListOn), or the source
// does not prefer pages right now (WatchListAuto).
func (r *reflector[T]) useWatchList() bool {
	switch {
	case r.watchListOff || r.o.watchList == WatchListOff:
		return false
	case r.o.watchList == WatchListOn:
		return true
	}
	return !prefersPages(r.lw)
}

// watchList streams the initial list (sendInitialEvents) into a replace
// session, finishes it at the initial-events-end bookmark, then keeps
// consuming the same stream as a normal watch.
func (r *reflector[T]) watchList(ctx context.Context) error {
	opts := r.baseOptions()
	send := true
	opts.SendInitialEvents = &send
	opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
	opts.AllowWatchBookmarks = true
	opts.TimeoutSeconds = r.watchTimeout()
	session := r.store.BeginReplace()
	wctx, revoke := ctx, func() {}
	if relaysEvents(r.lw) {
		wctx, revoke = withRelistFilter(ctx, session)
	}
	w, err := r.lw.Watch(wctx, opts)
	revoke() // the stream took the filter; the request's context must not keep the store
	if err != nil {
		return fmt.Errorf("watch-list %s: %w", r.resource, err)
	}
	return r.consume(ctx, w, session)
}

// watch resumes from r.lastRV.
func (r *reflector[T]) watch(ctx context.Context) error {
	opts := r.baseOptions()
	opts.ResourceVersion = r.lastRV
	opts.AllowWatchBookmarks = true
	opts.TimeoutSeconds = r.watchTimeout()
	w, err := r.lw.Watch(ctx, opts)
	if err != nil {
		return fmt.Errorf("watch %s from resourceVersion %q: %w", r.resource, r.lastRV, err)
	}
	return r.consume(ctx, w, nil)
}

// maxBatch bounds the events the reflector applies under one lock.
const maxBatch = 256

// consume applies a watch stream until it ends. With an open session the
// stream is a watch-list: objects go into the session until the end bookmark.
//
// Events are read in batches: the first blocks, the rest are those already
// received (buffered in a protobuf stream read on this goroutine, or
// waiting on a channel). A batch is applied to the store under one lock
// and handed to the handlers at once, so handlers wake once per batch.
func (r *reflector[T]) consume(ctx context.Context, w watch.Interface, session *ReplaceSession[T]) error {
	defer w.Stop()
	if session == nil {
		r.healthy()
	}
	var batch []watch.Event
	for {
		var err error
		batch, err = r.readBatch(ctx, w, batch[:0])
		if aerr := r.applyBatch(batch, &session); aerr != nil {
			return aerr
		}
		clear(batch)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case endsNormally(err):
			if session != nil {
				return errWatchEndedEarly
			}
			return nil
		default:
			return fmt.Errorf("watch %s: %w", r.resource, err)
		}
	}
}

// readBatch appends to dst the next event (waiting for it) and then up to
// maxBatch−1 more that are already there. A stream that ended returns the
// events before the end and io.EOF (a channel closed) or the read error.
func (r *reflector[T]) readBatch(ctx context.Context, w watch.Interface, dst []watch.Event) ([]watch.Event, error) {
	if s, ok := w.(eventSource); ok {
		for len(dst) == 0 || (len(dst) < maxBatch && s.bufferedEvent()) {
			ev, err := s.nextEvent()
			if err != nil {
				return dst, err
			}
			dst = append(dst, ev)
		}
		return dst, nil
	}
	ch := w.ResultChan()
	select {
	case <-ctx.Done():
		return dst, ctx.Err()
	case ev, ok := <-ch:
		if !ok {
			return dst, io.EOF
		}
		dst = append(dst, ev)
	}
	for len(dst) < maxBatch {
		select {
		case ev, ok := <-ch:
			if !ok {
				return dst, io.EOF
			}
			dst = append(dst, ev)
		default:
			return dst, nil
		}
	}
	return dst, nil
}

// watchOp is one decoded change of a batch, waiting for the store.
type watchOp[T Object] struct {
	obj T
	key ObjectKey // for deletes
	del bool
}

// applyBatch applies events in order: into *session while a watch-list
// streams its initial objects (finishing it at the end bookmark), else to
// the store. Decoding happens before the store's lock is taken; the
// resourceVersion of the last event becomes the resume point once the
// store holds everything before it. An ERROR event ends the batch with its
// error, after what came before it is applied.
func (r *reflector[T]) applyBatch(events []watch.Event, session **ReplaceSession[T]) error {
	ops := r.ops[:0]
	defer func() {
		clear(ops)
		r.ops = ops[:0]
		if r.reuse != nil {
			r.reuse.batchDone()
		}
	}()
	rv := ""
	flush := func() {
		r.flush(ops, rv)
		clear(ops)
		ops, rv = ops[:0], ""
	}
	for _, ev := range events {
		switch ev.Type {
		case watch.Added, watch.Modified:
			if u, ok := ev.Object.(*unchangedObject); ok {
				if err := r.keep(u, *session); err != nil {
					flush()
					return err
				}
				continue
			}
			t, ok := r.decodeOrSkip(ev.Object)
			if *session != nil {
				if ok && (*session).put(t) && r.reuse != nil {
					r.reuse.stored(KeyOf(t), t)
				}
				continue
			}
			if ok {
				ops = append(ops, watchOp[T]{obj: t})
			}
			rv = resourceVersionOf(ev.Object, rv)
		case watch.Deleted:
			acc, err := meta.Accessor(ev.Object)
			if err != nil {
				r.skip(ev.Object, err)
				continue
			}
			if *session != nil {
				continue // not sent during initial events; nothing to remove from a listing
			}
			ops = append(ops, watchOp[T]{key: ObjectKey{Namespace: acc.GetNamespace(), Name: acc.GetName()}, del: true})
			rv = resourceVersionOf(ev.Object, rv)
		case watch.Bookmark:
			acc, err := meta.Accessor(ev.Object)
			if err != nil {
				r.skip(ev.Object, err)
				continue
			}
			if *session != nil && acc.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
				r.finish(*session, acc.GetResourceVersion())
				*session = nil
				continue
			}
			if *session == nil {
				rv = resourceVersionOf(ev.Object, rv)
			}
		case watch.Error:
			flush()
			return fmt.Errorf("watch %s: %w", r.resource, apierrors.FromObject(ev.Object))
		default:
			r.skip(ev.Object, fmt.Errorf("unknown watch event type %q", ev.Type))
		}
	}
	flush()
	return nil
}

// keep records in session an object the watch reader (or the page
// decoder) found unchanged and did not decode (see relistskip.go). The
// reader only does that for the session that is open while it streams the
// initial events (or lists the pages), and the store
// is not written until the session finishes, so the store still holds the
// object; an error reports that this did not hold (the object is then
// missing from the listing, so the listing must not be finished).
func (r *reflector[T]) keep(u *unchangedObject, session *ReplaceSession[T]) error {
	if session == nil || u.from != relistFilter(session) || !session.Keep(ObjectKey{Namespace: u.Namespace, Name: u.Name}, u.ResourceVersion) {
		return fmt.Errorf("relist %s: %s/%s at resourceVersion %s was skipped as unchanged, but the store no longer holds it at that resourceVersion or the event came from another listing", r.resource, u.Namespace, u.Name, u.ResourceVersion)
	}
	r.stats.kept.Add(1)
	return nil
}

// flush writes ops to the store under one lock, hands the changes to the
// handlers at once, and then makes rv (if not "") the resume point.
func (r *reflector[T]) flush(ops []watchOp[T], rv string) {
	if len(ops) > 0 {
		r.stats.events.Add(int64(len(ops)))
		changes := r.changes[:0]
		r.dmu.Lock()
		for _, op := range ops {
			if op.del {
				if old, ok := r.store.Delete(op.key); ok {
					changes = append(changes, Change[T]{Type: Deleted, Key: op.key, Old: old})
				}
				if r.reuse != nil {
					r.reuse.deleted(op.key)
				}
				continue
			}
			old, existed, changed := r.store.Upsert(op.obj)
			if changed && r.reuse != nil {
				r.reuse.stored(KeyOf(op.obj), op.obj)
			}
			switch {
			case !existed:
				changes = append(changes, Change[T]{Type: Added, Key: KeyOf(op.obj), New: op.obj})
			case changed:
				changes = append(changes, Change[T]{Type: Updated, Key: KeyOf(op.obj), Old: old, New: op.obj})
			}
		}
		if len(changes) > 0 {
			r.emit(changes)
		}
		r.dmu.Unlock()
		clear(changes)
		r.changes = changes[:0]
	}
	if rv != "" {
		r.lastRV = rv
		r.store.SetResourceVersion(rv)
		r.stats.lastRV.Store(rv)
	}
}

// resourceVersionOf returns o's resourceVersion, or def if it has none.
func resourceVersionOf(o runtime.Object, def string) string {
	if acc, err := meta.Accessor(o); err == nil && acc.GetResourceVersion() != "" {
		return acc.GetResourceVersion()
	}
	return def
}

func (r *reflector[T]) decodeOrSkip(o runtime.Object) (T, bool) {
	t, err := r.decode(o)
	if err == nil && t.GetName() == "" {
		err = errors.New("object has no name")
	}
	if err != nil {
		r.skip(o, err)
		var zero T
		return zero, false
	}
	return t, true
}

// skip logs and counts an object the informer cannot store; the informer
// keeps going without it.
func (r *reflector[T]) skip(o runtime.Object, err error) {
	r.stats.skipped.Add(1)
	ns, name := "", ""
	if acc, aerr := meta.Accessor(o); aerr == nil {
		ns, name = acc.GetNamespace(), acc.GetName()
	}
	r.log.Warn("skipping object the informer cannot store", "resource", r.resource, "namespace", ns, "name", name, "type", fmt.Sprintf("%T", o), "err", err)
}
