// Package builder wires informers to a controller: which changes enqueue
// which keys. Users name Go types; group, version, kind and resource come
// from the manager's scheme and the server's discovery.
//
//	c, err := builder.Build(mgr, reconciler,
//		builder.For[*appsv1.Deployment](),
//		builder.Owns[*appsv1.ReplicaSet](),
//	)
//
// The reconciler receives a controller.Request (namespace and name). The
// informers come from the manager's client (one per Go type, shared by every
// controller and by client.Get/List, which read from them). Options:
// Named (default: the For type's kind, lower-cased), WithOptions (workers,
// timeouts, retry budget, ...), Scope (namespace and selectors of a type's
// informer).
//
// For without predicates pushes keys straight into the queue (no
// buffering: the queue deduplicates bursts); For with predicates, Owns and
// Watches look at the objects and so go through the informer's bounded
// event buffer. ForInformer and WatchesInformer take an informer built by
// hand (unstructured objects, projections, a second scope of one type).
package builder

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/shard"
)

// Option is a trigger (For, Owns, Watches, ...) or a setting (Named,
// WithOptions, Scope) of Build.
type Option interface{ isOption() }

// trigger connects one informer to the controller's queue. Build checks
// every trigger (check: no side effects beyond discovery) before it creates
// anything, so a failed Build leaves no informer or controller behind.
type trigger interface {
	Option
	check(b *build) error
	attach(b *build, q *queue.Queue[controller.Request]) error
}

type forTrigger interface{ isFor() }

type setting interface {
	Option
	apply(b *build) error
}

type build struct {
	mgr    *manager.Manager
	opts   controller.Options[controller.Request]
	scopes map[reflect.Type]cache.Scope
	// informerOpts are the client.InformerOptions of each type (Compact).
	informerOpts map[reflect.Type][]client.InformerOption
	// forGVK is the For type's group/version/kind (empty for ForInformer);
	// forNamespaced says whether it is a namespaced resource.
	forGVK        schema.GroupVersionKind
	forNamespaced bool
	// deadLetters, if set, asks for a deadletter.Store (PersistDeadLetters).
	deadLetters *deadletter.StoreOptions
	// shardField and gate: sharding (nil gate when the manager does not shard).
	shardField shard.Field
	gate       *shardGate
}

// Build creates a controller for r from opts — exactly one For or
// ForInformer, any number of Owns and Watches, and settings — registers it
// with mgr and returns it. mgr runs it after its caches sync. Everything is
// checked before anything is created: on error, mgr is unchanged.
func Build(mgr *manager.Manager, r controller.Reconciler[controller.Request], opts ...Option) (*controller.Controller[controller.Request], error) {
	if mgr == nil {
		return nil, errors.New("builder: nil manager")
	}
	b := &build{mgr: mgr, scopes: map[reflect.Type]cache.Scope{}, informerOpts: map[reflect.Type][]client.InformerOption{}}
	var fors, others []trigger
	for _, o := range opts {
		switch o := o.(type) {
		case setting:
			if err := o.apply(b); err != nil {
				return nil, err
			}
		case trigger:
			if _, ok := o.(forTrigger); ok {
				fors = append(fors, o)
			} else {
				others = append(others, o)
			}
		}
	}
	if len(fors) != 1 {
		return nil, fmt.Errorf("builder: controller %q needs exactly one For trigger, got %d %v", b.opts.Name, len(fors), fors)
	}
	triggers := append(fors, others...) // For first: Owns needs its kind
	for _, t := range triggers {
		if err := t.check(b); err != nil {
			return nil, err
		}
	}
	if err := setupShard(b, fors); err != nil {
		return nil, err
	}
	m := mgr.Metrics()
	if b.opts.Metrics == nil {
		b.opts.Metrics = m.Controllers
	}
	if b.opts.QueueMetrics == nil && b.opts.Queue == nil {
		b.opts.QueueMetrics = m.Queues
	}
	if b.opts.Logger == nil {
		b.opts.Logger = mgr.Logger()
	}
	if b.opts.TracerProvider == nil {
		b.opts.TracerProvider = mgr.TracerProvider()
	}
	if b.deadLetters != nil && b.opts.DeadLetterStore == nil {
		o := *b.deadLetters
		if o.Config == nil {
			if mgr.Client() == nil {
				return nil, fmt.Errorf("builder: controller %s: PersistDeadLetters needs a Config: %v", b.opts.Name, mgr.ConfigError())
			}
			o.Config = mgr.Client().Config()
		}
		o.Controller = b.opts.Name
		if o.Metrics == nil {
			o.Metrics = m.DeadLetters
		}
		if o.Logger == nil {
			o.Logger = mgr.Logger()
		}
		store, err := deadletter.NewStore(o)
		if err != nil {
			return nil, fmt.Errorf("builder: controller %s: %w", b.opts.Name, err)
		}
		b.opts.DeadLetterStore = store
	}
	c, err := controller.New(r, b.opts)
	if err != nil {
		return nil, err
	}
	if err := mgr.AddController(c); err != nil {
		return nil, err
	}
	if b.gate != nil {
		b.gate.q = c.Queue()
	}
	for _, t := range triggers {
		if err := t.attach(b, c.Queue()); err != nil {
			return nil, fmt.Errorf("builder: controller %s registered, but a trigger failed after its checks passed: %w", c.Name(), err)
		}
	}
	return c, nil
}

type settingFunc func(b *build) error

func (f settingFunc) apply(b *build) error { return f(b) }
func (settingFunc) isOption()              {}

// Named names the controller (metrics label "controller", logs, queue
// name). Default: the For type's kind in lower case.
func Named(name string) Option {
	return settingFunc(func(b *build) error {
		if name == "" {
			return errors.New("builder: Named(\"\")")
		}
		b.opts.Name = name
		return nil
	})
}

// WithOptions sets the controller's options (workers, timeouts, retry
// budget, ...). Its Name, if set, names the controller; Metrics,
// QueueMetrics, Logger and TracerProvider default to the manager's.
func WithOptions(o controller.Options[controller.Request]) Option {
	return settingFunc(func(b *build) error {
		name := b.opts.Name
		b.opts = o
		if o.Name == "" {
			b.opts.Name = name
		}
		return nil
	})
}

// PersistDeadLetters keeps the controller's dead letters (keys that used up
// the retry budget, WithOptions' MaxFailures) in a ConfigMap, so they
// survive restarts and fail-over and can be replayed from any replica's
// /debug/skiff (see package deadletter). o.Controller is the controller's
// name; o.Config defaults to the manager's, o.Metrics to the manager's
// registry, o.Logger to the manager's logger; the other fields keep their
// deadletter defaults (namespace "default", replica = host name).
//
// Off by default: it needs RBAC to get, list, watch, create and update
// ConfigMaps in o.Namespace, which a controller may not otherwise have,
// and it writes to the cluster.
func PersistDeadLetters(o deadletter.StoreOptions) Option {
	return settingFunc(func(b *build) error {
		b.deadLetters = &o
		return nil
	})
}

// Scope limits the informer of T (namespace, label and field selectors).
// It applies to the manager's one informer of T, which client.Get and
// client.List of T read too: objects outside it read as not found.
func Scope[T client.Object](s cache.Scope) Option {
	return settingFunc(func(b *build) error {
		b.scopes[reflect.TypeFor[T]()] = s
		return nil
	})
}

// Compact makes the manager's informer of T compact (see
// client.CompactCache and cache.Options.Compact): objects are cached as
// their stripped protobuf (JSON for custom resources) and decoded on every
// read. Every controller that watches T, and every InformerFor of T, must
// agree. Default: not compact.
func Compact[T client.Object]() Option {
	return settingFunc(func(b *build) error {
		b.informerOpts[reflect.TypeFor[T]()] = []client.InformerOption{client.CompactCache}
		return nil
	})
}

// checkInformer checks that the manager can have an informer of T with
// the build's scope.
func checkInformer[T client.Object](b *build) error {
	c := b.mgr.Client()
	if c == nil {
		return fmt.Errorf("builder: informer of %v: the manager has no API server config: %w", reflect.TypeFor[T](), b.mgr.ConfigError())
	}
	return client.CheckInformer[T](c, b.scopes[reflect.TypeFor[T]()], b.informerOpts[reflect.TypeFor[T]()]...)
}

// informer returns the manager's informer of T with the build's scope.
func informer[T client.Object](b *build) (*cache.Informer[T], error) {
	return client.InformerFor[T](b.mgr.Client(), b.scopes[reflect.TypeFor[T]()], b.informerOpts[reflect.TypeFor[T]()]...)
}

type forT[T client.Object] struct{ preds []Predicate[T] }

func (forT[T]) isOption()      {}
func (forT[T]) isFor()         {}
func (forT[T]) String() string { return fmt.Sprintf("For[%v]", reflect.TypeFor[T]()) }

func (f forT[T]) check(b *build) error {
	if err := checkInformer[T](b); err != nil {
		return err
	}
	c := b.mgr.Client()
	var err error
	if b.forGVK, err = c.GVKFor(newObject[T]()); err != nil {
		return err
	}
	if b.forNamespaced, err = c.IsNamespaced(newObject[T]()); err != nil {
		return err
	}
	if b.opts.Name == "" {
		b.opts.Name = strings.ToLower(b.forGVK.Kind)
	}
	return nil
}

func (f forT[T]) attach(b *build, q *queue.Queue[controller.Request]) error {
	if b.gate != nil {
		return attachShardedFor(b, f.preds, q)
	}
	inf, err := informer[T](b)
	if err != nil {
		return err
	}
	attachFor(inf, f.preds, q)
	return nil
}

func attachFor[T cache.Object](inf *cache.Informer[T], preds []Predicate[T], q *queue.Queue[controller.Request]) {
	if len(preds) == 0 {
		inf.AddKeyHandler(q, cache.KeyHandlerOptions{})
		return
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
			if allow(preds, func(p Predicate[T]) bool { return p.Delete == nil || p.Delete(old) }) {
				q.Add(cache.KeyOf(old))
			}
		},
	}, cache.EventHandlerOptions{})
}

func allow[T any](preds []Predicate[T], ok func(Predicate[T]) bool) bool {
	for _, p := range preds {
		if !ok(p) {
			return false
		}
	}
	return true
}

// For makes changes of the primary type T enqueue their own key.
// Predicates, if any, must all pass for a change to enqueue.
func For[T client.Object](preds ...Predicate[T]) Option { return forT[T]{preds: preds} }

type forInformer[T cache.Object] struct {
	inf   *cache.Informer[T]
	preds []Predicate[T]
}

func (forInformer[T]) isOption()      {}
func (forInformer[T]) isFor()         {}
func (forInformer[T]) String() string { return fmt.Sprintf("ForInformer[%v]", reflect.TypeFor[T]()) }

func (f forInformer[T]) check(b *build) error {
	if f.inf == nil {
		return errors.New("builder: ForInformer(nil)")
	}
	if b.opts.Name == "" {
		return errors.New("builder: ForInformer needs Named or WithOptions with a Name")
	}
	return nil
}

func (f forInformer[T]) attach(b *build, q *queue.Queue[controller.Request]) error {
	if err := b.mgr.AddCache(f.inf.Name(), f.inf); err != nil {
		return err
	}
	attachFor(f.inf, f.preds, q)
	return nil
}

// ForInformer is For with an informer built by hand (for example over
// unstructured objects or a projection). The manager runs it. Owns needs a
// typed For; use WatchesInformer with OwnerKeys instead.
func ForInformer[T cache.Object](inf *cache.Informer[T], preds ...Predicate[T]) Option {
	return forInformer[T]{inf: inf, preds: preds}
}

type ownsT[T client.Object] struct{}

func (ownsT[T]) isOption() {}

func (ownsT[T]) check(b *build) error {
	if b.forGVK.Empty() {
		return fmt.Errorf("builder: Owns[%v] needs a typed For (the owner's kind comes from it)", reflect.TypeFor[T]())
	}
	return checkInformer[T](b)
}

func (ownsT[T]) attach(b *build, q *queue.Queue[controller.Request]) error {
	inf, err := informer[T](b)
	if err != nil {
		return err
	}
	if b.gate != nil {
		attachShardedOwns(b, inf, q)
		return nil
	}
	keys := OwnerKeys[T](b.forGVK)
	if !b.forNamespaced {
		keys = ClusterOwnerKeys[T](b.forGVK)
	}
	attachMap(inf, keys, q)
	return nil
}

// Owns makes changes of objects of type T whose controller owner reference
// points at an object of the For type enqueue that owner's key.
func Owns[T client.Object]() Option { return ownsT[T]{} }

// OwnerKeys returns a mapping from an object to the key of its controller
// owner of kind gvk (group and kind must match; any version), a namespaced
// kind, for WatchesInformer over hand-built informers. Owners are in the
// object's namespace, as Kubernetes requires for namespaced owners.
func OwnerKeys[T cache.Object](gvk schema.GroupVersionKind) func(T) []controller.Request {
	return ownerKeys[T](gvk, true)
}

// ClusterOwnerKeys is OwnerKeys for a cluster-scoped owner kind: the keys
// have no namespace.
func ClusterOwnerKeys[T cache.Object](gvk schema.GroupVersionKind) func(T) []controller.Request {
	return ownerKeys[T](gvk, false)
}

func ownerKeys[T cache.Object](gvk schema.GroupVersionKind, namespaced bool) func(T) []controller.Request {
	return func(obj T) []controller.Request {
		o, ok := any(obj).(interface {
			GetOwnerReferences() []metav1.OwnerReference
		})
		if !ok {
			return nil
		}
		for _, ref := range o.GetOwnerReferences() {
			if ref.Controller == nil || !*ref.Controller || ref.Kind != gvk.Kind {
				continue
			}
			if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != gvk.Group {
				continue
			}
			if !namespaced {
				return []controller.Request{{Name: ref.Name}}
			}
			return []controller.Request{{Namespace: obj.GetNamespace(), Name: ref.Name}}
		}
		return nil
	}
}

func attachMap[T cache.Object](inf *cache.Informer[T], fn func(T) []controller.Request, q *queue.Queue[controller.Request]) {
	enqueue := func(obj T) {
		for _, k := range fn(obj) {
			q.Add(k)
		}
	}
	inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd:    enqueue,
		OnUpdate: func(old, new T) { enqueue(old); enqueue(new) },
		OnDelete: enqueue,
	}, cache.EventHandlerOptions{})
}

type watchesT[T client.Object] struct {
	fn func(T) []controller.Request
}

func (watchesT[T]) isOption() {}

func (w watchesT[T]) check(b *build) error {
	if w.fn == nil {
		return fmt.Errorf("builder: Watches[%v] needs a mapping func", reflect.TypeFor[T]())
	}
	return checkInformer[T](b)
}

func (w watchesT[T]) attach(b *build, q *queue.Queue[controller.Request]) error {
	inf, err := informer[T](b)
	if err != nil {
		return err
	}
	fn := w.fn
	if b.gate != nil {
		fn = shardedKeys(b.gate, fn)
	}
	attachMap(inf, fn, q)
	return nil
}

// Watches makes changes of objects of type T enqueue the keys fn returns
// (for the old and the new object of an update). fn must not modify its
// argument.
func Watches[T client.Object](fn func(T) []controller.Request) Option { return watchesT[T]{fn: fn} }

type watchesInformer[T cache.Object] struct {
	inf *cache.Informer[T]
	fn  func(T) []controller.Request
}

func (watchesInformer[T]) isOption() {}

func (w watchesInformer[T]) check(*build) error {
	if w.fn == nil || w.inf == nil {
		return errors.New("builder: WatchesInformer needs an informer and a mapping func")
	}
	return nil
}

func (w watchesInformer[T]) attach(b *build, q *queue.Queue[controller.Request]) error {
	if err := b.mgr.AddCache(w.inf.Name(), w.inf); err != nil {
		return err
	}
	fn := w.fn
	if b.gate != nil {
		fn = shardedKeys(b.gate, fn)
	}
	attachMap(w.inf, fn, q)
	return nil
}

// WatchesInformer is Watches with an informer built by hand. The manager
// runs it.
func WatchesInformer[T cache.Object](inf *cache.Informer[T], fn func(T) []controller.Request) Option {
	return watchesInformer[T]{inf: inf, fn: fn}
}

func newObject[T client.Object]() T {
	return reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T)
}
