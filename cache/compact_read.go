package cache

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Reads that can fail: in a compact store, an object whose bytes cannot be
// decoded. For a store that is not compact they never fail and return what
// Get, List and ByIndex do.

// storedRef is what a read copies out under the store's lock; it decodes
// afterwards, so the lock is held only for pointer copies.
type storedRef[T Object] struct {
	key ObjectKey
	obj T
	p   *packed
}

// LoadList is List that returns the objects it could decode and an error
// naming the first that it could not (and how many failed).
func (s *Store[T]) LoadList(sel labels.Selector) ([]T, error) {
	if s.codec == nil {
		return s.List(sel), nil
	}
	s.mu.RLock()
	refs := make([]storedRef[T], 0, len(s.items))
	for key, e := range s.items {
		if e.matches(sel) {
			refs = append(refs, storedRef[T]{key: key, obj: e.obj, p: e.p})
		}
	}
	s.mu.RUnlock()
	return s.decodeAll(refs)
}

// LoadByIndex is ByIndex that returns the objects it could decode and an
// error naming the first that it could not. It panics if no index is named
// name.
func (s *Store[T]) LoadByIndex(name, value string) ([]T, error) {
	return s.loadByIndex(name, value, nil)
}

// loadByIndex returns the objects with value in index name whose labels
// match sel (nil: all), matching before decoding in a compact store.
func (s *Store[T]) loadByIndex(name, value string, sel labels.Selector) ([]T, error) {
	if s.codec == nil {
		objs := s.ByIndex(name, value)
		if sel == nil || sel.Empty() {
			return objs, nil
		}
		kept := objs[:0]
		for _, o := range objs {
			if sel.Matches(labels.Set(o.GetLabels())) {
				kept = append(kept, o)
			}
		}
		clear(objs[len(kept):])
		return kept, nil
	}
	s.mu.RLock()
	ix, ok := s.indexes[name]
	if !ok {
		s.mu.RUnlock()
		panic("cache: no index named " + name)
	}
	set := ix.values[value]
	refs := make([]storedRef[T], 0, len(set))
	for key := range set {
		if e := s.items[key]; e.matches(sel) {
			refs = append(refs, storedRef[T]{key: key, obj: e.obj, p: e.p})
		}
	}
	s.mu.RUnlock()
	return s.decodeAll(refs)
}

// matches reports whether e's labels match sel (nil: everything).
func (e *entry[T]) matches(sel labels.Selector) bool {
	if sel == nil || sel.Empty() {
		return true
	}
	if e.p != nil {
		return sel.Matches(e.p.labels)
	}
	return sel.Matches(labels.Set(e.obj.GetLabels()))
}

// decodeAll decodes refs of a compact store.
func (s *Store[T]) decodeAll(refs []storedRef[T]) ([]T, error) {
	out := make([]T, 0, len(refs))
	var first error
	failed := 0
	for _, r := range refs {
		if r.p == nil {
			out = append(out, ownCopy(r.obj))
			continue
		}
		t, err := s.unpack(r.key, r.p)
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
			continue
		}
		out = append(out, t)
	}
	if failed > 0 {
		return out, fmt.Errorf("%w (%d of %d objects could not be decoded)", first, failed, len(refs))
	}
	return out, nil
}

// ownCopy returns a deep copy of obj, an object a compact store keeps
// decoded because it could not encode it: the store's readers own what it
// hands out. Types without DeepCopyObject are returned as they are.
func ownCopy[T Object](obj T) T {
	if d, ok := any(obj).(interface{ DeepCopyObject() runtime.Object }); ok {
		if c, ok := d.DeepCopyObject().(T); ok {
			return c
		}
	}
	return obj
}

// Compact reports whether the informer's store is compact
// (Options.Compact): objects read through the Lister are then fresh
// decodes the caller owns, rather than shared read-only objects.
func (l Lister[T]) Compact() bool { return l.s.Compact() }

// Load is Get that also returns the error of a compact store's decode.
func (l Lister[T]) Load(namespace, name string) (T, bool, error) {
	return l.s.Load(ObjectKey{Namespace: namespace, Name: name})
}

// LoadList is List that also returns the error of a compact store's decode
// (the objects it could decode are returned with it).
func (l Lister[T]) LoadList(sel labels.Selector) ([]T, error) { return l.s.LoadList(sel) }

// LoadListInNamespace is ListInNamespace that also returns the error of a
// compact store's decode.
func (l Lister[T]) LoadListInNamespace(namespace string, sel labels.Selector) ([]T, error) {
	return l.s.loadByIndex(NamespaceIndex, namespace, sel)
}
