package builder

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/shard"
)

// ShardBy chooses what places a key in the hash space when the manager
// shards (manager.Options.Shard): shard.UID (the default) spreads objects
// evenly; shard.Namespace gives every namespace one owner. Without
// sharding it has no effect.
func ShardBy(f shard.Field) Option {
	return settingFunc(func(b *build) error {
		b.shardField = f
		return nil
	})
}

// shardGate admits a controller's keys through the manager's shard member
// (controller.Gate), knows each key's Item, and puts back keys dropped
// during a hand-off once this replica owns them. It is the builder's side of
// the wiring the shard package describes:
//
//   - Item of a key: the For object's, from the (partitioned) For cache;
//     else the one recorded when the key was enqueued (a delete: the
//     deleted object's UID; Owns: the owner reference's UID); else, with
//     shard.Namespace, the key's namespace. A key with no known Item is
//     dropped (a Watches key whose object is not in this replica's cache).
//   - A key refused while the target ring gives it to this replica (the
//     hand-off is not complete, or the cache is still listing the new
//     ranges), or whose object is in this replica's cache, is remembered
//     and enqueued again at activation and when the cache has listed.
type shardGate struct {
	rep     *shard.Replica
	field   shard.Field
	dropped prometheus.Counter

	// Set by the For trigger's attach, before the controller runs.
	inf interface {
		lookup(types.NamespacedName) (metav1.Object, bool)
	}
	part *cache.Partition
	q    *queue.Queue[controller.Request]

	assign atomic.Pointer[shard.Assignment] // the target, as last seen

	mu    sync.Mutex
	items map[controller.Request]recorded // recorded at enqueue, for keys not in the cache
	retry map[controller.Request]struct{} // refused during a hand-off
}

// recorded is a key's Item as learnt at enqueue; labeled says whether its
// Labels are the object's (from the object itself) or unknown (from an
// owner reference's UID alone).
type recorded struct {
	it      shard.Item
	labeled bool
}

type lookupFunc func(types.NamespacedName) (metav1.Object, bool)

func (f lookupFunc) lookup(k types.NamespacedName) (metav1.Object, bool) { return f(k) }

func newShardGate(rep *shard.Replica, f shard.Field, dropped prometheus.Counter) *shardGate {
	return &shardGate{rep: rep, field: f, dropped: dropped,
		items: map[controller.Request]recorded{}, retry: map[controller.Request]struct{}{}}
}

// itemOf is key's Item: from the cache, else as recorded, else (Namespace
// field) from the key. An Item whose labels are unknown is not trusted
// while some member claims objects by label selector: the object may be
// that member's whatever its hash says, so the key is left to the replica
// that caches the object.
func (g *shardGate) itemOf(key controller.Request) (shard.Item, bool) {
	if obj, ok := g.inf.lookup(key); ok {
		return shard.ItemOf(obj, g.field), true
	}
	g.mu.Lock()
	r, ok := g.items[key]
	g.mu.Unlock()
	if !ok && g.field == shard.Namespace {
		r, ok = recorded{it: shard.Item{Hash: shard.Hash(key.Namespace)}}, true
	}
	if !ok || (!r.labeled && g.selectorsInPlay()) {
		return shard.Item{}, false
	}
	return r.it, true
}

// selectorsInPlay reports whether a member of the target ring claims
// objects by label selector; true before the first assignment is seen (an
// unknown ring may have such a member).
func (g *shardGate) selectorsInPlay() bool {
	a := g.assign.Load()
	return a == nil || a.Selector != nil || len(a.Excluded) > 0
}

// ownsTarget reports whether the target ring gives it to this replica.
func (g *shardGate) ownsTarget(it shard.Item) bool {
	a := g.assign.Load()
	return a != nil && a.Owns(it)
}

// record remembers key's Item for when the object is not in the cache;
// labeled says whether it carries the object's labels (see recorded).
func (g *shardGate) record(key controller.Request, it shard.Item, labeled bool) {
	if g.field == shard.Namespace && !labeled {
		return // the key says as much
	}
	g.mu.Lock()
	g.items[key] = recorded{it: it, labeled: labeled}
	g.mu.Unlock()
}

// Admit implements controller.Gate.
func (g *shardGate) Admit(ctx context.Context, key controller.Request) (context.Context, func(), bool) {
	it, ok := g.itemOf(key)
	if !ok {
		g.dropped.Inc()
		return ctx, func() {}, false
	}
	ctx2, release, ok := g.rep.Acquire(ctx, it)
	if ok {
		if _, cached := g.inf.lookup(key); cached || g.part.Synced() {
			return ctx2, func() { release(); g.forget(key) }, true
		}
		// Ours, but the cache is still listing our new ranges: the object
		// may exist and not be there yet. Wait for the list.
		release()
	}
	g.dropped.Inc()
	if _, cached := g.inf.lookup(key); cached || g.ownsTarget(it) {
		// Ours under the target, or in our cache (which holds our ranges
		// and, during a hand-off, the ones we are about to gain): try
		// again when the hand-off completes or the cache has listed. The
		// assignment seen here may lag the member's by a moment, and a
		// ring we never activated may have passed us by.
		g.mu.Lock()
		g.retry[key] = struct{}{}
		g.mu.Unlock()
		// The hand-off may have completed, or the list arrived, between
		// the refusal above and the insert: requeueRetries then drained
		// the set before the key was in it. Look again.
		if g.rep.Owns(it) && g.part.Synced() {
			g.mu.Lock()
			_, still := g.retry[key]
			delete(g.retry, key)
			g.mu.Unlock()
			if still {
				g.q.Add(key)
			}
		}
	} else {
		g.mu.Lock()
		delete(g.items, key)
		g.mu.Unlock()
	}
	return ctx, func() {}, false
}

// forget drops the recorded Item of a key whose object is gone once it has
// been reconciled without a pending retry.
func (g *shardGate) forget(key controller.Request) {
	if _, cached := g.inf.lookup(key); cached || g.q.Retries(key) > 0 {
		return
	}
	g.mu.Lock()
	delete(g.items, key)
	g.mu.Unlock()
}

// requeueRetries enqueues the keys refused during a hand-off.
func (g *shardGate) requeueRetries() {
	g.mu.Lock()
	keys := make([]controller.Request, 0, len(g.retry))
	for k := range g.retry {
		keys = append(keys, k)
	}
	clear(g.retry)
	g.mu.Unlock()
	for _, k := range keys {
		g.q.Add(k)
	}
}

// prune forgets recorded Items the target gives to other replicas.
func (g *shardGate) prune(a *shard.Assignment) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, r := range g.items {
		if !a.Owns(r.it) {
			delete(g.items, k)
		}
	}
}

// shardDriver follows the member's assignment: it keeps the For informer's
// partition on this replica's ranges and, at each activation, enqueues the
// cached objects that became this replica's and the keys refused meanwhile.
// The manager runs it as a cache; it is synced once the partition has its
// first part (so the For informer can list).
type shardDriver[T client.Object] struct {
	name     string
	g        *shardGate
	inf      *cache.Informer[T]
	sharding interface {
		ServerShards(context.Context) (bool, error)
	}
	firstSet   chan struct{}
	firstOnce  sync.Once
	serverSide bool
}

func (d *shardDriver[T]) Name() string { return d.name }

func (d *shardDriver[T]) WaitForSync(ctx context.Context) error {
	select {
	case <-d.firstSet:
		return nil
	case <-ctx.Done():
		return errors.New("waiting for this replica's first shard assignment: " + ctx.Err().Error())
	}
}

// Run follows the assignment until ctx ends.
func (d *shardDriver[T]) Run(ctx context.Context) error {
	ss, err := d.sharding.ServerShards(ctx)
	if err != nil {
		return nil // ctx ended
	}
	d.serverSide = ss
	g := d.g
	var applied []shard.Range // the ranges the partition holds
	var set bool
	var activeVersion string
	var activeRanges []shard.Range // at the last activation
	listed := g.part.Listed()
	for {
		changed := g.rep.Changed()
		if a := g.rep.Assignment(); a.Version != "" {
			g.assign.Store(&a)
			g.prune(&a)
			// Widen at once (the cache warms before activation); narrow
			// only once the hand-off is complete (nothing in flight then
			// lies outside the target).
			want := a.Ranges
			if !a.Active && set {
				want = union(applied, a.Ranges)
			}
			if !set || !slices.Equal(want, applied) {
				tweak, keep := d.part(want, &a)
				g.part.Set(tweak, keep)
				applied, set = want, true
				listed = g.part.Listed()
				d.firstOnce.Do(func() { close(d.firstSet) })
			}
			if a.Active && a.Version != activeVersion {
				for _, obj := range d.inf.Lister().List(nil) {
					it := shard.ItemOf(obj, g.field)
					if a.Owns(it) && !shard.InRanges(it.Hash, activeRanges) {
						g.q.Add(cache.KeyOf(obj))
					}
				}
				activeVersion, activeRanges = a.Version, a.Ranges
			}
			if a.Active {
				// Also when the version did not change: a member that was
				// fenced (no renewal within RenewDeadline) and renewed
				// again before the others expired it activates the same
				// ring, and the keys it refused meanwhile wait here.
				g.requeueRetries()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-listed:
			listed = nil // fires once per part
			g.requeueRetries()
		}
	}
}

// part returns the list tweak and client-side filter for ranges: a shard
// selector when the server applies them and this member claims no label
// selector, else a filter on the client.
func (d *shardDriver[T]) part(ranges []shard.Range, a *shard.Assignment) (func(*metav1.ListOptions), func(metav1.Object) bool) {
	field := d.g.field
	excluded := a.Excluded
	mine := a.Selector
	notExcluded := func(o metav1.Object) bool {
		for _, s := range excluded {
			if s.Matches(labels.Set(o.GetLabels())) {
				return false
			}
		}
		return true
	}
	sel, ok := shard.Selector(field, ranges)
	if d.serverSide && mine == nil && ok {
		tweak := func(o *metav1.ListOptions) { o.ShardSelector = sel }
		if len(excluded) == 0 {
			return tweak, nil
		}
		return tweak, notExcluded
	}
	return nil, func(o metav1.Object) bool {
		if mine != nil && mine.Matches(labels.Set(o.GetLabels())) {
			return true
		}
		return shard.InRanges(shard.HashOf(o, field), ranges) && notExcluded(o)
	}
}

// union merges two sorted range lists into sorted, disjoint ranges.
func union(a, b []shard.Range) []shard.Range {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y shard.Range) int {
		switch {
		case x.Start < y.Start:
			return -1
		case x.Start > y.Start:
			return 1
		}
		return 0
	})
	var out []shard.Range
	for _, r := range all {
		if n := len(out); n > 0 && (out[n-1].End == 0 || r.Start <= out[n-1].End) {
			if out[n-1].End != 0 && (r.End == 0 || r.End > out[n-1].End) {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
