package cert

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/skiffkit/skiff/testenv"
)

// testClock is a clock the test sets.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// When someone else changes a caBundle the injector keeps, the injector
// patches it back and counts the object as carrying the bundle only from
// the re-patch: carriedSince restarts, so the grace period before a CA
// switch is counted from when the bundle is really back.
func TestInjectorRepatchRestartsCarriedSince(t *testing.T) {
	dyn, err := dynamic.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	name := "cert-repatch-" + strings.TrimPrefix(testenv.Namespace(t, env.Config()), "skiff-")
	vwc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingWebhookConfiguration",
		"metadata":   map[string]any{"name": name},
		"webhooks": []any{map[string]any{
			"name":                    "check.cert.skiff.dev",
			"clientConfig":            map[string]any{"url": "https://127.0.0.1:1/never"},
			"admissionReviewVersions": []any{"v1"},
			"sideEffects":             "None",
			// Matches no namespace: the webhook is never called.
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"cert.skiff.dev/never": "true"}},
			"rules": []any{map[string]any{
				"apiGroups": []any{""}, "apiVersions": []any{"v1"}, "operations": []any{"CREATE"}, "resources": []any{"configmaps"},
			}},
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dyn.Resource(validatingGVR).Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ValidatingWebhookConfiguration %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := dyn.Resource(validatingGVR).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete ValidatingWebhookConfiguration %s: %v", name, err)
		}
	})
	caBundle := func() (string, error) {
		u, err := dyn.Resource(validatingGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		v, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
		return v, nil
	}

	clock := &testClock{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.set(t0)
	in := newInjector(dyn, SecretOptions{
		Logger: slog.New(slog.DiscardHandler), Now: clock.Now, RetryInterval: 50 * time.Millisecond,
		ValidatingWebhookConfigurations: []string{name},
	}, func() {})
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	in.start(runCtx, &wg)
	defer func() { stop(); wg.Wait() }()

	bundle := []byte("the bundle")
	want := base64.StdEncoding.EncodeToString(bundle)
	in.setBundle(bundle)
	testenv.Eventually(t, 30*time.Second, "the bundle injected and carried", func() (bool, error) {
		v, err := caBundle()
		return v == want && in.carriedSince(bundle).Equal(t0), err
	})

	t1 := t0.Add(time.Hour)
	clock.set(t1)
	junk := base64.StdEncoding.EncodeToString([]byte("someone else's bundle"))
	patch := fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, junk)
	if _, err := dyn.Resource(validatingGVR).Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("overwrite the caBundle of %s: %v", name, err)
	}
	testenv.Eventually(t, 30*time.Second, "the overwritten caBundle patched back, carried since the re-patch", func() (bool, error) {
		v, err := caBundle()
		if err != nil || v != want {
			return false, err
		}
		if since := in.carriedSince(bundle); !since.Equal(t1) {
			return false, fmt.Errorf("caBundle restored, carriedSince %v, want %v (the re-patch)", since, t1)
		}
		return true, nil
	})
}
