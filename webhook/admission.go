package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/wI2L/jsondiff"
	"net/http"
	"reflect"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/skiffkit/skiff/client"
)

// Options configure one admission webhook: how it is served, and the
// entry generated for it in the webhook configuration. Every field states
// its default.
type Options struct {
	// Name is the webhook's name in its configuration, a qualified name
	// of at least three DNS labels. Default "<kind>.<group>.validate.skiff.dev"
	// (or ".mutate."), with group "core" for the core group, e.g.
	// "configmap.core.validate.skiff.dev".
	Name string
	// Path is where the server serves it. Default
	// "/validate-<group>-<version>-<kind>" (or "/mutate-..."), lower case,
	// dots as dashes, e.g. "/validate-core-v1-configmap".
	Path string
	// Operations the webhook is called for. Default Create and Update.
	Operations []Operation
	// FailurePolicy is what the API server does when the webhook cannot be
	// reached or fails: Fail (refuse the request) or Ignore. Default Fail.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// SideEffects declares whether the handler writes anything besides its
	// answer: None, or NoneOnDryRun (it has side effects, and skips them
	// when Request.DryRun is true). Default None.
	SideEffects admissionregistrationv1.SideEffectClass
	// TimeoutSeconds is how long the API server waits for an answer, 1 to
	// 30. Default 10.
	TimeoutSeconds int32
	// HandlerTimeout is the handler's deadline (its ctx ends then); when it
	// passes, the server answers OnTimeout at once, before the API server
	// gives up. It must be below TimeoutSeconds. Default TimeoutSeconds
	// minus a fifth of it, at most 2s less (800ms for 1s, 8s for 10s, 28s
	// for 30s).
	HandlerTimeout time.Duration
	// OnTimeout is the answer when the handler overruns HandlerTimeout.
	// Default: with FailurePolicy Fail, a denial with code 504 that says
	// the webhook timed out; with Ignore, an admission with a warning that
	// says so.
	OnTimeout *Response
	// MatchConditions are CEL expressions that must all hold for the API
	// server to call the webhook. Default none.
	MatchConditions []admissionregistrationv1.MatchCondition
	// NamespaceSelector and ObjectSelector narrow the calls by labels.
	// Default nil: every namespace and object.
	NamespaceSelector, ObjectSelector *metav1.LabelSelector
	// ReinvocationPolicy (mutating webhooks only): IfNeeded calls the
	// webhook again when a later mutating webhook changed the object.
	// Default Never. Setting it on a validating webhook is an error.
	ReinvocationPolicy admissionregistrationv1.ReinvocationPolicyType
	// Scheme maps T to its group/version/kind, which names the rule in
	// the configuration and is the only kind the webhook accepts. Default
	// client-go's built-in types; register CRD types in a scheme of your
	// own.
	Scheme *runtime.Scheme
}

// Webhook is an admission webhook to serve: a *Validating[T] or a
// *Mutating[T]. Register it with Server.Register.
type Webhook interface {
	// Name is the webhook's name in its configuration.
	Name() string
	// Path is where the server serves it.
	Path() string
	hook() *hook
}

// hook is what a typed webhook hands the server.
type hook struct {
	mutating bool
	gvk      schema.GroupVersionKind
	o        Options // defaulted
	// prepare decodes the request into the handler's type (a refusal is a
	// *BadRequestError) and returns the call of the handler, which the
	// server runs under the deadline.
	prepare func(*wireRequest) (func(context.Context) (Response, []byte, error), error)
}

// Validating is a validating admission webhook for objects of type T (a
// pointer type such as *corev1.ConfigMap). It is immutable and safe for
// concurrent use.
type Validating[T client.Object] struct{ h hook }

// Mutating is a mutating admission webhook for objects of type T. It is
// immutable and safe for concurrent use.
type Mutating[T client.Object] struct{ h hook }

// NewValidating returns a webhook that answers each request with
// validate's decision. validate gets a ctx that ends at HandlerTimeout and
// must not change the request's objects.
func NewValidating[T client.Object](validate func(ctx context.Context, req Request[T]) Response, o Options) (*Validating[T], error) {
	h, err := newHook[T](false, validate, o)
	if err != nil {
		return nil, err
	}
	return &Validating[T]{h: *h}, nil
}

// NewMutating returns a webhook whose mutate changes req.Object (on Create
// and Update; it is the handler's own copy) and decides. When mutate
// allows, the server answers with the RFC 6902 JSON patch of what mutate
// changed: from the object as the API server sent it to req.Object as
// marshalled by encoding/json, and, when that patch would remove anything,
// from the sent object as T knows it — so fields T does not know (a Go type
// older than the served version) are never removed by the patch.
// A denial carries no patch.
func NewMutating[T client.Object](mutate func(ctx context.Context, req Request[T]) Response, o Options) (*Mutating[T], error) {
	h, err := newHook[T](true, mutate, o)
	if err != nil {
		return nil, err
	}
	return &Mutating[T]{h: *h}, nil
}

// Name is the webhook's name in its configuration.
func (v *Validating[T]) Name() string { return v.h.o.Name }

// Path is where the server serves the webhook.
func (v *Validating[T]) Path() string { return v.h.o.Path }
func (v *Validating[T]) hook() *hook  { return &v.h }

// Name is the webhook's name in its configuration.
func (m *Mutating[T]) Name() string { return m.h.o.Name }

// Path is where the server serves the webhook.
func (m *Mutating[T]) Path() string { return m.h.o.Path }
func (m *Mutating[T]) hook() *hook  { return &m.h }

func newHook[T client.Object](mutating bool, fn func(context.Context, Request[T]) Response, o Options) (*hook, error) {
	if fn == nil {
		return nil, fmt.Errorf("webhook: nil handler for %v", reflect.TypeFor[T]())
	}
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("webhook: %v is not a pointer to a struct", typ)
	}
	elem := typ.Elem()
	newT := func() T { return reflect.New(elem).Interface().(T) }
	if o.Scheme == nil {
		o.Scheme = clientgoscheme.Scheme
	}
	gvks, unversioned, err := o.Scheme.ObjectKinds(newT())
	if err != nil || unversioned || len(gvks) == 0 {
		return nil, fmt.Errorf("webhook: %v is not a registered, versioned kind in the scheme (add it with AddKnownTypes): %v", typ, err)
	}
	gvk := gvks[0]
	if err := defaults(&o, gvk, mutating); err != nil {
		return nil, err
	}
	h := &hook{mutating: mutating, gvk: gvk, o: o}
	h.prepare = func(w *wireRequest) (func(context.Context) (Response, []byte, error), error) {
		req, err := typedRequest(w, gvk, newT)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (Response, []byte, error) {
			resp := fn(ctx, req)
			if !mutating || !resp.Allowed || !present(w.Object) || (w.Operation != Create && w.Operation != Update) {
				return resp, nil, nil
			}
			patch, err := jsonPatch(w.Object, req.Object, func() (any, error) {
				orig := newT()
				return orig, json.Unmarshal(w.Object, orig)
			})
			return resp, patch, err
		}, nil
	}
	return h, nil
}

// typedRequest decodes w's objects into new values of T, refusing a kind
// that is not gvk (except on Connect, whose object is the connect options).
func typedRequest[T client.Object](w *wireRequest, gvk schema.GroupVersionKind, newT func() T) (Request[T], error) {
	kind := schema.GroupVersionKind(w.Kind)
	req := Request[T]{
		UID: w.UID, Operation: w.Operation, Kind: kind,
		Resource: schema.GroupVersionResource(w.Resource), SubResource: w.SubResource,
		Namespace: w.Namespace, Name: w.Name, RawObject: w.Object, UserInfo: w.UserInfo,
		DryRun: w.DryRun != nil && *w.DryRun,
	}
	if w.Operation == Connect {
		return req, nil
	}
	if kind != gvk {
		return req, badRequest("kind", w.UID, "request %s is for kind %s, this webhook serves only %s", w.UID, fmtGVK(kind), fmtGVK(gvk))
	}
	if w.Operation != Delete {
		if !present(w.Object) {
			return req, badRequest("object", w.UID, "%s request %s has no object", w.Operation, w.UID)
		}
		req.Object = newT()
		if err := json.Unmarshal(w.Object, req.Object); err != nil {
			return req, badRequest("object", w.UID, "decode the object of request %s into %s: %v", w.UID, fmtGVK(gvk), err)
		}
	}
	if present(w.OldObject) {
		req.OldObject = newT()
		if err := json.Unmarshal(w.OldObject, req.OldObject); err != nil {
			return req, badRequest("object", w.UID, "decode the oldObject of request %s into %s: %v", w.UID, fmtGVK(gvk), err)
		}
	} else if w.Operation == Update || w.Operation == Delete {
		return req, badRequest("object", w.UID, "%s request %s has no oldObject", w.Operation, w.UID)
	}
	return req, nil
}

// jsonPatch is the RFC 6902 patch from raw to obj as JSON; nil if they are
// equal. A patch that removes something may be removing a field obj's type
// does not know (the API server's object is newer than the Go type) rather
// than one the handler dropped, so then the patch is computed again from
// original (raw decoded into the type, before the handler) to obj: only
// what the handler changed is patched, and unknown fields are left alone.
// The common patch, adds and replaces only, costs no second decode.
func jsonPatch(raw []byte, obj any, original func() (any, error)) ([]byte, error) {
	after, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("marshal the mutated object: %w", err)
	}
	p, err := diffJSON(raw, after)
	if err != nil {
		return nil, fmt.Errorf("compute the JSON patch: %w", err)
	}
	if removes(p) {
		o, err := original()
		if err != nil {
			return nil, fmt.Errorf("decode the original object: %w", err)
		}
		before, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("marshal the original object: %w", err)
		}
		if p, err = diffJSON(before, after); err != nil {
			return nil, fmt.Errorf("compute the JSON patch: %w", err)
		}
	}
	if len(p) == 0 {
		return nil, nil
	}
	return json.Marshal(p)
}

func removes(p jsondiff.Patch) bool {
	for _, op := range p {
		if op.Type == jsondiff.OperationRemove {
			return true
		}
	}
	return false
}

func fmtGVK(gvk schema.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Version + "/" + gvk.Kind
	}
	return gvk.Group + "/" + gvk.Version + "/" + gvk.Kind
}

// defaults fills o's defaults and checks it.
func defaults(o *Options, gvk schema.GroupVersionKind, mutating bool) error {
	verb := "validate"
	if mutating {
		verb = "mutate"
	}
	group := gvk.Group
	if group == "" {
		group = "core"
	}
	kind := strings.ToLower(gvk.Kind)
	if o.Name == "" {
		o.Name = kind + "." + group + "." + verb + ".skiff.dev"
	}
	if strings.Count(o.Name, ".") < 2 {
		return fmt.Errorf("webhook: name %q is not qualified (it needs at least three DNS labels, as in %s.example.com)", o.Name, o.Name)
	}
	if o.Path == "" {
		o.Path = "/" + verb + "-" + strings.ReplaceAll(group, ".", "-") + "-" + gvk.Version + "-" + kind
	}
	if !strings.HasPrefix(o.Path, "/") {
		return fmt.Errorf("webhook %s: path %q does not start with /", o.Name, o.Path)
	}
	if len(o.Operations) == 0 {
		o.Operations = []Operation{Create, Update}
	}
	for _, op := range o.Operations {
		switch op {
		case Create, Update, Delete, Connect:
		default:
			return fmt.Errorf("webhook %s: unknown operation %q", o.Name, op)
		}
	}
	switch o.FailurePolicy {
	case "":
		o.FailurePolicy = admissionregistrationv1.Fail
	case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
	default:
		return fmt.Errorf("webhook %s: unknown failure policy %q (Fail or Ignore)", o.Name, o.FailurePolicy)
	}
	switch o.SideEffects {
	case "":
		o.SideEffects = admissionregistrationv1.SideEffectClassNone
	case admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.SideEffectClassNoneOnDryRun:
	default:
		return fmt.Errorf("webhook %s: side effects %q are not allowed by admissionregistration.k8s.io/v1 (None or NoneOnDryRun)", o.Name, o.SideEffects)
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 10
	}
	if o.TimeoutSeconds < 1 || o.TimeoutSeconds > 30 {
		return fmt.Errorf("webhook %s: timeoutSeconds %d is not within 1 to 30", o.Name, o.TimeoutSeconds)
	}
	timeout := time.Duration(o.TimeoutSeconds) * time.Second
	if o.HandlerTimeout == 0 {
		o.HandlerTimeout = timeout - min(timeout/5, 2*time.Second)
	}
	if o.HandlerTimeout < 0 || o.HandlerTimeout >= timeout {
		return fmt.Errorf("webhook %s: handler timeout %v is not below timeoutSeconds (%v)", o.Name, o.HandlerTimeout, timeout)
	}
	if o.OnTimeout == nil {
		msg := fmt.Sprintf("webhook %s did not decide within %v", o.Name, o.HandlerTimeout)
		r := DenyWithCode(http.StatusGatewayTimeout, msg)
		if o.FailurePolicy == admissionregistrationv1.Ignore {
			r = Allow(msg + "; admitted (failurePolicy Ignore)")
		}
		o.OnTimeout = &r
	}
	switch o.ReinvocationPolicy {
	case "":
		if mutating {
			o.ReinvocationPolicy = admissionregistrationv1.NeverReinvocationPolicy
		}
	case admissionregistrationv1.NeverReinvocationPolicy, admissionregistrationv1.IfNeededReinvocationPolicy:
		if !mutating {
			return fmt.Errorf("webhook %s: a validating webhook has no reinvocation policy", o.Name)
		}
	default:
		return fmt.Errorf("webhook %s: unknown reinvocation policy %q (Never or IfNeeded)", o.Name, o.ReinvocationPolicy)
	}
	o.Operations = append([]Operation(nil), o.Operations...)
	return nil
}
