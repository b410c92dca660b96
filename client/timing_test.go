package client_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// metric returns the metric of family name whose labels include want, or
// nil.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// phaseCount is how many times phase was observed for verb.
func phaseCount(t *testing.T, reg *prometheus.Registry, phase, verb string) uint64 {
	t.Helper()
	m := metric(t, reg, "skiff_rest_client_request_phase_seconds", map[string]string{"phase": phase, "verb": verb})
	if m == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := metric(t, reg, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// TestRequestPhases sends GETs through a client whose server is named
// "localhost" (so there is a name to look up) and checks each phase was
// observed: dns, connect and tls once per new connection, server and
// transfer once per request, and that later requests reused the connection.
func TestRequestPhases(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	cfg := env.Config()
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "localhost:" + u.Port() // the serving certificate names localhost
	cfg.Host = u.String()
	reg := prometheus.NewRegistry()
	m, err := client.NewRequestMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme(t), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	const gets = 5
	for range gets {
		if _, err := client.Get[*corev1.Namespace](ctx, c, types.NamespacedName{Name: ns}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{client.PhaseDNS, client.PhaseConnect, client.PhaseTLS} {
		n := uint64(0)
		for _, verb := range []string{"get", "list", "watch"} {
			n += phaseCount(t, reg, p, verb) // the dial is counted under the verb of the request that caused it
		}
		if n == 0 {
			t.Errorf("phase %s never observed", p)
		}
	}
	for _, p := range []string{client.PhaseServer, client.PhaseTransfer} {
		if n := phaseCount(t, reg, p, "get"); n < gets {
			t.Errorf("phase %s observed %d times for get, want >= %d", p, n, gets)
		}
	}
	fresh := counter(t, reg, "skiff_rest_client_connections_total", map[string]string{"reused": "false"})
	reused := counter(t, reg, "skiff_rest_client_connections_total", map[string]string{"reused": "true"})
	t.Logf("connections: %v new, %v reused", fresh, reused)
	if fresh < 1 || reused < gets-1 {
		t.Errorf("connections: %v new, %v reused; want >= 1 new and >= %d reused", fresh, reused, gets-1)
	}
}

// TestWatchHasNoTransferPhase runs an informer until it has synced, stops
// it (which closes its watch), and checks the watch was timed until its
// first byte but its body's life was not counted as a transfer.
func TestWatchHasNoTransferPhase(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	reg := prometheus.NewRegistry()
	m, err := client.NewRequestMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config(), client.Options{Scheme: scheme(t), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	inf, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	done := make(chan struct{})
	go func() { c.Factory().Run(ctx); close(done) }()
	if err := inf.WaitForSync(ctx); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the watch to be established", func() (bool, error) {
		return phaseCount(t, reg, client.PhaseServer, "watch") > 0, nil
	})
	cancel()
	<-done
	if n := phaseCount(t, reg, client.PhaseTransfer, "watch"); n != 0 {
		t.Errorf("a watch's transfer phase was observed %d times; watches have none", n)
	}
}

// TestPriorityAndFairnessHeaders reads a ConfigMap as a non-admin user
// (subject to API Priority and Fairness) and checks the flow schema and
// priority level the server reported are real objects on the server.
func TestPriorityAndFairnessHeaders(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	admin := kubernetes.NewForConfigOrDie(env.Config())
	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "apf"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const user = "timing-apf"
	revoke, err := testenv.Grant(ctx, env.Config(), user, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = revoke(context.Background()) })
	cfg, err := env.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := client.NewRequestMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.LastPriorityAndFairness(); ok {
		t.Fatal("LastPriorityAndFairness reports a classification before any request")
	}
	// Discovery is open to every authenticated user, so only the Get needs
	// the grant.
	c, err := client.New(cfg, client.Options{Scheme: scheme(t), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(cm)); err != nil {
		t.Fatal(err)
	}
	pf, ok := m.LastPriorityAndFairness()
	if !ok || pf.FlowSchemaUID == "" || pf.PriorityLevelUID == "" {
		t.Fatalf("LastPriorityAndFairness = %+v, %v; want both UIDs", pf, ok)
	}
	fss, err := admin.FlowcontrolV1().FlowSchemas().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fsName := ""
	for _, fs := range fss.Items {
		if string(fs.UID) == pf.FlowSchemaUID {
			fsName = fs.Name
		}
	}
	pls, err := admin.FlowcontrolV1().PriorityLevelConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plName := ""
	for _, pl := range pls.Items {
		if string(pl.UID) == pf.PriorityLevelUID {
			plName = pl.Name
		}
	}
	t.Logf("flow schema %s (%s), priority level %s (%s)", fsName, pf.FlowSchemaUID, plName, pf.PriorityLevelUID)
	if fsName == "" || plName == "" {
		t.Errorf("the server has no flow schema %q or no priority level %q", pf.FlowSchemaUID, pf.PriorityLevelUID)
	}
	if plName == "exempt" {
		t.Errorf("a non-admin user's request was exempt from priority and fairness")
	}
	if n := counter(t, reg, "skiff_rest_client_priority_level_responses_total", map[string]string{"flow_schema_uid": pf.FlowSchemaUID, "priority_level_uid": pf.PriorityLevelUID}); n < 1 {
		t.Errorf("skiff_rest_client_priority_level_responses_total for %+v = %v, want >= 1", pf, n)
	}
}
