package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Namespace creates a namespace with a fresh name derived from the test's
// name and deletes it when the test ends (without waiting for it to go).
func Namespace(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv.Namespace: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := CreateNamespace(ctx, cs, t.Name())
	if err != nil {
		t.Fatalf("testenv.Namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("testenv.Namespace cleanup: delete %s: %v", ns, err)
		}
	})
	return ns
}

// CreateNamespace creates a namespace named after hint (lower-cased, reduced
// to a valid DNS label) plus a random suffix, and returns its name.
func CreateNamespace(ctx context.Context, cs kubernetes.Interface, hint string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: namespacePrefix(hint)}}
	got, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace for %q: %w", hint, err)
	}
	return got.Name, nil
}

// DeleteNamespaceAndWait deletes a namespace and waits until it is gone,
// which needs the namespace controller (on by default in testenv).
func DeleteNamespaceAndWait(ctx context.Context, cs kubernetes.Interface, ns string) error {
	err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still present: %w", ns, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// namespacePrefix turns a test name into a DNS-label prefix of at most 40
// characters ending in "-".
func namespacePrefix(hint string) string {
	var b strings.Builder
	dash := true // no leading dash
	for _, r := range strings.ToLower(hint) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" || s[0] < 'a' {
		s = "t" + s
	}
	return s + "-"
}
