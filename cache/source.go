package cache

import (
	"context"
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// Scope narrows what an informer watches. The zero value is every object of
// the resource in every namespace.
type Scope struct {
	Namespace     string // "" for all namespaces (or a cluster-scoped resource)
	LabelSelector string // e.g. "app=web"; parsed by the server
	FieldSelector string // e.g. "spec.nodeName=n1"; parsed by the server
}

func (s Scope) String() string {
	return fmt.Sprintf("ns=%q labels=%q fields=%q", s.Namespace, s.LabelSelector, s.FieldSelector)
}

// Source is where an informer's objects come from: a ListerWatcher for one
// resource in one namespace, a decoder from the wire object to T, and the
// selectors. Build one with TypedSource, UnstructuredSource, MetadataSource
// or Project, or fill it in (for tests, a scripted ListerWatcher).
type Source[T Object] struct {
	LW ListerWatcher
	// Decode turns an object from a list or watch into T. An error makes
	// the informer skip the object (logged and counted). T must have the
	// wire object's namespace, name and resourceVersion: a relist keeps a
	// cached object without decoding when those match (see
	// Options.Transform).
	Decode func(runtime.Object) (T, error)
	// Resource names the source in errors, logs and metrics, e.g. "pods".
	Resource string
	// Scope's selectors are sent with every list and watch. Its Namespace
	// must match the ListerWatcher's (it is used to tell sources apart).
	Scope Scope
	// id distinguishes sources for the shared factory.
	id string
	// assertDecode is the code pointer of the Assert[T] RESTSource set as
	// Decode (0 otherwise): while Decode is still that, wire objects are
	// the informer's objects (see specReuse).
	assertDecode uintptr
}

// decodesByAssert reports whether s.Decode is the Assert[T] RESTSource set.
func (s Source[T]) decodesByAssert() bool {
	return s.assertDecode != 0 && s.Decode != nil && reflect.ValueOf(s.Decode).Pointer() == s.assertDecode
}

// ID identifies what the source watches: two sources with the same ID
// produce the same objects, so a Factory shares one informer between them.
func (s Source[T]) ID() string {
	if s.id != "" {
		return s.id
	}
	return fmt.Sprintf("%s %v %s", s.Resource, reflect.TypeFor[T](), s.Scope)
}

// Assert is a Decode for sources whose wire objects already are T.
func Assert[T Object](o runtime.Object) (T, error) {
	t, ok := o.(T)
	if !ok {
		return t, fmt.Errorf("got %T, want %v", o, reflect.TypeFor[T]())
	}
	return t, nil
}

// informerConfig returns cfg for informer traffic: a list and a long watch
// per informer is not worth throttling client-side, so the client's default
// 5 QPS limiter is off unless the caller set a limiter or a QPS.
func informerConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	if c.RateLimiter == nil && c.QPS == 0 {
		c.QPS = -1
	}
	return c
}

// TypedSource watches a built-in resource as its k8s.io/api type T (e.g.
// *corev1.Pod for corev1.SchemeGroupVersion.WithResource("pods")), decoding
// protobuf from the wire (the kubernetes client scheme must know T). It does
// no I/O until the informer runs. When the informer runs DefaultTransform
// (its default), managedFields and the last-applied annotation are cut out
// of the wire bytes before decoding, so they are never allocated (see
// Options.FullDecode). Its watches speak HTTP/1.1 through the stream
// client that every source built from an equal cfg shares (see
// streamconn.go).
func TypedSource[T Object](cfg *rest.Config, gvr schema.GroupVersionResource, scope Scope) (Source[T], error) {
	c := informerConfig(cfg)
	gv := gvr.GroupVersion()
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return Source[T]{}, fmt.Errorf("client for %s: %w", gvr, err)
	}
	src := RESTSource[T](rc, gvr, scope)
	if kinds, ok := protobufKinds[T](scheme.Scheme); ok {
		lc := rest.CopyConfig(c)
		lc.NegotiatedSerializer = newLeanCodecs(c.NegotiatedSerializer, kinds)
		lean, err := rest.RESTClientFor(lc)
		if err != nil {
			return Source[T]{}, fmt.Errorf("client for %s: %w", gvr, err)
		}
		lw := src.LW.(*restLW)
		lw.lean = lean
		if lw.stream, err = newProtoStream[T](c, kinds, nil); err != nil {
			return Source[T]{}, fmt.Errorf("client for %s: %w", gvr, err)
		}
		if lw.pages = newPageDecoders(c.NegotiatedSerializer, lc.NegotiatedSerializer); lw.pages != nil {
			lw.pages.items, lw.pages.leanItems = lw.stream.full, lw.stream.lean
		}
	}
	return src, nil
}

// RESTSource watches gvr through c, a REST client for gvr's group and
// version whose serializer decodes the wire objects into T (protobuf or JSON,
// for a type registered in the client's scheme: a k8s.io/api type or a CRD
// struct). The client package builds these for Go types; TypedSource is the
// same for client-go's scheme.
func RESTSource[T Object](c rest.Interface, gvr schema.GroupVersionResource, scope Scope) Source[T] {
	src := Source[T]{LW: &restLW{c: c, resource: gvr.Resource, ns: scope.Namespace}, Decode: Assert[T], Resource: resourceName(gvr), Scope: scope}
	src.assertDecode = reflect.ValueOf(src.Decode).Pointer()
	return src
}

type restLW struct {
	c        rest.Interface
	lean     rest.Interface // nil, or c decoding without managedFields and last-applied
	stream   *protoStream   // nil, or watches read as protobuf on the reflector's goroutine
	pages    *pageDecoders  // nil, or paginated lists run by listPages (next page requested early)
	resource string
	ns       string
}

// client returns the client for a request in ctx: the lean one if the
// informer asked for it (see Options.FullDecode) and there is one.
func (l *restLW) client(ctx context.Context) rest.Interface {
	if l.lean != nil && isLean(ctx) {
		return l.lean
	}
	return l.c
}

func (l *restLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.client(ctx).Get().NamespaceIfScoped(l.ns, l.ns != "").Resource(l.resource).
		VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Get()
}

func (l *restLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	if l.stream != nil && !l.stream.off.Load() {
		req := l.stream.c.Get().NamespaceIfScoped(l.ns, l.ns != "").Resource(l.resource).VersionedParams(&opts, metav1.ParameterCodec)
		w, err := l.stream.watch(ctx, req, opts.TimeoutSeconds, l.lean != nil && isLean(ctx))
		if !notAcceptable(err) {
			return w, err
		}
		// The server does not stream this resource as protobuf: use the
		// client's negotiated watch from now on.
		l.stream.off.Store(true)
	}
	return l.client(ctx).Get().NamespaceIfScoped(l.ns, l.ns != "").Resource(l.resource).
		VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// UnstructuredSource watches any resource (custom resources included) as
// *unstructured.Unstructured over JSON.
func UnstructuredSource(cfg *rest.Config, gvr schema.GroupVersionResource, scope Scope) (Source[*unstructured.Unstructured], error) {
	dc, err := dynamic.NewForConfig(informerConfig(cfg))
	if err != nil {
		return Source[*unstructured.Unstructured]{}, fmt.Errorf("dynamic client for %s: %w", gvr, err)
	}
	ri := dc.Resource(gvr).Namespace(scope.Namespace)
	return Source[*unstructured.Unstructured]{LW: dynamicLW{ri}, Decode: Assert[*unstructured.Unstructured], Resource: resourceName(gvr), Scope: scope}, nil
}

type dynamicLW struct{ ri dynamic.ResourceInterface }

func (l dynamicLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.ri.List(ctx, opts)
}

func (l dynamicLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.ri.Watch(ctx, opts)
}

// MetadataSource watches only the metadata of any resource, as
// *metav1.PartialObjectMetadata (protobuf on the wire): the cheapest way to
// cache objects whose spec and status a controller does not read.
func MetadataSource(cfg *rest.Config, gvr schema.GroupVersionResource, scope Scope) (Source[*metav1.PartialObjectMetadata], error) {
	mc, err := metadata.NewForConfig(informerConfig(cfg))
	if err != nil {
		return Source[*metav1.PartialObjectMetadata]{}, fmt.Errorf("metadata client for %s: %w", gvr, err)
	}
	ri := mc.Resource(gvr).Namespace(scope.Namespace)
	return Source[*metav1.PartialObjectMetadata]{LW: metadataLW{ri}, Decode: Assert[*metav1.PartialObjectMetadata], Resource: resourceName(gvr) + " (metadata)", Scope: scope}, nil
}

type metadataLW struct{ ri metadata.ResourceInterface }

func (l metadataLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.ri.List(ctx, opts)
}

func (l metadataLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.ri.Watch(ctx, opts)
}

// Project turns a source of T into a source of a small struct P of the
// caller's own: the informer then caches only what project returns, and the
// full T is garbage as soon as it is decoded. name distinguishes projections
// of the same source in a Factory. project must not keep references into
// fields it does not need if memory matters (copy strings it keeps from
// large structures as needed).
func Project[T, P Object](src Source[T], name string, project func(T) P) Source[P] {
	decode := src.Decode
	return Source[P]{
		LW: src.LW,
		Decode: func(o runtime.Object) (P, error) {
			t, err := decode(o)
			if err != nil {
				var zero P
				return zero, err
			}
			return project(t), nil
		},
		Resource: src.Resource,
		Scope:    src.Scope,
		id:       src.ID() + " projected " + name,
	}
}

func resourceName(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}
