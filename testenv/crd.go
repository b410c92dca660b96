package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ApplyCRDFiles reads CustomResourceDefinitions from YAML or JSON files (one
// or more documents each) and applies them as ApplyCRDs does.
func ApplyCRDFiles(ctx context.Context, cfg *rest.Config, paths ...string) ([]string, error) {
	var docs [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read CRD file: %w", err)
		}
		docs = append(docs, b)
	}
	return ApplyCRDs(ctx, cfg, docs...)
}

// ApplyCRDs creates or updates every CustomResourceDefinition in the given
// YAML/JSON documents, then waits until each is Established and its
// resources are served by discovery. It returns the CRD names. A document
// that is not a CRD, or does not parse, is an error naming its position.
func ApplyCRDs(ctx context.Context, cfg *rest.Config, docs ...[]byte) ([]string, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	client := dc.Resource(crdGVR)
	var crds []*unstructured.Unstructured
	for i, doc := range docs {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(doc), 4096)
		for j := 0; ; j++ {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("CRD document %d, object %d: %w", i, j, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if u.GetKind() != "CustomResourceDefinition" || u.GroupVersionKind().Group != "apiextensions.k8s.io" {
				return nil, fmt.Errorf("CRD document %d, object %d: kind %q (%s) is not an apiextensions.k8s.io CustomResourceDefinition", i, j, u.GetKind(), u.GetAPIVersion())
			}
			if u.GetName() == "" {
				return nil, fmt.Errorf("CRD document %d, object %d: no metadata.name", i, j)
			}
			crds = append(crds, u)
		}
	}
	var names []string
	for _, u := range crds {
		_, err := client.Create(ctx, u, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *unstructured.Unstructured
			if cur, err = client.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
				u.SetResourceVersion(cur.GetResourceVersion())
				_, err = client.Update(ctx, u, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return nil, fmt.Errorf("apply CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, u := range crds {
		if err := waitEstablished(ctx, client, disc, u); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func waitEstablished(ctx context.Context, client dynamic.ResourceInterface, disc discovery.DiscoveryInterface, want *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(want.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(want.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(want.Object, "spec", "versions")
	var served []string
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if s, _ := m["served"].(bool); s {
			name, _ := m["name"].(string)
			served = append(served, name)
		}
	}
	last := "not yet Established"
	for {
		if ok, why := crdReady(ctx, client, disc, want.GetName(), group, plural, served); ok {
			return nil
		} else {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s: %s: %w", want.GetName(), last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func crdReady(ctx context.Context, client dynamic.ResourceInterface, disc discovery.DiscoveryInterface, name, group, plural string, versions []string) (bool, string) {
	cur, err := client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
	established := false
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "NamesAccepted" && m["status"] == "False" {
			return false, fmt.Sprintf("names not accepted: %v", m["message"])
		}
		if m["type"] == "Established" && m["status"] == "True" {
			established = true
		}
	}
	if !established {
		return false, "not yet Established"
	}
	for _, v := range versions {
		list, err := disc.ServerResourcesForGroupVersion(group + "/" + v)
		if err != nil {
			return false, fmt.Sprintf("%s/%s not in discovery: %v", group, v, err)
		}
		found := false
		for _, r := range list.APIResources {
			found = found || r.Name == plural
		}
		if !found {
			return false, fmt.Sprintf("%s not yet served in %s/%s", plural, group, v)
		}
	}
	return true, ""
}
