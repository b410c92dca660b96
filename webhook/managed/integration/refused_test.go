package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/managed"
)

// TestConfigurationsRefused: an identity that may keep the certificate
// Secret and read the webhook configurations but not apply them gets the
// manager stopped with an error naming the webhooks and the refusal,
// instead of serving webhooks that the API server never calls.
func TestConfigurationsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := testenv.Namespace(t, env.Config())
	user := "webhooks-" + ns
	revoke, err := testenv.Grant(ctx, env.Config(), user, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations", "mutatingwebhookconfigurations"}, Verbs: []string{"get", "list", "watch"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := revoke(context.Background()); err != nil {
			t.Errorf("revoke: %v", err)
		}
	})
	cfg, err := env.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(manager.Options{Config: cfg, Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	name := "refused-" + ns
	srv, err := managed.Add(mgr, managed.Options{Name: name, Namespace: ns, Server: webhook.ServerOptions{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	allow, err := webhook.NewValidating(func(context.Context, webhook.Request[*corev1.ConfigMap]) webhook.Response {
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(allow); err != nil {
		t.Fatal(err)
	}
	err = mgr.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "runnable webhook-"+name) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("manager.Start = %v, want the webhooks runnable's forbidden apply", err)
	}
	t.Logf("manager.Start: %v", err)
	if srv.Healthz(nil) == nil {
		t.Fatal("the webhook server still serves after its runnable failed")
	}
}
