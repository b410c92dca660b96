package cache

import (
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
