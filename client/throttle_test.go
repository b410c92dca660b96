package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// TestTunedClientRidesOut429s runs a control plane that answers 429 as soon
// as more than one mutating request is in flight (the max-in-flight filter;
// API Priority and Fairness off, since it would queue instead of reject),
// and fires 100 parallel creates from a non-admin identity (the admin is in
// system:masters, which the filter never rejects). With Tune's transport
// every create succeeds, and the metrics show the 429s and the retries.
// client-go's defaults are run too, for the record (logged, not asserted).
func TestTunedClientRidesOut429s(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tight, err := testenv.Start(ctx, testenv.Options{
		Controllers: "none",
		APIServerArgs: []string{
			"--enable-priority-and-fairness=false",
			"--max-mutating-requests-inflight=1",
			"--max-requests-inflight=1",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tight.Stop(); err != nil {
			t.Errorf("stop the tight control plane: %v", err)
		}
	})
	ns := testenv.Namespace(t, tight.Config())
	const user = "throttled-writer"
	revoke, err := testenv.Grant(ctx, tight.Config(), user, []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "get", "list"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = revoke(context.Background()) })
	userCfg, err := tight.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}

	const n = 100
	reg := prometheus.NewPedanticRegistry()
	tm, err := client.NewTransportMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := client.Tune(userCfg, client.TransportOptions{Metrics: tm})
	if err != nil {
		t.Fatal(err)
	}
	skiff := createMany(t, ctx, tuned, ns, "skiff", n)
	throttled := sumMetric(t, reg, "skiff_rest_client_throttled_total")
	retries := sumMetric(t, reg, "skiff_rest_client_retries_total")
	t.Logf("skiff (Tune): %d/%d failed in %v; 429s seen %v, retries %v, adaptive limit now %v; first errors %v",
		skiff.failed, n, skiff.took, throttled, retries, sumMetric(t, reg, "skiff_rest_client_adaptive_limit"), skiff.errs)
	if skiff.failed != 0 {
		t.Fatalf("%d of %d creates failed with Tune's transport: %v", skiff.failed, n, skiff.errs)
	}
	if throttled == 0 || retries == 0 {
		t.Fatalf("the server never answered 429 (throttled %v, retries %v): the test proved nothing", throttled, retries)
	}
	cs, err := kubernetes.NewForConfig(tuned)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Fatalf("%d ConfigMaps in %s after %d successful creates, want %d (a create repeated?)", len(list.Items), ns, n, n)
	}

	// client-go as rest.Config comes: QPS 5, Burst 10.
	plain := rest.CopyConfig(userCfg)
	plain.QPS, plain.Burst = 0, 0
	cg := createMany(t, ctx, plain, ns, "client-go", n)
	t.Logf("client-go defaults (QPS 5, Burst 10): %d/%d failed in %v; first errors %v", cg.failed, n, cg.took, cg.errs)
	// client-go with its throttle off, as controller-runtime configures it.
	off := rest.CopyConfig(userCfg)
	off.QPS = -1
	cr := createMany(t, ctx, off, ns, "qps-off", n)
	t.Logf("client-go with QPS -1 (controller-runtime's default): %d/%d failed in %v; first errors %v", cr.failed, n, cr.took, cr.errs)
}

type outcome struct {
	failed int
	took   time.Duration
	errs   []error // up to 3
}

// createMany creates n ConfigMaps named prefix-i at once through cfg.
func createMany(t *testing.T, ctx context.Context, cfg *rest.Config, ns, prefix string, n int) outcome {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		mu     sync.Mutex
		errs   []error
	)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)}, Data: map[string]string{"i": fmt.Sprint(i)}}
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				failed.Add(1)
				mu.Lock()
				if len(errs) < 3 {
					errs = append(errs, fmt.Errorf("%s (429: %v): %w", cm.Name, apierrors.IsTooManyRequests(err), err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return outcome{failed: int(failed.Load()), took: time.Since(start), errs: errs}
}

// sumMetric sums every series of the named counter or gauge in g.
func sumMetric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
