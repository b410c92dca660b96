package cache

import (
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Object is what a Store holds: anything with a namespace, a name, a
// resourceVersion and labels. Every k8s.io/api pointer type,
// *unstructured.Unstructured and *metav1.PartialObjectMetadata satisfy it; a
// projection can embed Meta.
type Object interface {
	GetNamespace() string
	GetName() string
	GetResourceVersion() string
	GetLabels() map[string]string
}

// Meta is the identity a projected struct embeds to satisfy Object.
type Meta struct {
	Namespace       string
	Name            string
	ResourceVersion string
	Labels          map[string]string
}

// GetNamespace returns m.Namespace.
func (m *Meta) GetNamespace() string { return m.Namespace }

// GetName returns m.Name.
func (m *Meta) GetName() string { return m.Name }

// GetResourceVersion returns m.ResourceVersion.
func (m *Meta) GetResourceVersion() string { return m.ResourceVersion }

// GetLabels returns m.Labels.
func (m *Meta) GetLabels() map[string]string { return m.Labels }

// MetaOf copies the identity of o into a Meta, for projections.
func MetaOf(o Object) Meta {
	return Meta{Namespace: o.GetNamespace(), Name: o.GetName(), ResourceVersion: o.GetResourceVersion(), Labels: o.GetLabels()}
}

// ObjectKey identifies an object: its namespace ("" for cluster-scoped
// objects) and name. It is apimachinery's types.NamespacedName, so it prints
// as "namespace/name" and is what controllers built by the builder receive.
type ObjectKey = types.NamespacedName

// KeyOf returns the key of o.
func KeyOf(o Object) ObjectKey { return ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()} }

// ChangeType says what happened to a key.
type ChangeType uint8

// Change types.
const (
	Added ChangeType = iota + 1
	Updated
	Deleted
)

func (c ChangeType) String() string {
	switch c {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Deleted:
		return "deleted"
	}
	return "unknown"
}

// Change is one real change to a Store. Old is the zero value for Added, New
// for Deleted.
type Change[T Object] struct {
	Type ChangeType
	Key  ObjectKey
	Old  T
	New  T
}

// StoreOptions configure a Store. The zero value is valid.
type StoreOptions[T Object] struct {
	// Indexes are named index funcs maintained on every write, in addition
	// to the built-in NamespaceIndex. Default: none.
	Indexes map[string]IndexFunc[T]

	// Codec, if non-nil, makes the store compact: it keeps each object
	// encoded by Codec, with its key, resourceVersion, labels and index
	// values extracted when it is stored, and decodes a fresh object on
	// every read (see compact.go). Default nil: objects are kept as
	// handed in.
	Codec Codec[T]

	// OnCodecError, if set, is called when a compact store cannot encode an
	// object (it then keeps that object as is) or decode one on a read
	// (Get, List and ByIndex then leave it out; Load, LoadList and
	// LoadByIndex also return the error). Default nil.
	OnCodecError func(key ObjectKey, err error)
}

type entry[T Object] struct {
	obj  T             // the object; the zero value when p holds it
	p    *packed       // compact stores: the encoded object, nil if encoding failed
	seen atomic.Uint64 // the replace generation that last saw this key
}

// Store is a typed, thread-safe map from ObjectKey to the latest
// object, with named indexes.
//
// Ownership: objects handed in belong to the Store from then on; objects
// handed out (Get, List, ByIndex, Change) are shared by every reader and must
// be treated as read-only. Copy (DeepCopy) before modifying one. A compact
// store (StoreOptions.Codec) is the exception: it hands out a freshly
// decoded object on every read, which the caller owns (see Compact).
//
// Concurrency: all methods are safe for concurrent use. Readers take a read
// lock only for as long as it takes to copy pointers out; writers take the
// write lock for one object's map and index updates, or for the final swap of
// a Replace (see ReplaceSession).
type Store[T Object] struct {
	mu      sync.RWMutex
	items   map[ObjectKey]*entry[T]
	indexes map[string]*index[T]
	rv      string
	gen     atomic.Uint64 // replace generation

	// Compact stores only (codec non-nil); set at construction.
	codec      Codec[T]
	onCodecErr func(ObjectKey, error)
	custom     []*index[T] // the custom indexes, in packed.idx order
	in         *interner   // namespaces, labels and index values
}

// Writer is the one handle that changes a Store. NewStore returns both;
// an informer keeps the Writer to itself, so everything else can only read
// (the same split as kube-rs's reflector store).
type Writer[T Object] struct{ s *Store[T] }

// NewStore returns an empty store and its writer.
func NewStore[T Object](o StoreOptions[T]) (*Store[T], *Writer[T]) {
	s := newStore(o)
	return s, &Writer[T]{s}
}

func newStore[T Object](o StoreOptions[T]) *Store[T] {
	s := &Store[T]{items: map[ObjectKey]*entry[T]{}, indexes: map[string]*index[T]{}, codec: o.Codec, onCodecErr: o.OnCodecError}
	s.indexes[NamespaceIndex] = &index[T]{fn: namespaceOf[T], pos: -1, values: map[string]map[ObjectKey]struct{}{}}
	for name, fn := range o.Indexes {
		if name == NamespaceIndex {
			panic("cache: index name " + NamespaceIndex + " is built in")
		}
		ix := &index[T]{fn: fn, pos: len(s.custom), values: map[string]map[ObjectKey]struct{}{}}
		s.indexes[name] = ix
		s.custom = append(s.custom, ix)
	}
	if s.codec != nil {
		s.in = newInterner()
	}
	return s
}

// Compact reports whether the store is compact (StoreOptions.Codec): then
// every object it hands out is a fresh decode that the caller owns and may
// change, and each read costs a decode.
func (s *Store[T]) Compact() bool { return s.codec != nil }

// Get returns the object stored under key. In a compact store an object
// that cannot be decoded reads as absent (and is reported to
// StoreOptions.OnCodecError); Load returns the error.
func (s *Store[T]) Get(key ObjectKey) (T, bool) {
	t, ok, err := s.Load(key)
	return t, ok && err == nil
}

// Load is Get that also returns the error of a compact store's decode.
func (s *Store[T]) Load(key ObjectKey) (T, bool, error) {
	s.mu.RLock()
	e, ok := s.items[key]
	var obj T
	var p *packed
	if ok {
		obj, p = e.obj, e.p
	}
	s.mu.RUnlock()
	if p == nil {
		if ok && s.codec != nil {
			obj = ownCopy(obj) // kept decoded: it could not be encoded
		}
		return obj, ok, nil
	}
	t, err := s.unpack(key, p)
	return t, true, err
}

// Len returns the number of stored objects.
func (s *Store[T]) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// ResourceVersion returns the resourceVersion the store was last synced to
// (set by the Writer's Replace and SetResourceVersion), "" before the first sync.
func (s *Store[T]) ResourceVersion() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rv
}

// SetResourceVersion records the resourceVersion the store reflects.
func (w *Writer[T]) SetResourceVersion(rv string) {
	w.s.mu.Lock()
	w.s.rv = rv
	w.s.mu.Unlock()
}

// List returns the objects whose labels match sel, in no particular order.
// A nil selector matches everything. A compact store matches labels before
// it decodes, and leaves out (and reports) objects it cannot decode.
func (s *Store[T]) List(sel labels.Selector) []T {
	if s.codec != nil {
		out, _ := s.LoadList(sel)
		return out
	}
	s.mu.RLock()
	out := make([]T, 0, len(s.items))
	for _, e := range s.items {
		out = append(out, e.obj)
	}
	s.mu.RUnlock()
	if sel == nil || sel.Empty() {
		return out
	}
	kept := out[:0]
	for _, o := range out {
		if sel.Matches(labels.Set(o.GetLabels())) {
			kept = append(kept, o)
		}
	}
	clear(out[len(kept):])
	return kept
}

// Keys returns every stored key, in no particular order.
func (s *Store[T]) Keys() []ObjectKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ObjectKey, 0, len(s.items))
	for k := range s.items {
		out = append(out, k)
	}
	return out
}

// Upsert stores obj under its key and reports the object it replaced.
// changed is false (and nothing is stored) when an object with the same
// non-empty resourceVersion is already there.
func (w *Writer[T]) Upsert(obj T) (old T, existed, changed bool) {
	s := w.s
	key, p := s.prepare(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upsertLocked(key, obj, p)
}

func (s *Store[T]) upsertLocked(key ObjectKey, obj T, p *packed) (old T, existed, changed bool) {
	e, existed := s.items[key]
	if existed {
		old = s.objOfLocked(key, e)
		if rv := obj.GetResourceVersion(); rv != "" && rv == e.rv() {
			return old, true, false
		}
		for _, ix := range s.indexes {
			ix.remove(key, s.indexValues(ix, key, e))
		}
	} else {
		e = &entry[T]{}
		e.seen.Store(s.gen.Load())
		s.items[key] = e
	}
	e.obj, e.p = obj, p
	if p != nil {
		var zero T
		e.obj = zero
	}
	for _, ix := range s.indexes {
		ix.add(key, s.indexValues(ix, key, e))
	}
	return old, existed, true
}

// rv returns the resourceVersion of e's object.
func (e *entry[T]) rv() string {
	if e.p != nil {
		return e.p.rv
	}
	return e.obj.GetResourceVersion()
}

// objOfLocked returns e's object, decoded in a compact store (the zero value,
// reported, if that fails).
func (s *Store[T]) objOfLocked(key ObjectKey, e *entry[T]) T {
	if e.p == nil {
		return e.obj
	}
	t, _ := s.unpack(key, e.p)
	return t
}

// prepare returns the key of obj and, in a compact store, its packed form
// (nil, reported, if it cannot be encoded: the store then keeps obj).
func (s *Store[T]) prepare(obj T) (ObjectKey, *packed) {
	key := KeyOf(obj)
	if s.codec == nil {
		return key, nil
	}
	s.in.mu.Lock()
	key.Namespace = s.in.s(key.Namespace)
	s.in.mu.Unlock()
	p, err := s.pack(key, obj)
	if err != nil && s.onCodecErr != nil {
		s.onCodecErr(key, err)
	}
	return key, p
}

// Delete removes key and returns the object it held (in a compact store,
// decoded from its bytes).
func (w *Writer[T]) Delete(key ObjectKey) (T, bool) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(key)
}

func (s *Store[T]) deleteLocked(key ObjectKey) (T, bool) {
	e, ok := s.items[key]
	if !ok {
		var zero T
		return zero, false
	}
	delete(s.items, key)
	for _, ix := range s.indexes {
		ix.remove(key, s.indexValues(ix, key, e))
	}
	return s.objOfLocked(key, e), true
}

// Replace makes objs the store's whole content at resourceVersion rv, in one
// step for readers, and returns only the real changes: Added for new keys,
// Updated where the resourceVersion differs, Deleted for keys not in objs.
// It is BeginReplace, Put for each object, Finish.
func (w *Writer[T]) Replace(objs []T, rv string) []Change[T] {
	r := w.BeginReplace()
	for _, o := range objs {
		r.Put(o)
	}
	return r.Finish(rv)
}

// BeginReplace starts a streaming replace: Put each object of a new full
// listing as it arrives, then Finish. Readers keep seeing the old contents
// until Finish swaps in the changes. Only objects that differ from what is
// stored (new keys or a different resourceVersion) are held by the session;
// an unchanged object is dropped at Put, so a relist holds one full copy of
// the cache plus the changes, never two copies.
//
// At most one session may be open per store; the store must not be written
// by Upsert or Delete while it is open (the informer's single writer
// guarantees both). A session that is abandoned without Finish has no effect.
func (w *Writer[T]) BeginReplace() *ReplaceSession[T] {
	return &ReplaceSession[T]{s: w.s, gen: w.s.gen.Add(1), pending: map[ObjectKey]pendingObj[T]{}}
}

// ReplaceSession is an open streaming replace; see Store.BeginReplace. It is
// not safe for concurrent use.
type ReplaceSession[T Object] struct {
	s       *Store[T]
	gen     uint64
	pending map[ObjectKey]pendingObj[T]
	n       int
}

// pendingObj is an object of a replace session and, in a compact store, its
// packed form (built at Put, outside the store's lock).
type pendingObj[T Object] struct {
	obj T
	p   *packed
}

// Put records obj as part of the new listing. A later Put of the same key
// wins.
func (r *ReplaceSession[T]) Put(obj T) { r.put(obj) }

// put is Put that reports whether the session kept obj (false: the store
// already holds the same resourceVersion and keeps its object).
func (r *ReplaceSession[T]) put(obj T) bool {
	key := KeyOf(obj)
	r.n++
	r.s.mu.RLock()
	e, ok := r.s.items[key]
	var oldRV string
	if ok {
		e.seen.Store(r.gen)
		oldRV = e.rv()
	}
	r.s.mu.RUnlock()
	if ok && oldRV == obj.GetResourceVersion() && oldRV != "" {
		delete(r.pending, key)
		return false
	}
	key, p := r.s.prepare(obj)
	r.pending[key] = pendingObj[T]{obj: obj, p: p}
	return true
}

// Keep records that the new listing holds key unchanged at resourceVersion
// rv, without the object: if the store holds key at rv (a non-empty rv),
// the key keeps its stored object, as a Put of an object with that
// resourceVersion would, and Keep returns true. Otherwise it records
// nothing and returns false; Put the object instead. A later Put of the
// same key wins.
func (r *ReplaceSession[T]) Keep(key ObjectKey, rv string) bool {
	if rv == "" {
		return false
	}
	r.s.mu.RLock()
	e, ok := r.s.items[key]
	ok = ok && e.rv() == rv
	if ok {
		e.seen.Store(r.gen)
	}
	r.s.mu.RUnlock()
	if !ok {
		return false
	}
	r.n++
	delete(r.pending, key)
	return true
}

// unchanged implements relistFilter: whether Keep would keep
// namespace/name at rv. It only reads the store (which no one writes
// while the session is open), so the protobuf watch reader may call it
// from its own goroutine.
func (r *ReplaceSession[T]) unchanged(namespace, name, rv []byte) bool {
	if len(rv) == 0 {
		return false
	}
	r.s.mu.RLock()
	e, ok := r.s.items[ObjectKey{Namespace: string(namespace), Name: string(name)}]
	ok = ok && e.rv() == string(rv)
	r.s.mu.RUnlock()
	return ok
}

// Len returns how many objects were Put (or kept) so far.
func (r *ReplaceSession[T]) Len() int { return r.n }

// Finish swaps the listing in under the write lock, records rv, and returns
// the real changes (see Store.Replace).
func (r *ReplaceSession[T]) Finish(rv string) []Change[T] {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	changes := make([]Change[T], 0, len(r.pending))
	for key, e := range s.items {
		if e.seen.Load() == r.gen {
			continue
		}
		if _, ok := r.pending[key]; ok {
			continue
		}
		old, _ := s.deleteLocked(key)
		var zero T
		changes = append(changes, Change[T]{Type: Deleted, Key: key, Old: old, New: zero})
	}
	for key, po := range r.pending {
		old, existed, changed := s.upsertLocked(key, po.obj, po.p)
		s.items[key].seen.Store(r.gen)
		switch {
		case !existed:
			changes = append(changes, Change[T]{Type: Added, Key: key, New: po.obj})
		case changed:
			changes = append(changes, Change[T]{Type: Updated, Key: key, Old: old, New: po.obj})
		}
	}
	s.rv = rv
	r.pending = nil
	return changes
}
