// Package builder wires informers to a controller: which changes enqueue
// which keys. It is the only place where cache, controller and manager meet.
//
//	foos := cache.InformerFor(factory, fooSource, cache.Options[*unstructured.Unstructured]{})
//	cms := cache.InformerFor(factory, cmSource, cache.Options[*corev1.ConfigMap]{})
//	c, err := builder.Build(mgr, reconciler, controller.Options[string]{Name: "foo"},
//		builder.For(foos, builder.GenerationChanged[*unstructured.Unstructured]()),
//		builder.Owns(cms, "demo.skiff.dev", "Foo"),
//	)
//
// Keys are "namespace/name" (just "name" for cluster-scoped objects). For
// without predicates pushes keys straight into the queue (no buffering: the
// queue deduplicates bursts); For with predicates, Owns and Watches look at
// the objects and so go through the informer's bounded event buffer.
package builder

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/queue"
)

// Trigger connects one informer to a controller's queue. Build them with
// For, Owns and Watches.
type Trigger interface {
	// name identifies the informer in sync errors, e.g. "configmaps".
	name() string
	cache() manager.Cache
	attach(q *queue.Queue[string]) *cache.Registration
}

// Build creates a controller from r and o, attaches every trigger to its
// queue, and registers the controller and the triggers' informers with mgr
// (an informer shared by several controllers is registered once). Exactly
// one trigger must come from For.
func Build(mgr *manager.Manager, r controller.Reconciler[string], o controller.Options[string], triggers ...Trigger) (*controller.Controller[string], error) {
	fors := 0
	for _, t := range triggers {
		if _, ok := t.(forTrigger); ok {
			fors++
		}
	}
	if fors != 1 {
		return nil, fmt.Errorf("builder: controller %q needs exactly one For trigger, got %d", o.Name, fors)
	}
	if o.Metrics == nil && mgr != nil {
		m, err := controllerMetrics(mgr)
		if err != nil {
			return nil, err
		}
		o.Metrics = m
	}
	c, err := controller.New(r, o)
	if err != nil {
		return nil, err
	}
	for _, t := range triggers {
		t.attach(c.Queue())
		if mgr != nil {
			if err := mgr.AddCache(t.name(), t.cache()); err != nil {
				return nil, err
			}
		}
	}
	if mgr != nil {
		if err := mgr.AddController(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// controllerMetrics returns the manager's shared controller metrics,
// creating them on first use.
func controllerMetrics(mgr *manager.Manager) (*controller.Metrics, error) {
	v, err := mgr.Shared("controller.Metrics", func() (any, error) { return controller.NewMetrics(mgr.Registry()) })
	if err != nil {
		return nil, fmt.Errorf("builder: controller metrics: %w", err)
	}
	return v.(*controller.Metrics), nil
}

// Key returns the queue key of obj: "namespace/name", or "name" when the
// object has no namespace.
func Key(obj cache.Object) string { return cache.Key(obj.GetNamespace(), obj.GetName()) }

type forTrigger interface{ isFor() }

type forT[T cache.Object] struct {
	inf   *cache.Informer[T]
	preds []Predicate[T]
}

func (forT[T]) isFor()                 {}
func (f forT[T]) name() string         { return f.inf.Name() }
func (f forT[T]) cache() manager.Cache { return f.inf }

func (f forT[T]) attach(q *queue.Queue[string]) *cache.Registration {
	if len(f.preds) == 0 {
		return f.inf.AddKeyHandler(q, cache.KeyHandlerOptions{})
	}
	return f.inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd: func(obj T) {
			if allow(f.preds, func(p Predicate[T]) bool { return p.Create == nil || p.Create(obj) }) {
				q.Add(Key(obj))
			}
		},
		OnUpdate: func(old, new T) {
			if allow(f.preds, func(p Predicate[T]) bool { return p.Update == nil || p.Update(old, new) }) {
				q.Add(Key(new))
			}
		},
		OnDelete: func(old T) {
			if allow(f.preds, func(p Predicate[T]) bool { return p.Delete == nil || p.Delete(old) }) {
				q.Add(Key(old))
			}
		},
	}, cache.EventHandlerOptions{Name: "for"})
}

func allow[T any](preds []Predicate[T], ok func(Predicate[T]) bool) bool {
	for _, p := range preds {
		if !ok(p) {
			return false
		}
	}
	return true
}

// For makes changes of the primary type enqueue their own key. Predicates,
// if any, must all pass for a change to enqueue.
func For[T cache.Object](inf *cache.Informer[T], preds ...Predicate[T]) Trigger {
	return forT[T]{inf: inf, preds: preds}
}

// Owned is an object that carries owner references.
type Owned interface {
	cache.Object
	GetOwnerReferences() []metav1.OwnerReference
}

type ownsT[T Owned] struct {
	inf         *cache.Informer[T]
	group, kind string
}

func (o ownsT[T]) name() string         { return o.inf.Name() }
func (o ownsT[T]) cache() manager.Cache { return o.inf }

func (o ownsT[T]) attach(q *queue.Queue[string]) *cache.Registration {
	enqueue := func(obj T) {
		for _, ref := range obj.GetOwnerReferences() {
			if ref.Controller == nil || !*ref.Controller || ref.Kind != o.kind || groupOf(ref.APIVersion) != o.group {
				continue
			}
			q.Add(cache.Key(obj.GetNamespace(), ref.Name))
		}
	}
	return o.inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd:    enqueue,
		OnUpdate: func(old, new T) { enqueue(old); enqueue(new) },
		OnDelete: enqueue,
	}, cache.EventHandlerOptions{Name: "owns"})
}

func groupOf(apiVersion string) string {
	for i := 0; i < len(apiVersion); i++ {
		if apiVersion[i] == '/' {
			return apiVersion[:i]
		}
	}
	return "" // core group: "v1"
}

// Owns makes changes of objects whose controller owner reference points at
// group/kind (group "" for the core group) enqueue that owner's key. Owners
// are assumed to be in the object's namespace, as Kubernetes requires for
// namespaced owners.
func Owns[T Owned](inf *cache.Informer[T], group, kind string) Trigger {
	return ownsT[T]{inf: inf, group: group, kind: kind}
}

type watchesT[T cache.Object] struct {
	inf *cache.Informer[T]
	fn  func(T) []string
}

func (w watchesT[T]) name() string         { return w.inf.Name() }
func (w watchesT[T]) cache() manager.Cache { return w.inf }

func (w watchesT[T]) attach(q *queue.Queue[string]) *cache.Registration {
	enqueue := func(obj T) {
		for _, k := range w.fn(obj) {
			q.Add(k)
		}
	}
	return w.inf.AddEventHandler(cache.EventHandler[T]{
		OnAdd:    enqueue,
		OnUpdate: func(old, new T) { enqueue(old); enqueue(new) },
		OnDelete: enqueue,
	}, cache.EventHandlerOptions{Name: "watches"})
}

// Watches makes changes of any type enqueue the keys fn returns (for old
// and new object on update). fn must not modify its argument.
func Watches[T cache.Object](inf *cache.Informer[T], fn func(T) []string) (Trigger, error) {
	if fn == nil {
		return nil, errors.New("builder: Watches needs a mapping func")
	}
	return watchesT[T]{inf: inf, fn: fn}, nil
}
