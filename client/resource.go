package client

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ResourceFor returns the group/version/resource the server serves obj's Go
// type as (for *corev1.ConfigMap: "", "v1", "configmaps"). The first call
// for a type may run discovery; a type the server does not serve yet (a CRD
// installed since) refreshes discovery at most once a second.
func (c *Client) ResourceFor(obj runtime.Object) (schema.GroupVersionResource, error) {
	m, err := c.mappingFor(obj)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return m.gvr, nil
}

// RESTMapper returns the mapper the client resolves kinds with: the
// caller's Options.Mapper, or the one backed by the server's discovery.
// Callers must not reset it.
func (c *Client) RESTMapper() meta.RESTMapper { return c.mapper }
