package client

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/cache"
)

// ObjectKey names an object: namespace ("" for cluster-scoped) and name.
type ObjectKey = cache.ObjectKey

// KeyOf returns obj's key.
func KeyOf(obj Object) ObjectKey { return cache.KeyOf(obj) }

// CheckInformer reports whether InformerFor[T](c, scope, opts...) would
// succeed, without creating anything: T is registered, the server serves
// it, the scope fits its scope, and no informer of T with another scope or
// other options exists. It may call discovery.
func CheckInformer[T Object](c *Client, scope cache.Scope, opts ...InformerOption) error {
	_, _, err := checkInformer[T](c, scope, informerOptionsOf(opts))
	return err
}

// checkInformer is CheckInformer returning the existing informer of T (nil
// if none yet) or, when there is none, T's mapping.
func checkInformer[T Object](c *Client, scope cache.Scope, io informerOptions) (*cache.Informer[T], *mapping, error) {
	typ := reflect.TypeFor[T]()
	c.mu.Lock()
	have, ok := c.informers[typ]
	c.mu.Unlock()
	if ok {
		if have.scope != scope {
			return nil, nil, fmt.Errorf("client: the informer for %v already watches %v; cannot also watch %v (one cache per type; build another with cache.InformerFor)", typ, have.scope, scope)
		}
		if have.opts != io {
			return nil, nil, fmt.Errorf("client: the informer for %v already exists with %v; cannot also have %v (one cache per type)", typ, have.opts, io)
		}
		return have.inf.(*cache.Informer[T]), have.m, nil
	}
	m, err := c.mappingFor(newObject[T]())
	if err != nil {
		return nil, nil, err
	}
	if !m.namespaced && scope.Namespace != "" {
		return nil, nil, fmt.Errorf("client: %v is cluster-scoped; its informer cannot be limited to namespace %q", m.gvk.Kind, scope.Namespace)
	}
	return nil, m, nil
}

// IsNamespaced reports whether obj's type is a namespaced resource on the
// server.
func (c *Client) IsNamespaced(obj Object) (bool, error) {
	m, err := c.mappingFor(obj)
	if err != nil {
		return false, err
	}
	return m.namespaced, nil
}

// InformerFor returns the client's informer for T, creating it (in the
// client's Factory, with the client's informer metrics) on first use; Get
// and List of T are then served from it. There is one such informer per Go
// type: asking again with the same scope and options returns it, with
// another scope or options is an error. An informer created while the
// factory runs starts at once.
//
// The informer has cache.Options' defaults: DefaultTransform, with
// managedFields and the last-applied annotation cut out of the protobuf of
// built-in types before decoding (custom resources: out of the JSON, decoded
// straight into T), and interning. CompactCache makes it compact
// (cache.Options.Compact).
func InformerFor[T Object](c *Client, scope cache.Scope, opts ...InformerOption) (*cache.Informer[T], error) {
	return informerFor[T](c, scope, nil, informerOptionsOf(opts))
}

func informerFor[T Object](c *Client, scope cache.Scope, part *cache.Partition, io informerOptions) (*cache.Informer[T], error) {
	have, m, err := checkInformer[T](c, scope, io)
	if err != nil {
		return nil, err
	}
	if have != nil {
		c.mu.Lock()
		same := c.informers[reflect.TypeFor[T]()].part == part
		c.mu.Unlock()
		if part != nil && !same {
			return nil, fmt.Errorf("client: an informer of %v exists already; a partitioned one must be the first (create it before any Get, List or informer of the type)", reflect.TypeFor[T]())
		}
		return have, nil
	}
	typ := reflect.TypeFor[T]()
	src, err := informerSource[T](c, m, scope)
	if err != nil {
		return nil, err
	}
	name := src.Resource
	var parts []string
	for _, p := range [][2]string{{"namespace", scope.Namespace}, {"labels", scope.LabelSelector}, {"fields", scope.FieldSelector}} {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+p[1])
		}
	}
	if part != nil {
		parts = append(parts, "partitioned")
	}
	if len(parts) > 0 {
		name += " (" + strings.Join(parts, ", ") + ")"
	}
	o := cache.Options[T]{Name: name, Metrics: c.imet, Compact: io.compact}
	if part != nil {
		src = cache.PartitionSource(src, part)
		o.WatchList = cache.WatchListOff
	}
	inf := cache.InformerFor(c.factory, src, o)
	c.mu.Lock()
	defer c.mu.Unlock()
	if have, ok := c.informers[typ]; ok { // lost a race with another caller
		if part != nil && have.part != part {
			return nil, fmt.Errorf("client: an informer of %v was created meanwhile; a partitioned one must be the first", typ)
		}
		return have.inf.(*cache.Informer[T]), nil
	}
	c.informers[typ] = typedInformer{inf: inf, scope: scope, opts: io, m: m, rv: inf.Store().ResourceVersion, part: part}
	return inf, nil
}

// cached returns the client's informer for T, nil if there is none.
func cached[T Object](c *Client) (*cache.Informer[T], *mapping) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ti, ok := c.informers[reflect.TypeFor[T]()]
	if !ok {
		return nil, nil
	}
	return ti.inf.(*cache.Informer[T]), ti.m
}

// informerRV returns the latest applied resourceVersion of typ's informer.
func (c *Client) informerRV(typ reflect.Type) string {
	c.mu.Lock()
	ti, ok := c.informers[typ]
	c.mu.Unlock()
	if !ok {
		return ""
	}
	return ti.rv()
}

// Get returns the object key of type T: from the client's informer for T
// if there is one (waiting for its first sync; read-your-own-writes
// applies), else from the API server. The object is the caller's own copy.
// A missing object is an apierrors NotFound error.
func Get[T Object](ctx context.Context, c *Client, key ObjectKey) (T, error) {
	var zero T
	inf, m := cached[T](c)
	if inf == nil {
		obj := newObject[T]()
		m, err := c.mappingFor(obj)
		if err != nil {
			return zero, err
		}
		err = m.rc.Get().NamespaceIfScoped(key.Namespace, m.namespaced).Resource(m.gvr.Resource).Name(key.Name).Do(ctx).Into(obj)
		if err != nil {
			return zero, err
		}
		return obj, nil
	}
	if err := inf.WaitForSync(ctx); err != nil {
		return zero, fmt.Errorf("client: get %s %s: %w", m.gvk.Kind, key, err)
	}
	typ := reflect.TypeFor[T]()
	obj, ok, err := inf.Lister().Load(key.Namespace, key.Name)
	if err != nil {
		return zero, fmt.Errorf("client: get %s %s from the cache: %w", m.gvk.Kind, key, err)
	}
	cachedRV := ""
	if ok {
		cachedRV = obj.GetResourceVersion()
	}
	switch v, w := c.track.resolve(typ, key, cachedRV, inf.Store().ResourceVersion()); v {
	case useWritten:
		return w.DeepCopyObject().(T), nil
	case useAbsent:
		ok = false
	}
	if !ok {
		return zero, apierrors.NewNotFound(m.groupResource(), key.Name)
	}
	return ownCopy(inf, obj), nil
}

// ownCopy returns obj, read from inf, as the caller's own: a compact
// informer's reads already are fresh decodes; others are copied.
func ownCopy[T Object](inf *cache.Informer[T], obj T) T {
	if inf.Lister().Compact() {
		return obj
	}
	return obj.DeepCopyObject().(T)
}

// ListOption narrows a List: InNamespace, MatchingLabels or
// MatchingSelector.
type ListOption interface{ applyList(*listOptions) }

type listOptions struct {
	namespace string
	selector  labels.Selector
}

// InNamespace lists only one namespace.
type InNamespace string

func (ns InNamespace) applyList(o *listOptions) { o.namespace = string(ns) }

// MatchingLabels lists only objects that have all these labels.
type MatchingLabels map[string]string

func (l MatchingLabels) applyList(o *listOptions) { o.selector = labels.SelectorFromSet(labels.Set(l)) }

// MatchingSelector lists only objects whose labels match a selector.
type MatchingSelector struct{ labels.Selector }

func (s MatchingSelector) applyList(o *listOptions) { o.selector = s.Selector }

// List returns the objects of type T that match opts: from the client's
// informer for T if there is one (read-your-own-writes applies: objects
// this client created, changed or deleted are shown as written), else from
// the API server (one unpaginated list). Objects are the caller's own
// copies, in no particular order.
func List[T Object](ctx context.Context, c *Client, opts ...ListOption) ([]T, error) {
	var o listOptions
	for _, opt := range opts {
		opt.applyList(&o)
	}
	inf, m := cached[T](c)
	if inf == nil {
		return listFromServer[T](ctx, c, o)
	}
	if err := inf.WaitForSync(ctx); err != nil {
		return nil, fmt.Errorf("client: list %s: %w", m.gvk.Kind, err)
	}
	var objs []T
	var err error
	if o.namespace != "" {
		objs, err = inf.Lister().LoadListInNamespace(o.namespace, o.selector)
	} else {
		objs, err = inf.Lister().LoadList(o.selector)
	}
	if err != nil {
		return nil, fmt.Errorf("client: list %s from the cache: %w", m.gvk.Kind, err)
	}
	typ := reflect.TypeFor[T]()
	informerRV := inf.Store().ResourceVersion()
	seen := make(map[ObjectKey]bool, len(objs))
	out := make([]T, 0, len(objs))
	for _, obj := range objs {
		key := cache.KeyOf(obj)
		seen[key] = true
		switch v, w := c.track.resolve(typ, key, obj.GetResourceVersion(), informerRV); v {
		case useWritten:
			if t := w.(T); matches(t, o) {
				out = append(out, t.DeepCopyObject().(T))
			}
		case useCache:
			out = append(out, ownCopy(inf, obj))
		}
	}
	// Objects this client wrote that the listing above did not hold: not in
	// the cache yet, or cached in a version that did not match.
	for _, key := range c.track.ofType(typ) {
		if seen[key] || (o.namespace != "" && key.Namespace != o.namespace) {
			continue
		}
		cachedRV := ""
		if obj, ok := inf.Lister().Get(key.Namespace, key.Name); ok {
			cachedRV = obj.GetResourceVersion()
		}
		if v, w := c.track.resolve(typ, key, cachedRV, informerRV); v == useWritten {
			if t := w.(T); matches(t, o) {
				out = append(out, t.DeepCopyObject().(T))
			}
		}
	}
	return out, nil
}

func matches(obj Object, o listOptions) bool {
	if o.namespace != "" && obj.GetNamespace() != o.namespace {
		return false
	}
	return o.selector == nil || o.selector.Matches(labels.Set(obj.GetLabels()))
}

func listFromServer[T Object](ctx context.Context, c *Client, o listOptions) ([]T, error) {
	m, err := c.mappingFor(newObject[T]())
	if err != nil {
		return nil, err
	}
	listGVK := m.gvk.GroupVersion().WithKind(m.gvk.Kind + "List")
	list, err := c.scheme.New(listGVK)
	if err != nil {
		return nil, fmt.Errorf("client: list %s: the scheme has no %s: %w", m.gvk.Kind, listGVK.Kind, err)
	}
	lo := metav1.ListOptions{}
	if o.selector != nil {
		lo.LabelSelector = o.selector.String()
	}
	err = m.rc.Get().NamespaceIfScoped(o.namespace, m.namespaced && o.namespace != "").Resource(m.gvr.Resource).
		VersionedParams(&lo, metav1.ParameterCodec).Do(ctx).Into(list)
	if err != nil {
		return nil, err
	}
	var out []T
	err = meta.EachListItem(list, func(obj runtime.Object) error {
		t, ok := obj.(T)
		if !ok {
			return fmt.Errorf("client: list %s: item is %T, not %v", m.gvk.Kind, obj, reflect.TypeFor[T]())
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// IsOwnWrite reports whether obj is exactly a version this client wrote
// (among its last few thousand writes): an informer event carrying it was
// caused by this process, and a controller may skip it. While a write of
// the same object is in flight it waits for its answer (at most 5s), since
// the watch can deliver a write before its response arrives.
func (c *Client) IsOwnWrite(obj Object) bool {
	return c.track.isOwn(reflect.TypeOf(obj), cache.KeyOf(obj), obj.GetResourceVersion())
}

// IgnoreNotFound returns nil for a NotFound error and err otherwise: a
// reconcile of an object that is gone usually has nothing to do.
func IgnoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// InformerOption changes the client's informer of a type (InformerFor,
// CheckInformer). Every informer of a type must be asked for with the same
// options.
type InformerOption interface{ applyInformer(*informerOptions) }

type informerOptions struct{ compact bool }

func (o informerOptions) String() string {
	if o.compact {
		return "a compact cache"
	}
	return "a full cache"
}

func informerOptionsOf(opts []InformerOption) informerOptions {
	var o informerOptions
	for _, opt := range opts {
		opt.applyInformer(&o)
	}
	return o
}

type compactCache struct{}

func (compactCache) applyInformer(o *informerOptions) { o.compact = true }

// CompactCache makes the informer compact (cache.Options.Compact): it keeps
// each object as its stripped protobuf (JSON for custom resources), several
// times smaller than the decoded object, and decodes on every Get and List
// (which then skip the deep copy: the decode is the caller's copy). For
// large caches read rarely; a controller that reads every object it
// reconciles pays one decode per read. Default: not compact.
var CompactCache InformerOption = compactCache{}
