package client

import (
	"net/http"
	"testing"

	"k8s.io/client-go/rest"
)

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

// TestInstallChainsAnExistingWrapperOnce: a transport wrapper already on
// the config runs exactly once per request after Install.
func TestInstallChainsAnExistingWrapperOnce(t *testing.T) {
	var prevCalls int
	cfg := &rest.Config{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) { prevCalls++; return rt.RoundTrip(r) })
	})
	var c RequestCounter
	c.Install(cfg)
	base := rtFunc(func(*http.Request) (*http.Response, error) { return &http.Response{StatusCode: 200}, nil })
	req, _ := http.NewRequest("GET", "https://example.invalid/api/v1/namespaces/a/pods", nil)
	if _, err := cfg.WrapTransport(base).RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if prevCalls != 1 || c.Total() != 1 {
		t.Fatalf("earlier wrapper ran %d times, counted %d requests; want 1 and 1", prevCalls, c.Total())
	}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
