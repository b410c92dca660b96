package client

import (
	"fmt"
	"reflect"

	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
)

// informerSource returns the source of the client's informer of T: over
// the client's REST client for T's group and version and, for built-in
// (protobuf) types, a second one whose decoder cuts managedFields and the
// last-applied annotation out of the wire bytes (cache.LeanRESTSource), as
// cache.TypedSource does. Both share the client's HTTP client. Watches,
// built-in and custom alike, go through a REST client of their own built
// from the client's config: HTTP/1.1 on a connection per watch, as
// cache.TypedSource's and cache.CustomSourceFor's, all through the
// client's one stream HTTP client — except for a built-in type the lean
// decoder does not know, whose watch shares the client's REST client
// (HTTP/2).
func informerSource[T Object](c *Client, m *mapping, scope cache.Scope) (cache.Source[T], error) {
	stream, err := c.stream()
	if err != nil {
		return cache.Source[T]{}, fmt.Errorf("client: watch client for %v: %w", m.gvr, err)
	}
	if !builtIn(m.gvk.GroupVersion()) {
		// Wire bytes straight into T.
		return cache.WithWatchConfigAndClient(cache.CustomSource[T](m.rc, m.gvr, scope), c.restConfig(m.gvk.GroupVersion()), stream)
	}
	lean, ok, err := c.leanClient(m, reflect.TypeFor[T](), func(cfg *rest.Config) bool {
		ns, ok := cache.LeanSerializer[T](cfg.NegotiatedSerializer, c.scheme)
		cfg.NegotiatedSerializer = ns
		return ok
	})
	if err != nil {
		return cache.Source[T]{}, err
	}
	if !ok {
		return cache.RESTSource[T](m.rc, m.gvr, scope), nil
	}
	// Watches read on the reflector's goroutine, as cache.TypedSource's.
	return cache.WithProtoWatchAndClient(cache.LeanRESTSource[T](m.rc, lean, m.gvr, scope), c.restConfig(m.gvk.GroupVersion()), c.scheme, stream)
}

// leanClient returns the lean REST client of typ (built once per type, as
// restClient builds its group-version's, with the serializer that lean
// installs); ok is false when typ has none.
func (c *Client) leanClient(m *mapping, typ reflect.Type, lean func(*rest.Config) bool) (*rest.RESTClient, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc, ok := c.leanRest[typ]; ok {
		return rc, rc != nil, nil
	}
	cfg := c.restConfig(m.gvk.GroupVersion())
	if !lean(cfg) {
		c.leanRest[typ] = nil
		return nil, false, nil
	}
	rc, err := rest.RESTClientForConfigAndClient(cfg, c.http)
	if err != nil {
		return nil, false, fmt.Errorf("client: lean REST client for %v: %w", typ, err)
	}
	c.leanRest[typ] = rc
	return rc, true, nil
}
