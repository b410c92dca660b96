package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	kjson "sigs.k8s.io/json"
)

// CustomSource watches gvr, a custom resource (or any resource served as
// JSON), and decodes every object of a list or watch straight from the
// wire bytes into T: a pointer to a Go struct with json tags implementing
// runtime.Object (typically a CRD type embedding metav1.TypeMeta and
// metav1.ObjectMeta; CustomSource panics for any other T), or
// *unstructured.Unstructured. metadata.managedFields and the
// kubectl.kubernetes.io/last-applied-configuration annotation are skipped
// while decoding (or cut from the bytes before it), so they are never
// allocated (DefaultTransform
// would drop them anyway; with a Transform of your own they are absent
// too).
//
// c is a REST client for gvr's group and version (the client package passes
// its own; CustomSourceFor builds one). Lists and watches both go through c
// unless WithWatchConfig gives the watches a client of their own (as
// CustomSourceFor and the client package do). Decoding is case-sensitive
// JSON, the same as client-go's JSON serializer; fields T does not declare
// are ignored. An object that does not fit T is malformed for this
// informer: it is skipped, logged with its namespace and name, and counted
// in Stats().Skipped. It does no I/O until the informer runs.
//
// It asks for CBOR and accepts JSON (see CustomOptions): a server with the
// CBORServingAndStorage feature gate answers CBOR, others JSON.
func CustomSource[T Object](c rest.Interface, gvr schema.GroupVersionResource, scope Scope) Source[T] {
	return CustomSourceWith[T](c, gvr, scope, CustomOptions{})
}

// CustomSourceWith is CustomSource with options.
func CustomSourceWith[T Object](c rest.Interface, gvr schema.GroupVersionResource, scope Scope, o CustomOptions) Source[T] {
	d := newWireDecoder[T](resourceName(gvr))
	return Source[T]{
		LW:       &wireLW[T]{c: c, gv: gvr.GroupVersion(), resource: gvr.Resource, ns: scope.Namespace, dec: d, accept: o.Encoding.accept(), cbor: new(atomic.Bool)},
		Decode:   d.assert,
		Resource: resourceName(gvr),
		Scope:    scope,
		id:       fmt.Sprintf("%s %v %s (wire)", resourceName(gvr), reflect.TypeFor[T](), scope),
	}
}

// CustomSourceFor is CustomSource over REST clients built from cfg: lists
// share cfg's connection (HTTP/2 where the server offers it), with
// client-go's 5 QPS limit off unless cfg sets a QPS or limiter; watches
// speak HTTP/1.1 on a connection of their own, not rate limited (see
// WithWatchConfig).
func CustomSourceFor[T Object](cfg *rest.Config, gvr schema.GroupVersionResource, scope Scope) (Source[T], error) {
	rc, err := rest.RESTClientFor(customConfig(informerConfig(cfg), gvr.GroupVersion()))
	if err != nil {
		return Source[T]{}, fmt.Errorf("client for %s: %w", gvr, err)
	}
	return WithWatchConfig(CustomSource[T](rc, gvr, scope), cfg)
}

// WithWatchConfig returns src, a source from CustomSource, CustomSourceWith
// or CustomSourceFor (or a Project of one), with its watches (watch-lists
// included) sent through a REST client of their own built from cfg, a
// config for the source's API server; lists keep the source's client. src
// itself is not changed. It does no I/O.
//
// The watch client is cfg with:
//   - HTTP/1.1 on a connection of its own per running watch, with a
//     keepalive dialer unless cfg has a Dial (see streamconn.go: a long
//     stream of small frames costs both ends less CPU than over HTTP/2).
//     A cfg whose TLSClientConfig.NextProtos is set (e.g. []string{"h2",
//     "http/1.1"} to stay on HTTP/2) or that brings its own Transport is
//     used as given.
//   - no client-side rate limit (cfg's QPS, Burst and RateLimiter are
//     ignored), as client-go does not throttle watches either.
//   - the source's group version, API path and content settings, whatever
//     cfg says: the Accept header follows the source's CustomOptions.Encoding
//     (CBOR preferred, JSON accepted, by default), and error bodies are
//     decoded with client-go's scheme.
//   - everything else as cfg has it: host, credentials, TLS, Wrap (so
//     request metrics and tracing see the watches), Proxy, Timeout.
//
// The watches go through the stream client shared by every source built
// from an equal cfg (see streamconn.go); WithWatchConfigAndClient names
// the client.
//
// It fails when cfg is nil, when src's ListerWatcher is not a custom
// source's, or when cfg yields no REST client; then it returns src
// unchanged.
func WithWatchConfig[T Object](src Source[T], cfg *rest.Config) (Source[T], error) {
	return WithWatchConfigAndClient(src, cfg, nil)
}

// WithWatchConfigAndClient is WithWatchConfig whose watch requests go
// through hc, a client from NewStreamClient for cfg's server and
// credentials that the caller shares among its sources and owns; nil hc
// is WithWatchConfig's shared client.
func WithWatchConfigAndClient[T Object](src Source[T], cfg *rest.Config, hc *http.Client) (Source[T], error) {
	if cfg == nil {
		return src, errors.New("cache: WithWatchConfig: nil rest.Config")
	}
	lw, ok := src.LW.(customLW)
	if !ok {
		return src, fmt.Errorf("cache: WithWatchConfig needs a source from CustomSource, CustomSourceWith or CustomSourceFor, got a ListerWatcher %T", src.LW)
	}
	if hc == nil {
		var err error
		if hc, err = sharedStreamClient(cfg); err != nil {
			return src, fmt.Errorf("cache: watch client for %s: %w", src.Resource, err)
		}
	}
	wc := streamConfig(customConfig(cfg, lw.groupVersion()))
	wc.RateLimiter, wc.QPS = nil, -1
	c, err := rest.RESTClientForConfigAndClient(wc, hc)
	if err != nil {
		return src, fmt.Errorf("cache: watch client for %s: %w", src.Resource, err)
	}
	src.LW = lw.withWatchClient(c)
	return src, nil
}

// customConfig returns a copy of cfg for a custom source's REST client of
// gv. The serializer only decodes error Status bodies; objects never go
// through it.
func customConfig(cfg *rest.Config, gv schema.GroupVersion) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	c.ContentType = runtime.ContentTypeJSON
	c.AcceptContentTypes = runtime.ContentTypeJSON
	return c
}

// wireDecoder decodes one object's JSON bytes into T.
type wireDecoder[T Object] struct {
	resource     string
	typ          reflect.Type // T
	unstructured bool         // T is *unstructured.Unstructured
	// fast is *T's wire plan for decodeJSONStruct, nil if T is
	// unstructured or has none (every JSON object then goes to kjson).
	fast *jsonPlan
}

func newWireDecoder[T Object](resource string) wireDecoder[T] {
	typ := reflect.TypeFor[T]()
	var zero T
	_, isU := any(zero).(*unstructured.Unstructured)
	if !isU && (typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct || !typ.Implements(reflect.TypeFor[runtime.Object]())) {
		panic(fmt.Sprintf("cache.CustomSource: %v is not a pointer to a struct implementing runtime.Object", typ))
	}
	d := wireDecoder[T]{resource: resource, typ: typ, unstructured: isU}
	if !isU {
		d.fast = wirePlanFor(typ.Elem())
	}
	return d
}

// wireFormat is what decoding one object needs from its encoding (JSON or
// CBOR); decodeWith is the rest, shared by both.
type wireFormat struct {
	// strip cuts the fields informers never keep (see stripJSONObject,
	// stripCBORObject) out of one object's bytes, in place.
	strip func(obj []byte) ([]byte, error)
	// unmarshal decodes an object, or a metav1.Status, into v.
	unmarshal func(b []byte, v any) error
	// unmarshalHead decodes the metadata that names an object in an error.
	unmarshalHead func(b []byte, v any) error
	// fixup, if not nil, runs on every typed object after unmarshal.
	fixup func(reflect.Value) error
}

// jsonWire reads objects as the API server encodes them in JSON.
var jsonWire = wireFormat{
	strip:         stripJSONObject,
	unmarshal:     kjson.UnmarshalCaseSensitivePreserveInts,
	unmarshalHead: kjson.UnmarshalCaseSensitivePreserveInts,
}

// decode decodes obj, a JSON object, into a new T without what stripping
// cuts (see decodeWith). A failure is an *undecoded naming the object,
// with the error.
func (d wireDecoder[T]) decode(obj []byte) (T, *undecoded) { return d.decodeWith(&jsonWire, obj) }

// decodeWith decodes obj (encoded as f reads it) into a new T without the
// fields f.strip cuts: JSON's fast paths skip them as they read, and
// otherwise obj is stripped in place first. A failure is an *undecoded
// naming the object, with the error.
func (d wireDecoder[T]) decodeWith(f *wireFormat, obj []byte) (T, *undecoded) {
	var zero T
	if f == &jsonWire && d.fast != nil {
		// One pass that skips what stripping would cut (see wirePlanFor);
		// when it cannot be sure to match kjson, the usual strip and kjson
		// on the same bytes (which it has not changed), into a fresh T.
		v := reflect.New(d.typ.Elem())
		if decodeJSONStruct(d.fast, obj, v.UnsafePointer()) {
			return v.Interface().(T), nil
		}
	}
	if f == &jsonWire && d.unstructured {
		// One pass into maps that skips what stripping would cut (see
		// jsonany.go); as above, the usual path when it cannot be sure
		// to match it.
		if m, ok := decodeJSONObjectStripped(obj); ok {
			return any(&unstructured.Unstructured{Object: m}).(T), nil
		}
	}
	b, err := f.strip(obj)
	if err != nil {
		// Not one object: let the decoder have its say on the bytes as
		// they are (it accepts what it accepts, and its error is the
		// familiar one).
		b = obj
	}
	t, err := d.unmarshal(f, b)
	if err != nil {
		return zero, d.failed(f, b, err)
	}
	return t, nil
}

// object is decodeWith's result as a list item or event object: the T, or
// the *undecoded.
func (d wireDecoder[T]) object(f *wireFormat, obj []byte) runtime.Object {
	t, bad := d.decodeWith(f, obj)
	if bad != nil {
		return bad
	}
	return any(t).(runtime.Object)
}

func (d wireDecoder[T]) unmarshal(f *wireFormat, b []byte) (T, error) {
	var zero T
	if d.unstructured {
		var m map[string]any
		if err := f.unmarshal(b, &m); err != nil {
			return zero, err
		}
		if m == nil {
			return zero, errors.New("object is null")
		}
		return any(&unstructured.Unstructured{Object: m}).(T), nil
	}
	t := reflect.New(d.typ.Elem()).Interface().(T)
	if err := f.unmarshal(b, t); err != nil {
		return zero, err
	}
	if f.fixup != nil {
		if err := f.fixup(reflect.ValueOf(t)); err != nil {
			return zero, err
		}
	}
	return t, nil
}

// failed names the object obj as well as its bytes allow.
func (d wireDecoder[T]) failed(f *wireFormat, obj []byte, err error) *undecoded {
	var head struct {
		Metadata struct {
			Name            string `json:"name"`
			Namespace       string `json:"namespace"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = f.unmarshalHead(obj, &head) // best effort: names the object in the error if it can
	return d.undecodedFor(head.Metadata.Namespace, head.Metadata.Name, head.Metadata.ResourceVersion, err)
}

// event is the watch event of type typ whose object is obj (encoded as f
// reads it): an Error event's Status, else the decoded object.
func (d wireDecoder[T]) event(f *wireFormat, typ string, obj []byte) (watch.Event, error) {
	et := watch.EventType(typ)
	if et == watch.Error {
		st := &metav1.Status{}
		if err := f.unmarshal(obj, st); err != nil {
			return watch.Event{}, fmt.Errorf("decode %s watch error status: %w", d.resource, err)
		}
		return watch.Event{Type: et, Object: st}, nil
	}
	return watch.Event{Type: et, Object: d.object(f, obj)}, nil
}

func (d wireDecoder[T]) undecodedFor(namespace, name, resourceVersion string, err error) *undecoded {
	u := &undecoded{}
	u.Name, u.Namespace, u.ResourceVersion = name, namespace, resourceVersion
	who := u.Name
	if u.Namespace != "" {
		who = u.Namespace + "/" + u.Name
	}
	if who == "" {
		who = "(unnamed)"
	}
	u.err = fmt.Errorf("decode %s %s into %v: %w", d.resource, who, d.typ, err)
	return u
}

// assert is the Source's Decode: wire objects are already T, or an
// *undecoded carrying why not.
func (d wireDecoder[T]) assert(o runtime.Object) (T, error) {
	var zero T
	switch v := o.(type) {
	case T:
		return v, nil
	case *undecoded:
		return zero, v.err
	}
	return zero, fmt.Errorf("got %T, want %v", o, d.typ)
}

// undecoded stands in for an object that did not decode: the reflector
// skips it (logging its name and counting it) and still learns its
// resourceVersion and, for a delete, its key.
type undecoded struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	err error
}

func (u *undecoded) DeepCopyObject() runtime.Object {
	c := &undecoded{TypeMeta: u.TypeMeta, err: u.err}
	u.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

// wireList is what wireLW.List returns: the list's metadata and its items,
// each a T or an *undecoded.
type wireList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []runtime.Object
}

func (l *wireList) DeepCopyObject() runtime.Object {
	c := &wireList{TypeMeta: l.TypeMeta, Items: make([]runtime.Object, len(l.Items))}
	l.ListMeta.DeepCopyInto(&c.ListMeta)
	for i, o := range l.Items {
		c.Items[i] = o.DeepCopyObject()
	}
	return c
}

// decodeList decodes a list body {"metadata": ..., "items": [...]},
// stripping items in place.
func (d wireDecoder[T]) decodeList(body []byte) (*wireList, error) {
	l := &wireList{}
	for m, err := range objectMembers(body, skipSpace(body, 0), 1) {
		if err != nil {
			return nil, fmt.Errorf("decode %s list: %w", d.resource, err)
		}
		if m.start < 0 {
			continue
		}
		switch string(m.key) {
		case "metadata":
			if err := kjson.UnmarshalCaseSensitivePreserveInts(body[m.vStart:m.vEnd], &l.ListMeta); err != nil {
				return nil, fmt.Errorf("decode %s list metadata: %w", d.resource, err)
			}
		case "items":
			if body[m.vStart] == 'n' { // null
				continue
			}
			for sp, err := range arrayElems(body, m.vStart, 2) {
				if err != nil {
					return nil, fmt.Errorf("decode %s list items: %w", d.resource, err)
				}
				l.Items = append(l.Items, d.object(&jsonWire, body[sp.vs:sp.ve]))
			}
		}
	}
	return l, nil
}

// decodeEvent decodes one watch event frame {"type": ..., "object": ...}.
// Objects that do not decode arrive as *undecoded; a frame that is not an
// event is an error (the stream cannot be trusted after it).
func (d wireDecoder[T]) decodeEvent(frame []byte) (watch.Event, error) {
	var typ string
	os, oe := -1, -1
	for m, err := range objectMembers(frame, skipSpace(frame, 0), 1) {
		if err != nil {
			return watch.Event{}, fmt.Errorf("decode %s watch event: %w", d.resource, err)
		}
		switch {
		case m.start < 0:
		case string(m.key) == "type":
			if err := kjson.UnmarshalCaseSensitivePreserveInts(frame[m.vStart:m.vEnd], &typ); err != nil {
				return watch.Event{}, fmt.Errorf("decode %s watch event type: %w", d.resource, err)
			}
		case string(m.key) == "object":
			os, oe = m.vStart, m.vEnd
		}
	}
	if os < 0 {
		return watch.Event{}, fmt.Errorf("decode %s watch event of type %q: no object", d.resource, typ)
	}
	return d.event(&jsonWire, typ, frame[os:oe])
}

// wireLW lists through c and watches through watchC (c if nil), decoding
// bodies with dec.
type wireLW[T Object] struct {
	c        rest.Interface
	watchC   rest.Interface
	gv       schema.GroupVersion
	resource string
	ns       string
	dec      wireDecoder[T]
	accept   string       // the Accept header
	cbor     *atomic.Bool // a list came back as CBOR (shared by copies)
}

// customLW is a *wireLW of any T (a projected source's T is not its
// ListerWatcher's).
type customLW interface {
	ListerWatcher
	groupVersion() schema.GroupVersion
	// withWatchClient returns a copy that watches through c.
	withWatchClient(c rest.Interface) ListerWatcher
}

func (l *wireLW[T]) groupVersion() schema.GroupVersion { return l.gv }

// prefersPages: custom resources list in pages (WatchListAuto) until a
// list comes back as CBOR: a server that serves CBOR streams a watch-list
// more cheaply than it pages (bench/README.md, I5).
func (l *wireLW[T]) prefersPages() bool { return !l.cbor.Load() }

func (l *wireLW[T]) withWatchClient(c rest.Interface) ListerWatcher {
	cp := *l
	cp.watchC = c
	return &cp
}

func (l *wireLW[T]) request(c rest.Interface, opts *metav1.ListOptions) *rest.Request {
	return c.Get().NamespaceIfScoped(l.ns, l.ns != "").Resource(l.resource).
		VersionedParams(opts, metav1.ParameterCodec).SetHeader("Accept", l.accept)
}

func (l *wireLW[T]) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	var ct string
	res := l.request(l.c, &opts).Do(ctx).ContentType(&ct)
	body, err := res.Raw()
	if err != nil {
		return nil, responseError(res, ct, body)
	}
	if isCBOR(ct, body) {
		l.cbor.Store(true)
		return l.dec.decodeListCBOR(body)
	}
	return l.dec.decodeList(body)
}

func (l *wireLW[T]) canListPages() bool { return true }

// listPages is List page by page, each page requested as soon as the
// previous one was read (before it is decoded; see listPagesWith).
func (l *wireLW[T]) listPages(ctx context.Context, opts metav1.ListOptions, each func(runtime.Object) error) error {
	fetch := func(ctx context.Context, opts metav1.ListOptions) (io.ReadCloser, error) {
		return l.request(l.c, &opts).Stream(ctx)
	}
	decode := func(data []byte) (runtime.Object, error) {
		if isCBOR("", data) {
			l.cbor.Store(true)
			return l.dec.decodeListCBOR(data)
		}
		return l.dec.decodeList(data)
	}
	return listPagesWith(ctx, opts, l.resource, fetch, decode, each)
}

func (l *wireLW[T]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	c := l.c
	if l.watchC != nil {
		c = l.watchC
	}
	sctx, cancel := withStreamDeadline(ctx, opts.TimeoutSeconds) // see streamconn.go
	body, err := l.request(c, &opts).Stream(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	body = cancelOnClose{body, cancel}
	return startWireWatch(body, l.dec.decodeAnyEvent, l.dec.resource), nil
}

// isClosedRead reports read errors that mean the stream ended (the server
// closed it, or Stop closed the body) rather than a fault worth reporting.
func isClosedRead(err error) bool {
	s := err.Error()
	return strings.Contains(s, "use of closed") || strings.Contains(s, "closed response body") ||
		strings.Contains(s, "connection reset") || strings.Contains(s, "stream error") ||
		errors.Is(err, context.Canceled)
}
