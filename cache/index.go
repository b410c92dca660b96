package cache

// NamespaceIndex is the name of the built-in index from namespace to objects.
const NamespaceIndex = "namespace"

// IndexFunc returns the index values of an object; an object may have none
// or several. It must be a pure function of the object.
type IndexFunc[T Object] func(obj T) []string

// LabelIndex returns an IndexFunc that indexes objects by the value of label
// key; objects without the label are not indexed.
func LabelIndex[T Object](key string) IndexFunc[T] {
	return func(obj T) []string {
		if v, ok := obj.GetLabels()[key]; ok {
			return []string{v}
		}
		return nil
	}
}

func namespaceOf[T Object](obj T) []string { return []string{obj.GetNamespace()} }

type index[T Object] struct {
	fn     IndexFunc[T]
	pos    int                               // position in Store.custom; -1 for NamespaceIndex
	values map[string]map[ObjectKey]struct{} // index value -> keys
}

// indexValues returns the values of e (stored under key) in ix: computed
// from the object, or in a compact store as extracted when it was stored.
func (s *Store[T]) indexValues(ix *index[T], key ObjectKey, e *entry[T]) []string {
	switch {
	case e.p == nil:
		return ix.fn(e.obj)
	case ix.pos < 0:
		return []string{key.Namespace}
	default:
		return e.p.idx[ix.pos]
	}
}

func (ix *index[T]) add(key ObjectKey, vals []string) {
	for _, v := range vals {
		set := ix.values[v]
		if set == nil {
			set = map[ObjectKey]struct{}{}
			ix.values[v] = set
		}
		set[key] = struct{}{}
	}
}

func (ix *index[T]) remove(key ObjectKey, vals []string) {
	for _, v := range vals {
		set := ix.values[v]
		delete(set, key)
		if len(set) == 0 {
			delete(ix.values, v)
		}
	}
}

// ByIndex returns the objects whose index values include value. It panics if
// no index is named name (a programming error). A compact store leaves out
// (and reports) objects it cannot decode; LoadByIndex returns the error.
func (s *Store[T]) ByIndex(name, value string) []T {
	if s.codec != nil {
		out, _ := s.LoadByIndex(name, value)
		return out
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ix, ok := s.indexes[name]
	if !ok {
		panic("cache: no index named " + name)
	}
	set := ix.values[value]
	out := make([]T, 0, len(set))
	for key := range set {
		out = append(out, s.items[key].obj)
	}
	return out
}

// IndexValues returns the values present in index name, in no particular
// order. It panics if no index is named name.
func (s *Store[T]) IndexValues(name string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ix, ok := s.indexes[name]
	if !ok {
		panic("cache: no index named " + name)
	}
	out := make([]string, 0, len(ix.values))
	for v := range ix.values {
		out = append(out, v)
	}
	return out
}
