package conversion

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/client"
)

// ClientConfig says how the API server reaches the webhook: exactly one of
// URL and Service, and the CA bundle that signed the webhook's serving
// certificate.
type ClientConfig struct {
	// URL is the webhook's https URL (host, optional port and path; no user,
	// query or fragment). For webhooks outside the cluster, such as a local
	// control plane calling a loopback server.
	URL string
	// Service is the in-cluster Service in front of the webhook.
	Service *Service
	// CABundle is PEM: the certificates that verify the webhook's serving
	// certificate. Default empty: the API server's system trust roots.
	CABundle []byte
}

// Service names an in-cluster Service.
type Service struct {
	Namespace, Name string
	// Path is the URL path the webhook is mounted at, starting with "/".
	// Default "/".
	Path string
	// Port is the Service port. Default 443.
	Port int32
}

// Stanza returns the CRD's spec.conversion for cc: strategy Webhook, the
// client config, the CA bundle and conversionReviewVersions ["v1"] (the only
// version this package speaks). The value holds only JSON types (maps,
// []any, strings, int64), so it can be set into an unstructured CRD with
// unstructured.SetNestedMap or printed as YAML. It fails, naming the field,
// if cc is not valid.
func Stanza(cc ClientConfig) (map[string]any, error) {
	clientConfig := map[string]any{}
	switch {
	case cc.URL != "" && cc.Service != nil:
		return nil, fmt.Errorf("conversion: client config has both URL %q and Service %s/%s; set one", cc.URL, cc.Service.Namespace, cc.Service.Name)
	case cc.URL != "":
		if err := checkURL(cc.URL); err != nil {
			return nil, err
		}
		clientConfig["url"] = cc.URL
	case cc.Service != nil:
		s := cc.Service
		if s.Namespace == "" || s.Name == "" {
			return nil, fmt.Errorf("conversion: client config Service %q/%q needs a namespace and a name", s.Namespace, s.Name)
		}
		port := s.Port
		if port == 0 {
			port = 443
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("conversion: client config Service %s/%s: port %d is out of range 1-65535", s.Namespace, s.Name, s.Port)
		}
		svc := map[string]any{"namespace": s.Namespace, "name": s.Name, "port": int64(port)}
		if s.Path != "" {
			if !strings.HasPrefix(s.Path, "/") {
				return nil, fmt.Errorf("conversion: client config Service %s/%s: path %q must start with /", s.Namespace, s.Name, s.Path)
			}
			svc["path"] = s.Path
		}
		clientConfig["service"] = svc
	default:
		return nil, fmt.Errorf("conversion: client config has neither URL nor Service")
	}
	if len(cc.CABundle) > 0 {
		if err := checkCABundle(cc.CABundle); err != nil {
			return nil, err
		}
		clientConfig["caBundle"] = base64.StdEncoding.EncodeToString(cc.CABundle)
	}
	return map[string]any{
		"strategy": "Webhook",
		"webhook": map[string]any{
			"clientConfig":             clientConfig,
			"conversionReviewVersions": []any{"v1"},
		},
	}, nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("conversion: client config URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("conversion: client config URL %q: scheme must be https", raw)
	case u.Host == "":
		return fmt.Errorf("conversion: client config URL %q has no host", raw)
	case u.User != nil:
		return fmt.Errorf("conversion: client config URL %q: user information is not allowed", raw)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("conversion: client config URL %q: a query is not allowed", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("conversion: client config URL %q: a fragment is not allowed", raw)
	}
	return nil
}

// checkCABundle insists on at least one PEM certificate and nothing else.
func checkCABundle(b []byte) error {
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if strings.TrimSpace(string(rest)) != "" {
				return fmt.Errorf("conversion: CA bundle: data after certificate %d is not PEM", n)
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("conversion: CA bundle: PEM block %d is %q, want CERTIFICATE", n, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("conversion: CA bundle: certificate %d: %w", n, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("conversion: CA bundle holds no PEM certificate")
	}
	return nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ConfigureCRD sets the conversion stanza (see Stanza) of the
// CustomResourceDefinition that serves T, replacing any previous one. T's
// group/version/kind comes from the client's scheme and its resource name
// from the server's discovery, so the CRD must be installed and T's version
// served. The CRD must have structural schemas and preserveUnknownFields
// false, or the API server refuses the change (the error says so). It
// returns when the server has accepted the change; the API server starts
// calling the webhook shortly after, not necessarily at once.
func ConfigureCRD[T client.Object](ctx context.Context, c *client.Client, cc ClientConfig) error {
	stanza, err := Stanza(cc)
	if err != nil {
		return err
	}
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("conversion: %v is not a pointer to a struct", typ)
	}
	gvk, err := c.GVKFor(reflect.New(typ.Elem()).Interface().(T))
	if err != nil {
		return fmt.Errorf("conversion: configure the CRD of %v: %w", typ, err)
	}
	cfg := c.Config()
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("conversion: discovery for %s: %w", cfg.Host, err)
	}
	resources, err := disc.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return fmt.Errorf("conversion: find the resource of %v (%v): %w", gvk, typ, err)
	}
	plural := ""
	for _, r := range resources.APIResources {
		if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
			plural = r.Name
		}
	}
	if plural == "" {
		return fmt.Errorf("conversion: the server serves no resource of kind %v (%v) in %v", gvk.Kind, typ, gvk.GroupVersion())
	}
	name := plural + "." + gvk.Group
	patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/conversion", "value": stanza}})
	if err != nil {
		return fmt.Errorf("conversion: encode the patch of CRD %s: %w", name, err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("conversion: dynamic client for %s: %w", cfg.Host, err)
	}
	if _, err := dc.Resource(crdResource).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("conversion: set the conversion webhook of CRD %s: %w", name, err)
	}
	return nil
}
