package foo

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/managed"
)

// DefaultSize is the spec.size the mutating webhook gives a Foo without one.
const DefaultSize = 1

// MaxSize is the largest spec.size the validating webhook admits.
const MaxSize = 100

// Validate is the validating webhook's handler: it refuses a Foo whose
// spec.size is negative or above MaxSize, saying which and why.
func Validate(_ context.Context, req webhook.Request[*Foo]) webhook.Response {
	switch size := req.Object.Spec.Size; {
	case size != nil && *size < 0:
		return webhook.Deny(fmt.Sprintf("spec.size %d is negative; a Foo's size is 0 to %d", *size, MaxSize))
	case size != nil && *size > MaxSize:
		return webhook.Deny(fmt.Sprintf("spec.size %d is above the maximum %d", *size, MaxSize))
	}
	return webhook.Allow()
}

// Default is the mutating webhook's handler: it sets spec.size to
// DefaultSize when the Foo has none.
func Default(_ context.Context, req webhook.Request[*Foo]) webhook.Response {
	if req.Object.Spec.Size == nil { // req.Object is the handler's copy; Skiff sends the JSON patch
		size := int32(DefaultSize)
		req.Object.Spec.Size = &size
	}
	return webhook.Allow()
}

// Webhooks returns the Foo webhooks — Validate and Default, called on
// create and update — for a scheme that knows Foo (AddToScheme).
func Webhooks(scheme *runtime.Scheme) (*webhook.Validating[*Foo], *webhook.Mutating[*Foo], error) {
	v, err := webhook.NewValidating(Validate, webhook.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	m, err := webhook.NewMutating(Default, webhook.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	return v, m, nil
}

// SetupWebhooks serves the Foo webhooks from mgr (whose scheme knows Foo),
// with a certificate kept in a Secret and the webhook configurations
// applied under the name "foo" (package webhook/managed; o.Name defaults
// to "foo", o.Namespace is required). It returns the server, on which more
// handlers can be mounted before mgr.Start.
func SetupWebhooks(mgr *manager.Manager, o managed.Options) (*webhook.Server, error) {
	if o.Name == "" {
		o.Name = "foo"
	}
	srv, err := managed.Add(mgr, o)
	if err != nil {
		return nil, err
	}
	validate, defaults, err := Webhooks(mgr.Client().Scheme())
	if err != nil {
		return nil, err
	}
	if err := srv.Register(validate); err != nil {
		return nil, err
	}
	if err := srv.Register(defaults); err != nil {
		return nil, err
	}
	return srv, nil
}
