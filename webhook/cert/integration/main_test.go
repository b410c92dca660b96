// Package integration tests webhook/cert against the local control plane:
// the API server calls a webhook served with the package's certificates.
package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook/cert"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

var (
	vwcGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

func clients(t *testing.T) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

// run starts src.Run and stops it at test end, failing the test if it
// returned an error.
func run(t *testing.T, src interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := src.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// createCluster creates a cluster-scoped object and deletes it at test end.
func createCluster(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	if _, err := dyn.Resource(gvr).Create(context.Background(), u, createOpts); err != nil {
		t.Fatalf("create %s %s: %v", gvr.Resource, u.GetName(), err)
	}
	t.Cleanup(func() {
		if err := dyn.Resource(gvr).Delete(context.Background(), u.GetName(), deleteOpts); err != nil {
			t.Errorf("delete %s %s: %v", gvr.Resource, u.GetName(), err)
		}
	})
}

func servedFingerprint(src interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}) (string, error) {
	c, err := src.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		return "", err
	}
	return cert.Fingerprint(c.Certificate[0]), nil
}

func bundleCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func waitReady(t *testing.T, s *cert.Secret) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("certificate not loaded within 30s")
	}
}
