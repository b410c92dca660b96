package webhook_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
)

// cluster is what an integration test works with.
type cluster struct {
	cs    kubernetes.Interface
	c     *client.Client
	ns    string
	label string // unique per test: the webhooks select only objects with it
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if env == nil {
		t.Fatal("no control plane: integration tests do not run while fuzzing")
	}
	cfg := env.Config()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, cfg)
	return &cluster{cs: cs, c: c, ns: ns, label: ns}
}

// selector matches objects labelled for this test only: webhook
// configurations are cluster-wide.
func (k *cluster) selector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"skiff-webhook-test": k.label}}
}

func (k *cluster) configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.ns, Labels: map[string]string{"skiff-webhook-test": k.label}}, Data: data}
}

func (k *cluster) create(ctx context.Context, cm *corev1.ConfigMap, dryRun bool) (*corev1.ConfigMap, error) {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return k.cs.CoreV1().ConfigMaps(k.ns).Create(ctx, cm, opts)
}

// apply applies srv's configurations under name with a URL client config,
// and deletes them when the test ends.
func (k *cluster) apply(t *testing.T, srv *webhook.Server, name, url string) {
	t.Helper()
	ctx := context.Background()
	if err := srv.ApplyConfigurations(ctx, k.c, webhook.ConfigOptions{Name: name, URL: url}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, err := range []error{
			k.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}),
			k.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete webhook configuration %s: %v", name, err)
			}
		}
	})
}

// freeClosedPort is a loopback address nothing listens on.
func freeClosedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestAPIServerCallsValidatingAndMutatingWebhooks(t *testing.T) {
	k := newCluster(t)
	ctx := t.Context()
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		if _, bad := req.Object.Data["forbidden"]; bad {
			return webhook.Deny("configmaps may not have a key named forbidden")
		}
		return webhook.Allow()
	}, webhook.Options{ObjectSelector: k.selector()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := webhook.NewMutating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		if req.Object.Data == nil {
			req.Object.Data = map[string]string{}
		}
		if req.Object.Data["mode"] == "" {
			req.Object.Data["mode"] = "default"
		}
		return webhook.Allow()
	}, webhook.Options{ObjectSelector: k.selector()})
	if err != nil {
		t.Fatal(err)
	}
	certs := newSelfSigned(t)
	reg := prometheus.NewRegistry()
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: certs, Registerer: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(v)
	srv.Register(m)
	startServer(t, srv)

	name := "skiff-test-" + k.label
	vwc, mwc, err := srv.Configurations(webhook.ConfigOptions{Name: name, URL: "https://" + srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) != 1 || len(mwc.Webhooks) != 1 || string(vwc.Webhooks[0].ClientConfig.CABundle) != string(certs.pem) ||
		vwc.Webhooks[0].Rules[0].Resources[0] != "configmaps" || *mwc.Webhooks[0].ClientConfig.URL != "https://"+srv.Addr()+m.Path() {
		t.Fatalf("generated configurations: %+v %+v", vwc, mwc)
	}
	k.apply(t, srv, name, "https://"+srv.Addr())

	// The API server picks configurations up asynchronously: probe with dry runs.
	testenv.Eventually(t, 30*time.Second, "the API server to call the validating webhook", func() (bool, error) {
		_, err := k.create(ctx, k.configMap("probe", map[string]string{"forbidden": "x"}), true)
		return err != nil && strings.Contains(err.Error(), "may not have a key named forbidden"), nil
	})
	testenv.Eventually(t, 30*time.Second, "the API server to call the mutating webhook", func() (bool, error) {
		got, err := k.create(ctx, k.configMap("probe", nil), true)
		return err == nil && got.Data["mode"] == "default", err
	})

	if _, err := k.create(ctx, k.configMap("bad", map[string]string{"forbidden": "1"}), false); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not have a key named forbidden") {
		t.Fatalf("create a bad configmap = %v, want Forbidden with the webhook's reason", err)
	}
	if _, err := k.create(ctx, k.configMap("good", map[string]string{"ok": "1"}), false); err != nil {
		t.Fatalf("create a good configmap: %v", err)
	}
	stored, err := k.cs.CoreV1().ConfigMaps(k.ns).Get(ctx, "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Data["mode"] != "default" || stored.Data["ok"] != "1" {
		t.Fatalf("stored data %v, want the mutating webhook's default beside the client's key", stored.Data)
	}
	if n := metricValue(t, reg, "skiff_webhook_rejections_total", map[string]string{"webhook": v.Path(), "code": "403"}); n < 2 {
		t.Fatalf("rejections = %v, want at least 2", n)
	}
}

func TestFailurePolicyWhenTheServerIsDown(t *testing.T) {
	k := newCluster(t)
	ctx := t.Context()
	allow := func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		return webhook.Allow()
	}
	name := "skiff-test-" + k.label
	down := "https://" + freeClosedPort(t)
	configure := func(policy admissionregistrationv1.FailurePolicyType) {
		v, err := webhook.NewValidating(allow, webhook.Options{FailurePolicy: policy, ObjectSelector: k.selector(), TimeoutSeconds: 2})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := webhook.NewServer(webhook.ServerOptions{Certificates: newSelfSigned(t), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		srv.Register(v) // never run: nothing listens at down
		k.apply(t, srv, name, down)
	}

	configure(admissionregistrationv1.Fail)
	testenv.Eventually(t, 30*time.Second, "failurePolicy Fail to refuse while the server is down", func() (bool, error) {
		_, err := k.create(ctx, k.configMap("cm", nil), true)
		return err != nil && strings.Contains(err.Error(), "failed calling webhook"), nil
	})
	configure(admissionregistrationv1.Ignore)
	testenv.Eventually(t, 30*time.Second, "failurePolicy Ignore to admit while the server is down", func() (bool, error) {
		_, err := k.create(ctx, k.configMap("cm", nil), false)
		return err == nil, nil
	})
}

func TestHandlerSlowerThanTheTimeout(t *testing.T) {
	k := newCluster(t)
	ctx := t.Context()
	release := make(chan struct{})
	var calls atomic.Int32
	slow := func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		calls.Add(1)
		select { // ignores its deadline until the test ends
		case <-release:
		case <-time.After(time.Minute):
		}
		return webhook.Allow()
	}
	fail, err := webhook.NewValidating(slow, webhook.Options{Name: "fail.slow.skiff.dev", Path: "/fail", TimeoutSeconds: 2, ObjectSelector: k.selector()})
	if err != nil {
		t.Fatal(err)
	}
	ignoreSel := &metav1.LabelSelector{MatchLabels: map[string]string{"skiff-webhook-test": k.label + "-ignore"}}
	ignore, err := webhook.NewValidating(slow, webhook.Options{Name: "ignore.slow.skiff.dev", Path: "/ignore", TimeoutSeconds: 2,
		FailurePolicy: admissionregistrationv1.Ignore, ObjectSelector: ignoreSel})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: newSelfSigned(t), Registerer: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(fail)
	srv.Register(ignore)
	startServer(t, srv)
	t.Cleanup(func() { close(release) }) // runs before the server stops (cleanups run last-in first-out)
	k.apply(t, srv, "skiff-test-"+k.label, "https://"+srv.Addr())

	testenv.Eventually(t, 30*time.Second, "the overrunning webhook to be answered with its timeout response", func() (bool, error) {
		_, err := k.create(ctx, k.configMap("slow", nil), true)
		return err != nil && strings.Contains(err.Error(), "did not decide within 1.6s"), nil
	})
	ignored := k.configMap("slow-ignored", nil)
	ignored.Labels["skiff-webhook-test"] = k.label + "-ignore"
	testenv.Eventually(t, 30*time.Second, "the Ignore webhook to admit with a warning after its deadline", func() (bool, error) {
		before := calls.Load()
		_, err := k.create(ctx, ignored, true)
		return err == nil && calls.Load() > before, nil
	})
	if n := metricValue(t, reg, "skiff_webhook_timeouts_total", map[string]string{"webhook": "/fail"}); n < 1 {
		t.Fatalf("timeouts{/fail} = %v", n)
	}
	if n := metricValue(t, reg, "skiff_webhook_timeouts_total", map[string]string{"webhook": "/ignore"}); n < 1 {
		t.Fatalf("timeouts{/ignore} = %v", n)
	}
}

// TestPolicyFromAnInformerChangesDecisionsWithoutRestart runs the server in a
// manager, whose typed client reads the policy ConfigMap from an informer.
func TestPolicyFromAnInformerChangesDecisionsWithoutRestart(t *testing.T) {
	k := newCluster(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	mgr, err := manager.New(manager.Options{Config: env.Config(), Addr: "127.0.0.1:0", Registry: reg, Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	c := mgr.Client()
	if _, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: k.ns}); err != nil {
		t.Fatal(err)
	}
	policy := client.ObjectKey{Namespace: k.ns, Name: "policy"}
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		p, err := client.Get[*corev1.ConfigMap](ctx, c, policy)
		if err != nil {
			return webhook.DenyWithCode(500, fmt.Sprintf("read the policy: %v", err))
		}
		allowed := strings.Split(p.Data["teams"], ",")
		if team := req.Object.Labels["team"]; !slices.Contains(allowed, team) {
			return webhook.Deny(fmt.Sprintf("team %q is not allowed (policy allows %s)", team, p.Data["teams"]))
		}
		return webhook.Allow()
	}, webhook.Options{ObjectSelector: k.selector()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: newSelfSigned(t), Registerer: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(v)
	mgr.Add("webhooks", srv)
	mgr.AddHealthCheck("webhooks", srv.Healthz)

	// The policy has no test label: the webhook does not judge it.
	if _, err := k.cs.CoreV1().ConfigMaps(k.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "policy", Namespace: k.ns}, Data: map[string]string{"teams": "red"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, "the manager's webhook server to serve", func() (bool, error) {
		return srv.Addr() != "" && srv.Healthz(nil) == nil, nil
	})
	k.apply(t, srv, "skiff-test-"+k.label, "https://"+srv.Addr())

	blue := k.configMap("blue", nil)
	blue.Labels["team"] = "blue"
	testenv.Eventually(t, 30*time.Second, "team blue to be refused under the first policy", func() (bool, error) {
		_, err := k.create(ctx, blue, true)
		return err != nil && strings.Contains(err.Error(), `team "blue" is not allowed (policy allows red)`), nil
	})
	p, err := k.cs.CoreV1().ConfigMaps(k.ns).Get(ctx, "policy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Data["teams"] = "red,blue"
	if _, err := k.cs.CoreV1().ConfigMaps(k.ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "team blue to be admitted once the policy allows it", func() (bool, error) {
		_, err := k.create(ctx, blue, false)
		return err == nil, nil
	})
	green := k.configMap("green", nil)
	green.Labels["team"] = "green"
	if _, err := k.create(ctx, green, false); err == nil || !strings.Contains(err.Error(), "policy allows red,blue") {
		t.Fatalf("team green = %v, want a refusal under the new policy", err)
	}
}
