package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook/cert"
)

var (
	createOpts = metav1.CreateOptions{}
	deleteOpts = metav1.DeleteOptions{}
)

func TestTwoReplicasRacingServeTheSamePair(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	var srcs []*cert.Secret
	for range 2 {
		s, err := cert.NewSecret(cert.SecretOptions{Config: env.Config(), Namespace: ns, Name: "webhook-cert", Hosts: cert.ServiceHosts("webhook", ns)})
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	// Started together: both find no Secret and race to create it.
	for _, s := range srcs {
		run(t, s)
	}
	for _, s := range srcs {
		waitReady(t, s)
	}
	testenv.Eventually(t, 30*time.Second, "both replicas serving the same pair and bundle", func() (bool, error) {
		a, err := servedFingerprint(srcs[0])
		if err != nil {
			return false, err
		}
		b, err := servedFingerprint(srcs[1])
		if err != nil {
			return false, err
		}
		ba, _ := srcs[0].CABundle()
		bb, _ := srcs[1].CABundle()
		if a != b || !bytes.Equal(ba, bb) {
			return false, fmt.Errorf("fingerprints %s… and %s…", a[:12], b[:12])
		}
		return true, nil
	})
	cs, _ := clients(t)
	sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), "webhook-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := servedFingerprint(srcs[0])
	if got := bundleCerts(t, sec.Data["tls.crt"]); len(got) != 1 || cert.Fingerprint(got[0].Raw) != a {
		t.Fatalf("served certificate is not the Secret's tls.crt")
	}
	if sec.Type != corev1.SecretTypeTLS {
		t.Fatalf("Secret type %q", sec.Type)
	}
}

func TestWrongSecretTypeStopsRunWithAClearError(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	cs, _ := clients(t)
	_, err := cs.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-cert"}, Type: corev1.SecretTypeOpaque,
	}, createOpts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cert.NewSecret(cert.SecretOptions{Config: env.Config(), Namespace: ns, Name: "webhook-cert", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `has type "Opaque", want "kubernetes.io/tls"`) || !strings.Contains(err.Error(), ns+"/webhook-cert") {
		t.Fatalf("Run = %v; want an error naming the Secret and its wrong type", err)
	}
}

func webhookConfig(name, url string, nsSelector map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingWebhookConfiguration",
		"metadata":   map[string]any{"name": name},
		"webhooks": []any{map[string]any{
			"name":                    "check.cert.skiff.dev",
			"clientConfig":            map[string]any{"url": url},
			"admissionReviewVersions": []any{"v1"},
			"sideEffects":             "None",
			"failurePolicy":           "Fail",
			"timeoutSeconds":          int64(10),
			"namespaceSelector":       nsSelector,
			"rules": []any{map[string]any{
				"apiGroups": []any{""}, "apiVersions": []any{"v1"}, "operations": []any{"CREATE"}, "resources": []any{"configmaps"},
			}},
		}},
	}
}

func TestCABundleInjectedAndKept(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	_, dyn := clients(t)
	suffix := strings.TrimPrefix(ns, "skiff-")
	vwcName := "cert-inject-" + suffix
	crdName := "widgets.cert" + strings.ReplaceAll(suffix, "-", "") + ".skiff.dev"
	group := strings.TrimPrefix(crdName, "widgets.")
	createCluster(t, dyn, crdGVR, map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": crdName},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
			"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{
				"conversionReviewVersions": []any{"v1"},
				"clientConfig":             map[string]any{"url": "https://127.0.0.1:1/convert"},
			}},
		},
	})
	s, err := cert.NewSecret(cert.SecretOptions{
		Config: env.Config(), Namespace: ns, Name: "webhook-cert", Hosts: []string{"127.0.0.1"},
		ValidatingWebhookConfigurations: []string{vwcName}, CRDs: []string{crdName},
		RetryInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	waitReady(t, s)
	bundle, err := s.CABundle()
	if err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString(bundle)
	get := func(gvr_ string, name string, path ...string) (string, error) {
		res := dyn.Resource(crdGVR)
		if gvr_ == "vwc" {
			res = dyn.Resource(vwcGVR)
		}
		u, err := res.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if gvr_ == "vwc" {
			hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			v, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
			return v, nil
		}
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v, nil
	}
	crdPath := []string{"spec", "conversion", "webhook", "clientConfig", "caBundle"}
	testenv.Eventually(t, 30*time.Second, "caBundle in the CRD", func() (bool, error) {
		v, err := get("crd", crdName, crdPath...)
		return v == want, err
	})
	// The configuration appears after Run started.
	createCluster(t, dyn, vwcGVR, webhookConfig(vwcName, "https://127.0.0.1:1/never", map[string]any{
		"matchLabels": map[string]any{"kubernetes.io/metadata.name": ns}}))
	testenv.Eventually(t, 30*time.Second, "caBundle in the new ValidatingWebhookConfiguration", func() (bool, error) {
		v, err := get("vwc", vwcName)
		return v == want, err
	})
	// Someone overwrites it: it is put back.
	junk := base64.StdEncoding.EncodeToString([]byte("not a bundle"))
	patch := fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, junk)
	if _, err := dyn.Resource(vwcGVR).Patch(context.Background(), vwcName, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "overwritten caBundle restored", func() (bool, error) {
		v, err := get("vwc", vwcName)
		return v == want, err
	})
}
