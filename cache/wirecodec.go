package cache

import (
	"context"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// protobufKinds returns the kinds of T and of its list in s, if both are
// protobuf messages laid out as the rewriter expects (ObjectMeta in field
// 1, list items in field 2), read from their Go struct tags.
func protobufKinds[T Object](s *runtime.Scheme) (wireKinds, bool) {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return wireKinds{}, false
	}
	obj, ok := reflect.New(typ.Elem()).Interface().(runtime.Object)
	if !ok {
		return wireKinds{}, false
	}
	gvks, _, err := s.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return wireKinds{}, false
	}
	if !hasProtobufField(typ.Elem(), "ObjectMeta", objectMetaField) {
		return wireKinds{}, false
	}
	k := wireKinds{Object: gvks[0].Kind, List: gvks[0].Kind + "List"}
	list, err := s.New(schema.GroupVersionKind{Group: gvks[0].Group, Version: gvks[0].Version, Kind: k.List})
	if err != nil {
		return wireKinds{}, false
	}
	lt := reflect.TypeOf(list)
	if lt.Kind() != reflect.Pointer || !hasProtobufField(lt.Elem(), "Items", listItemsField) {
		return wireKinds{}, false
	}
	if items, _ := lt.Elem().FieldByName("Items"); items.Type.Kind() != reflect.Slice || items.Type.Elem() != typ.Elem() {
		return wireKinds{}, false
	}
	return k, true
}

// hasProtobufField reports whether struct t has field name, length-delimited
// with protobuf field number num.
func hasProtobufField(t reflect.Type, name string, num int) bool {
	f, ok := t.FieldByName(name)
	if !ok {
		return false
	}
	parts := strings.Split(f.Tag.Get("protobuf"), ",")
	return len(parts) > 2 && parts[0] == "bytes" && parts[1] == strconv.Itoa(num)
}

// leanCodecs is a NegotiatedSerializer whose protobuf decoder strips
// managedFields and the last-applied annotation from objects (and lists)
// of kinds before decoding them.
type leanCodecs struct {
	runtime.NegotiatedSerializer
	infos []runtime.SerializerInfo
}

func newLeanCodecs(ns runtime.NegotiatedSerializer, kinds wireKinds) leanCodecs {
	infos := append([]runtime.SerializerInfo(nil), ns.SupportedMediaTypes()...)
	for i := range infos {
		if infos[i].MediaType == runtime.ContentTypeProtobuf && infos[i].Serializer != nil {
			infos[i].Serializer = leanDecoder{Serializer: infos[i].Serializer, kinds: kinds}
		}
	}
	return leanCodecs{NegotiatedSerializer: ns, infos: infos}
}

func (c leanCodecs) SupportedMediaTypes() []runtime.SerializerInfo { return c.infos }

// leanDecoder strips before decoding; it encodes as its Serializer does.
type leanDecoder struct {
	runtime.Serializer
	kinds wireKinds
}

// stripBufs holds the rewritten bytes for the moment of one decode: the
// protobuf decoder copies everything it keeps out of its input.
var stripBufs = sync.Pool{New: func() any { return new([]byte) }}

func (d leanDecoder) Decode(data []byte, gvk *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	bp := stripBufs.Get().(*[]byte)
	out, ok := stripProtobuf((*bp)[:0], data, d.kinds)
	if ok {
		data = out
	}
	obj, kind, err := d.Serializer.Decode(data, gvk, into)
	if cap(out) <= 1<<20 { // do not keep a huge list's buffer around
		*bp = out[:0]
		stripBufs.Put(bp)
	}
	return obj, kind, err
}

func (d leanDecoder) Encode(obj runtime.Object, w io.Writer) error {
	return d.Serializer.Encode(obj, w)
}

// leanKey marks a list or watch request whose objects may be decoded
// without managedFields and the last-applied annotation: the informer
// drops them anyway.
type leanKey struct{}

// withLean marks ctx for lean decoding; sources that cannot skip fields on
// the wire ignore the mark.
func withLean(ctx context.Context) context.Context { return context.WithValue(ctx, leanKey{}, true) }

func isLean(ctx context.Context) bool { v, _ := ctx.Value(leanKey{}).(bool); return v }

// leanLW marks every request it passes on for lean decoding, and its
// watches and prefetched paginated lists with the informer's specReuse
// (if not nil), lent to watches for the Watch call (see lent). The marks
// travel in the context, so ListerWatcher wrappers in between keep them.
type leanLW struct {
	ListerWatcher
	reuse *specReuse
}

func (l leanLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListerWatcher.List(withLean(ctx), opts)
}

func (l leanLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	ctx, revoke := withSpecReuse(withLean(ctx), l.reuse)
	defer revoke() // the stream took it if it uses it; the request's context must not keep it
	return l.ListerWatcher.Watch(ctx, opts)
}

// canListPages and listPages pass the wrapped ListerWatcher's prefetching
// paginated list on (listprefetch.go), marked for lean decoding like List.
func (l leanLW) canListPages() bool {
	ps, ok := l.ListerWatcher.(pageSource)
	return ok && ps.canListPages()
}

func (l leanLW) listPages(ctx context.Context, opts metav1.ListOptions, each func(runtime.Object) error) error {
	ctx, revoke := withSpecReuse(withLean(ctx), l.reuse)
	defer revoke() // the pages are read within the call
	return l.ListerWatcher.(pageSource).listPages(ctx, opts, each)
}
