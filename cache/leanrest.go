package cache

import (
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// LeanSerializer returns ns with its protobuf decoder wrapped so that it
// cuts metadata.managedFields and the last-applied annotation out of the
// wire bytes of T's objects and lists (T's kinds looked up in s) before
// decoding them; other kinds are decoded as received. ok is false when T is
// not a protobuf message laid out as the rewriter expects (ObjectMeta in
// field 1, list items in field 2); then use ns as it is.
func LeanSerializer[T Object](ns runtime.NegotiatedSerializer, s *runtime.Scheme) (_ runtime.NegotiatedSerializer, ok bool) {
	kinds, ok := protobufKinds[T](s)
	if !ok {
		return ns, false
	}
	return newLeanCodecs(ns, kinds), true
}

// LeanRESTSource is RESTSource whose informer reads through lean instead
// of c while it runs DefaultTransform and does not ask for FullDecode
// (Options.FullDecode): lean is a REST client like c whose serializer comes
// from LeanSerializer, so the fields the transform would drop are never
// decoded.
func LeanRESTSource[T Object](c, lean rest.Interface, gvr schema.GroupVersionResource, scope Scope) Source[T] {
	src := RESTSource[T](c, gvr, scope)
	src.LW.(*restLW).lean = lean
	return src
}

// WithProtoWatch makes the informer of src (from RESTSource or
// LeanRESTSource) read its watches with Skiff's own protobuf watch-frame
// reader on the reflector's goroutine, as TypedSource does, instead of
// client-go's StreamWatcher (a goroutine and a channel hop per event).
// cfg is a REST config for T's group and version whose serializer decodes
// protobuf (used for events of other kinds, such as a Status); the watch
// requests go through a REST client built from it, not rate limited, that
// speaks HTTP/1.1 on a connection of its own unless cfg sets
// TLSClientConfig.NextProtos or a Transport (as WithWatchConfig's). T's
// kinds are looked up in s. It returns src unchanged when T is not a
// protobuf message the reader can decode. Its watches go through the
// stream client shared by every source built from an equal cfg (see
// streamconn.go); WithProtoWatchAndClient names the client.
func WithProtoWatch[T Object](src Source[T], cfg *rest.Config, s *runtime.Scheme) (Source[T], error) {
	return WithProtoWatchAndClient(src, cfg, s, nil)
}

// WithProtoWatchAndClient is WithProtoWatch whose watch requests go
// through hc, a client from NewStreamClient for cfg's server and
// credentials that the caller shares among its sources and owns; nil hc
// is WithProtoWatch's shared client.
func WithProtoWatchAndClient[T Object](src Source[T], cfg *rest.Config, s *runtime.Scheme, hc *http.Client) (Source[T], error) {
	lw, ok := src.LW.(*restLW)
	if !ok {
		return src, fmt.Errorf("cache: WithProtoWatch needs a source from RESTSource or LeanRESTSource, got %T", src.LW)
	}
	kinds, ok := protobufKinds[T](s)
	if !ok {
		return src, nil
	}
	stream, err := newProtoStream[T](cfg, kinds, hc)
	if err != nil {
		return src, fmt.Errorf("cache: protobuf watch for %s: %w", src.Resource, err)
	}
	lw.stream = stream
	return src, nil
}
