package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiffkit/skiff/client"
)

// ConfigOptions say how the generated webhook configurations reach the
// server. Exactly one of Service and URL is set.
type ConfigOptions struct {
	// Name names the ValidatingWebhookConfiguration and the
	// MutatingWebhookConfiguration (cluster-scoped objects). Required.
	Name string
	// Service is the Service in front of the server's replicas; the API
	// server calls https://<name>.<namespace>.svc:<port><path>.
	Service *ServiceRef
	// URL is the server's base URL, such as "https://127.0.0.1:9443" for
	// local development; each webhook's path is appended. It must be https
	// and carry no query or fragment.
	URL string
	// CABundle is the PEM bundle the API server trusts for the serving
	// certificate. Default: the server's CertificateSource's, if it is a
	// CABundler; else none (the API server then trusts its system roots).
	CABundle []byte
	// Mapper resolves T's group/version/kind to its resource and scope.
	// Default: in ApplyConfigurations, the client's discovery-backed
	// mapper (client.RESTMapper); in Configurations and
	// ConfigurationsYAML, which have no client, the kind's plural guessed
	// in lower case ("configmaps", "ingresses", "networkpolicies") with
	// scope "*", right for built-in kinds and conventionally named CRDs.
	Mapper meta.RESTMapper
}

// ServiceRef names the Service the API server calls.
type ServiceRef struct {
	Namespace, Name string
	// Port is the Service's port. Default 443.
	Port int32
}

// Configurations returns the configurations for the registered webhooks:
// one rule per webhook for its type's group, version and resource and its
// operations, and every option of its Options. Either is nil when no
// webhook of that sort is registered. The objects are the caller's.
func (s *Server) Configurations(o ConfigOptions) (*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if o.Name == "" {
		return nil, nil, errors.New("webhook: ConfigOptions.Name is empty")
	}
	if (o.Service == nil) == (o.URL == "") {
		return nil, nil, fmt.Errorf("webhook: configuration %s: set exactly one of Service and URL", o.Name)
	}
	base := o.URL
	if base != "" {
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, nil, fmt.Errorf("webhook: configuration %s: URL %q is not an https URL without query or fragment", o.Name, base)
		}
		base = strings.TrimSuffix(base, "/")
	}
	if o.Service != nil && (o.Service.Name == "" || o.Service.Namespace == "") {
		return nil, nil, fmt.Errorf("webhook: configuration %s: the Service needs a name and a namespace", o.Name)
	}
	ca := o.CABundle
	if ca == nil {
		if b, ok := s.o.Certificates.(CABundler); ok {
			var err error
			if ca, err = b.CABundle(); err != nil {
				return nil, nil, fmt.Errorf("webhook: configuration %s: CA bundle: %w", o.Name, err)
			}
		}
	}
	s.mu.Lock()
	hooks := append([]*hook(nil), s.hooks...)
	s.mu.Unlock()

	var vwc *admissionregistrationv1.ValidatingWebhookConfiguration
	var mwc *admissionregistrationv1.MutatingWebhookConfiguration
	names := map[string]bool{}
	for _, h := range hooks {
		if names[h.o.Name] {
			return nil, nil, fmt.Errorf("webhook: configuration %s: two webhooks named %s", o.Name, h.o.Name)
		}
		names[h.o.Name] = true
		rule, err := h.rule(o.Mapper)
		if err != nil {
			return nil, nil, fmt.Errorf("webhook: configuration %s: %w", o.Name, err)
		}
		cc := admissionregistrationv1.WebhookClientConfig{CABundle: ca}
		if o.Service != nil {
			port := o.Service.Port
			if port == 0 {
				port = 443
			}
			path := h.o.Path
			cc.Service = &admissionregistrationv1.ServiceReference{Namespace: o.Service.Namespace, Name: o.Service.Name, Port: &port, Path: &path}
		} else {
			u := base + h.o.Path
			cc.URL = &u
		}
		failure, side, timeout := h.o.FailurePolicy, h.o.SideEffects, h.o.TimeoutSeconds
		if !h.mutating {
			if vwc == nil {
				vwc = &admissionregistrationv1.ValidatingWebhookConfiguration{
					TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
					ObjectMeta: metav1.ObjectMeta{Name: o.Name}}
			}
			vwc.Webhooks = append(vwc.Webhooks, admissionregistrationv1.ValidatingWebhook{
				Name: h.o.Name, ClientConfig: cc, Rules: []admissionregistrationv1.RuleWithOperations{rule},
				FailurePolicy: &failure, SideEffects: &side, TimeoutSeconds: &timeout,
				NamespaceSelector: h.o.NamespaceSelector.DeepCopy(), ObjectSelector: h.o.ObjectSelector.DeepCopy(),
				MatchConditions: append([]admissionregistrationv1.MatchCondition(nil), h.o.MatchConditions...), AdmissionReviewVersions: []string{"v1"},
			})
			continue
		}
		if mwc == nil {
			mwc = &admissionregistrationv1.MutatingWebhookConfiguration{
				TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
				ObjectMeta: metav1.ObjectMeta{Name: o.Name}}
		}
		reinvoke := h.o.ReinvocationPolicy
		mwc.Webhooks = append(mwc.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name: h.o.Name, ClientConfig: cc, Rules: []admissionregistrationv1.RuleWithOperations{rule},
			FailurePolicy: &failure, SideEffects: &side, TimeoutSeconds: &timeout,
			NamespaceSelector: h.o.NamespaceSelector.DeepCopy(), ObjectSelector: h.o.ObjectSelector.DeepCopy(),
			MatchConditions: append([]admissionregistrationv1.MatchCondition(nil), h.o.MatchConditions...), AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy: &reinvoke,
		})
	}
	return vwc, mwc, nil
}

// rule is the webhook's rule: its type's group, version and resource, its
// operations.
func (h *hook) rule(mapper meta.RESTMapper) (admissionregistrationv1.RuleWithOperations, error) {
	plural, _ := meta.UnsafeGuessKindToResource(h.gvk)
	resource, scope := plural.Resource, admissionregistrationv1.AllScopes
	if mapper != nil {
		m, err := mapper.RESTMapping(h.gvk.GroupKind(), h.gvk.Version)
		if err != nil {
			return admissionregistrationv1.RuleWithOperations{}, fmt.Errorf("webhook %s: resource of %s: %w", h.o.Name, fmtGVK(h.gvk), err)
		}
		resource = m.Resource.Resource
		if m.Scope.Name() == meta.RESTScopeNameRoot {
			scope = admissionregistrationv1.ClusterScope
		} else {
			scope = admissionregistrationv1.NamespacedScope
		}
	}
	ops := make([]admissionregistrationv1.OperationType, len(h.o.Operations))
	for i, op := range h.o.Operations {
		ops[i] = admissionregistrationv1.OperationType(op)
	}
	return admissionregistrationv1.RuleWithOperations{
		Operations: ops,
		Rule: admissionregistrationv1.Rule{APIGroups: []string{h.gvk.Group}, APIVersions: []string{h.gvk.Version},
			Resources: []string{resource}, Scope: &scope},
	}, nil
}

// ConfigurationsYAML is Configurations as a YAML stream (documents
// separated by "---"), for GitOps.
func (s *Server) ConfigurationsYAML(o ConfigOptions) ([]byte, error) {
	vwc, mwc, err := s.Configurations(o)
	if err != nil {
		return nil, err
	}
	var objs []any
	if vwc != nil {
		objs = append(objs, vwc)
	}
	if mwc != nil {
		objs = append(objs, mwc)
	}
	var out bytes.Buffer
	for _, obj := range objs {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("webhook: configuration %s as YAML: %w", o.Name, err)
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

// FieldOwner is the field manager ApplyConfigurations applies as.
const FieldOwner = "skiff-webhook"

// ApplyConfigurations server-side applies Configurations through c (as
// FieldOwner, taking over conflicting fields), so that the cluster's
// configurations say what the code registered. A webhook removed from the
// code disappears from the applied configuration; a configuration with no
// webhook left is not deleted.
func (s *Server) ApplyConfigurations(ctx context.Context, c *client.Client, o ConfigOptions) error {
	if o.Mapper == nil {
		o.Mapper = c.RESTMapper()
	}
	vwc, mwc, err := s.Configurations(o)
	if err != nil {
		return err
	}
	if vwc != nil {
		if err := c.Apply(ctx, vwc, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("webhook: apply ValidatingWebhookConfiguration %s: %w", o.Name, err)
		}
	}
	if mwc != nil {
		if err := c.Apply(ctx, mwc, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("webhook: apply MutatingWebhookConfiguration %s: %w", o.Name, err)
		}
	}
	return nil
}
