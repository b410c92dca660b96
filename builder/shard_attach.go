package builder

import (
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/shard"
)

// attachShardedFor makes the For informer of T partitioned (this replica's
// ranges only), lets the gate look keys up in it, and registers the driver
// that keeps the partition on the member's assignment.
func attachShardedFor[T client.Object](b *build, preds []Predicate[T], q *queue.Queue[controller.Request]) error {
	g := b.gate
	g.part = cache.NewPartition()
	inf, err := client.PartitionedInformerFor[T](b.mgr.Client(), b.scopes[reflect.TypeFor[T]()], g.part)
	if err != nil {
		return err
	}
	lister := inf.Lister()
	g.inf = lookupFunc(func(k types.NamespacedName) (metav1.Object, bool) {
		obj, ok := lister.Get(k.Namespace, k.Name)
		return obj, ok
	})
	d := &shardDriver[T]{name: "shard assignment of " + b.opts.Name, g: g, inf: inf, sharding: b.mgr.Shard(), firstSet: make(chan struct{})}
	if err := b.mgr.AddCache(d.name, d); err != nil {
		return err
	}
	inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd: func(obj T) {
			if allow(preds, func(p Predicate[T]) bool { return p.Create == nil || p.Create(obj) }) {
				q.Add(cache.KeyOf(obj))
			}
		},
		OnUpdate: func(old, new T) {
			if allow(preds, func(p Predicate[T]) bool { return p.Update == nil || p.Update(old, new) }) {
				q.Add(cache.KeyOf(new))
			}
		},
		OnDelete: func(old T) {
			// Gone from the cache: the gate needs the deleted object's Item.
			// A delete that only means "left this replica's part" is
			// dropped by the gate (the target gives it to another replica).
			g.record(cache.KeyOf(old), shard.ItemOf(old, g.field), true)
			if allow(preds, func(p Predicate[T]) bool { return p.Delete == nil || p.Delete(old) }) {
				q.Add(cache.KeyOf(old))
			}
		},
	}, cache.EventHandlerOptions{})
	return nil
}

// attachShardedOwns enqueues the controller owner's key of each T whose
// owner (by the reference's UID) this replica owns under the target ring,
// recording that Item for the gate. Every replica watches T in full and
// sees the event, so the owner's replica gets it.
func attachShardedOwns[T client.Object](b *build, inf *cache.Informer[T], q *queue.Queue[controller.Request]) {
	g, gvk, namespaced := b.gate, b.forGVK, b.forNamespaced
	enqueue := func(obj T) {
		ref := controllerRef(obj, gvk)
		if ref == nil {
			return
		}
		key := controller.Request{Name: ref.Name}
		if namespaced {
			key.Namespace = obj.GetNamespace()
		}
		it := shard.Item{Hash: shard.Hash(string(ref.UID))}
		if g.field == shard.Namespace {
			it = shard.Item{Hash: shard.Hash(key.Namespace)}
		}
		labeled := false
		if cached, ok := g.inf.lookup(key); ok {
			it, labeled = shard.ItemOf(cached, g.field), true // with its labels
		} else if g.selectorsInPlay() || !g.ownsTarget(it) {
			// Another replica's — or, while some member claims objects by
			// label, possibly that member's: the owner's labels are not
			// known here, and the replica that caches the owner enqueues it.
			return
		}
		g.record(key, it, labeled)
		q.Add(key)
	}
	inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd:    enqueue,
		OnUpdate: func(old, new T) { enqueue(old); enqueue(new) },
		OnDelete: enqueue,
	}, cache.EventHandlerOptions{})
}

// controllerRef is obj's controller owner reference to kind gvk (group and
// kind match; any version), or nil.
func controllerRef(obj metav1.Object, gvk schema.GroupVersionKind) *metav1.OwnerReference {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Controller == nil || !*ref.Controller || ref.Kind != gvk.Kind {
			continue
		}
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != gvk.Group {
			continue
		}
		return &ref
	}
	return nil
}

// shardedKeys keeps the keys fn maps to whose primary object is in this
// replica's For cache: a Watches mapping does not say where a key hashes,
// and the replica that caches the object is its owner.
func shardedKeys[T cache.Object](g *shardGate, fn func(T) []controller.Request) func(T) []controller.Request {
	return func(obj T) []controller.Request {
		keys := fn(obj)
		kept := keys[:0:0]
		for _, k := range keys {
			if _, ok := g.inf.lookup(k); ok {
				kept = append(kept, k)
			}
		}
		return kept
	}
}

// setupShard readies the build for sharding when the manager shards.
func setupShard(b *build, fors []trigger) error {
	sh := b.mgr.Shard()
	if sh == nil {
		return nil
	}
	if b.forGVK.Empty() {
		return fmt.Errorf("builder: controller %q: the manager shards, and sharding needs a typed For (ForInformer's informer cannot be partitioned); got %v", b.opts.Name, fors[0])
	}
	if b.opts.Gate != nil {
		return fmt.Errorf("builder: controller %q: the manager shards, so the controller's Gate is the shard member's; WithOptions set another", b.opts.Name)
	}
	b.gate = newShardGate(sh.Replica(), b.shardField, sh.Dropped(b.opts.Name))
	b.opts.Gate = b.gate
	// Persisted dead letters (PersistDeadLetters) follow their keys: only
	// the owner loads, writes and replays a key's entry, and a hand-off
	// moves it at once.
	if b.opts.OwnsKey == nil {
		g := b.gate
		b.opts.OwnsKey = func(k controller.Request) bool {
			it, ok := g.itemOf(k)
			return ok && g.rep.Owns(it)
		}
		b.opts.OwnershipChanges = g.rep.Changed
	}
	return nil
}

var _ controller.Gate[controller.Request] = (*shardGate)(nil)
