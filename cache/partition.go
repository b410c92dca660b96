package cache

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Partition restricts an informer to a part of its source's objects that
// can change at run time, for replicas that share a resource (package
// shard): Tweak edits every list and watch request (a server-side shard
// selector, say) and Keep drops objects on the client. Set changes both and
// makes the informer list again with them, so its store holds exactly the
// new part: the relist replaces the store in one step and emits only real
// changes (objects that left as deletes, objects that came as adds).
//
// Wire it with PartitionSource. A Partition serves one informer; its
// methods are safe for concurrent use. The informer must use paginated
// lists (Options.WatchList = WatchListOff): a partition refuses streaming
// watch-lists, and an informer that tries one falls back to pages.
//
// Until the first Set the informer's list waits (and so does its sync).
type Partition struct {
	mu    sync.Mutex
	gen   uint64 // number of Set calls
	tweak func(*metav1.ListOptions)
	keep  func(metav1.Object) bool
	set   chan struct{} // closed by the first Set

	// listGen is the generation the current (or last) list started with;
	// doneGen the generation of the last list whose last page was
	// returned; listedGen the last generation known to be in the store
	// (confirmed by the watch request that follows the list, which the
	// reflector makes only after storing it).
	listGen, doneGen, listedGen uint64
	listed                      chan struct{} // closed when listedGen == gen
	watches                     map[*partitionWatch]struct{}
}

// NewPartition returns a partition with no part set yet.
func NewPartition() *Partition {
	return &Partition{set: make(chan struct{}), listed: make(chan struct{}), watches: map[*partitionWatch]struct{}{}}
}

// Set makes tweak (nil: none) apply to every later list and watch request
// and keep (nil: keep all) filter every object listed or watched, and
// makes the informer relist: its open watch ends with a 410 Expired
// error, as does a watch that would resume from a list started before Set.
// keep must not modify the object; it sees each object before decoding
// into the informer's type and transformation. A watch MODIFIED event of
// an object keep refuses reaches the informer as a DELETED event.
func (p *Partition) Set(tweak func(*metav1.ListOptions), keep func(metav1.Object) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == 0 {
		close(p.set)
	} else if p.listedGen == p.gen {
		p.listed = make(chan struct{}) // else still open: it stands for the new generation too
	}
	p.gen++
	p.tweak, p.keep = tweak, keep
	for w := range p.watches {
		w.restart()
	}
}

// Listed returns a channel closed once the informer's store holds a list
// made with the latest Set (a later Set replaces the channel: call again).
func (p *Partition) Listed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listed
}

// Synced reports whether the informer's store holds a list made with the
// latest Set.
func (p *Partition) Synced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen > 0 && p.listedGen == p.gen
}

// PartitionSource returns src restricted to p. Its ID differs from src's,
// so a Factory keeps its informer apart from an unrestricted one.
func PartitionSource[T Object](src Source[T], p *Partition) Source[T] {
	out := src
	out.LW = &partitionLW{lw: src.LW, p: p, resource: src.Resource}
	out.id = src.ID() + " (partition)"
	return out
}

type partitionLW struct {
	lw       ListerWatcher
	p        *Partition
	resource string
	// listTweak is the tweak the list in progress started with: every page
	// of one list is asked for with the same parameters.
	listTweak func(*metav1.ListOptions)
	listKeep  func(metav1.Object) bool
}

func (l *partitionLW) waitSet(ctx context.Context) error {
	select {
	case <-l.p.set:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("list %s: waiting for the partition's first Set: %w", l.resource, ctx.Err())
	}
}

func (l *partitionLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	if err := l.waitSet(ctx); err != nil {
		return nil, err
	}
	p := l.p
	p.mu.Lock()
	if opts.Continue == "" {
		p.listGen = p.gen
		l.listTweak, l.listKeep = p.tweak, p.keep
	}
	gen, tweak, keep := p.listGen, l.listTweak, l.listKeep
	p.mu.Unlock()
	if tweak != nil {
		tweak(&opts)
	}
	obj, err := l.lw.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	if keep != nil {
		if err := filterList(obj, keep); err != nil {
			return nil, fmt.Errorf("list %s: filter the partition: %w", l.resource, err)
		}
	}
	if lm, err := meta.ListAccessor(obj); err == nil && lm.GetContinue() == "" {
		p.mu.Lock()
		p.doneGen = gen
		p.mu.Unlock()
	}
	return obj, nil
}

// canListPages and listPages run the wrapped source's prefetching
// paginated list (listprefetch.go) with the partition's tweak and keep,
// as List does page by page. The items reach keep decoded in full: the
// relist skip is off, its stand-ins carry no labels to judge by.
func (l *partitionLW) canListPages() bool {
	ps, ok := l.lw.(pageSource)
	return ok && ps.canListPages()
}

func (l *partitionLW) listPages(ctx context.Context, opts metav1.ListOptions, each func(runtime.Object) error) error {
	if err := l.waitSet(ctx); err != nil {
		return err
	}
	p := l.p
	p.mu.Lock()
	p.listGen = p.gen
	gen, tweak, keep := p.gen, p.tweak, p.keep
	p.mu.Unlock()
	if tweak != nil {
		tweak(&opts)
	}
	ctx, revoke := withRelistFilter(ctx, nil) // none: keep must see whole objects
	defer revoke()
	return l.lw.(pageSource).listPages(ctx, opts, func(obj runtime.Object) error {
		if keep != nil {
			if err := filterList(obj, keep); err != nil {
				return fmt.Errorf("list %s: filter the partition: %w", l.resource, err)
			}
		}
		if err := each(obj); err != nil {
			return err
		}
		if lm, err := meta.ListAccessor(obj); err == nil && lm.GetContinue() == "" {
			p.mu.Lock()
			p.doneGen = gen
			p.mu.Unlock()
		}
		return nil
	})
}

func filterList(list runtime.Object, keep func(metav1.Object) bool) error {
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	kept := items[:0]
	for _, it := range items {
		acc, err := meta.Accessor(it)
		if err != nil || keep(acc) {
			kept = append(kept, it)
		}
	}
	return meta.SetList(list, kept)
}

func (l *partitionLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if opts.SendInitialEvents != nil {
		return nil, apierrors.NewBadRequest("a partitioned informer lists in pages; it does not stream initial events")
	}
	if err := l.waitSet(ctx); err != nil {
		return nil, err
	}
	p := l.p
	p.mu.Lock()
	if p.listGen != p.gen {
		p.mu.Unlock()
		return nil, partitionChanged(l.resource)
	}
	if p.doneGen == p.gen && p.listedGen != p.gen {
		// The reflector watches only after it stored its list.
		p.listedGen = p.gen
		close(p.listed)
	}
	tweak, keep := p.tweak, p.keep
	p.mu.Unlock()
	if tweak != nil {
		tweak(&opts)
	}
	inner, err := l.lw.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	w := &partitionWatch{inner: inner, keep: keep, resource: l.resource, out: make(chan watch.Event),
		stop: make(chan struct{}), again: make(chan struct{}), done: make(chan struct{})}
	p.mu.Lock()
	if p.listGen != p.gen { // a Set came in between
		p.mu.Unlock()
		inner.Stop()
		return nil, partitionChanged(l.resource)
	}
	p.watches[w] = struct{}{}
	p.mu.Unlock()
	go w.run(func() {
		p.mu.Lock()
		delete(p.watches, w)
		p.mu.Unlock()
	})
	return w, nil
}

func partitionChanged(resource string) error {
	return apierrors.NewResourceExpired(fmt.Sprintf("the partition of %s changed; relist", resource))
}

// partitionWatch forwards a watch's events through keep; restart ends it
// with a 410 Expired error event.
type partitionWatch struct {
	inner    watch.Interface
	keep     func(metav1.Object) bool
	resource string
	out      chan watch.Event

	stopOnce, againOnce sync.Once
	stop                chan struct{} // closed by Stop
	again               chan struct{} // closed by restart
	done                chan struct{} // closed when run returns
}

func (w *partitionWatch) ResultChan() <-chan watch.Event { return w.out }

// Stop ends the watch and waits for its forwarding goroutine.
func (w *partitionWatch) Stop() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

func (w *partitionWatch) restart() { w.againOnce.Do(func() { close(w.again) }) }

func (w *partitionWatch) run(unregister func()) {
	defer close(w.done)
	defer close(w.out)
	defer unregister()
	defer w.inner.Stop()
	expired := watch.Event{Type: watch.Error, Object: &metav1.Status{
		Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired,
		Message: fmt.Sprintf("the partition of %s changed; relist", w.resource),
	}}
	send := func(ev watch.Event) bool {
		select {
		case w.out <- ev:
			return true
		case <-w.stop:
			return false
		case <-w.again:
			select {
			case w.out <- expired:
			case <-w.stop:
			}
			return false
		}
	}
	for {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-w.inner.ResultChan():
			if !ok {
				return
			}
		case <-w.stop:
			return
		case <-w.again:
			send(expired)
			return
		}
		if w.keep != nil && (ev.Type == watch.Added || ev.Type == watch.Modified) {
			if acc, err := meta.Accessor(ev.Object); err == nil && !w.keep(acc) {
				if ev.Type == watch.Added {
					continue
				}
				ev.Type = watch.Deleted // it may be in the store from before
			}
		}
		if !send(ev) {
			return
		}
	}
}
