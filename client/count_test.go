package client

import "testing"

func TestClassify(t *testing.T) {
	cases := []struct {
		method, path string
		watch        bool
		want         RequestKind
	}{
		{"GET", "/api/v1/namespaces/ns/configmaps", false, RequestKind{"list", "configmaps"}},
		{"GET", "/api/v1/namespaces/ns/configmaps", true, RequestKind{"watch", "configmaps"}},
		{"GET", "/api/v1/namespaces/ns/configmaps/a", false, RequestKind{"get", "configmaps"}},
		{"GET", "/api/v1/configmaps", false, RequestKind{"list", "configmaps"}},
		{"POST", "/api/v1/namespaces/ns/configmaps", false, RequestKind{"create", "configmaps"}},
		{"PUT", "/apis/demo.skiff.dev/v1/namespaces/ns/foos/x/status", false, RequestKind{"update", "foos.demo.skiff.dev/status"}},
		{"PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", false, RequestKind{"patch", "deployments.apps"}},
		{"DELETE", "/api/v1/namespaces/ns/pods", false, RequestKind{"deletecollection", "pods"}},
		{"DELETE", "/api/v1/namespaces/ns/pods/p", false, RequestKind{"delete", "pods"}},
		{"GET", "/api/v1/namespaces/ns", false, RequestKind{"get", "namespaces"}},
		{"GET", "/api/v1/namespaces", false, RequestKind{"list", "namespaces"}},
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l", false, RequestKind{"get", "leases.coordination.k8s.io"}},
		{"GET", "/apis", false, RequestKind{"get", "discovery"}},
		{"GET", "/api/v1", false, RequestKind{"get", "discovery"}},
		{"GET", "/version", false, RequestKind{"get", "/version"}},
	}
	for _, tc := range cases {
		if got := Classify(tc.method, tc.path, tc.watch); got != tc.want {
			t.Errorf("Classify(%s %s watch=%v) = %+v, want %+v", tc.method, tc.path, tc.watch, got, tc.want)
		}
	}
}

// FuzzClassify: any method and path classify without panicking, and the
// verb is never empty.
func FuzzClassify(f *testing.F) {
	for _, p := range []string{"/api/v1/namespaces/ns/configmaps", "/apis/a/b", "/", "", "/apis", "api//v1///", "/api/v1/namespaces/x/y/z/w/v"} {
		f.Add("GET", p, false)
		f.Add("DELETE", p, true)
	}
	f.Fuzz(func(t *testing.T, method, path string, watch bool) {
		if method == "" {
			method = "GET"
		}
		if k := Classify(method, path, watch); k.Verb == "" {
			t.Fatalf("empty verb for %s %q", method, path)
		}
	})
}
