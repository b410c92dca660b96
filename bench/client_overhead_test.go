package bench

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
)

// BenchmarkClientOverhead measures what request timing and metrics
// (client.RequestMetrics: rest_client_*, the skiff phase histogram, the
// connection and API Priority and Fairness counters) cost on a GET of one
// small ConfigMap served by the local control plane. Both variants use the
// same Skiff client with no informer (every Get goes to the API server) and
// no tracing (off unless a TracerProvider is given):
//
//	impl=skiff/instrument=none             Options.Metrics nil
//	impl=skiff/instrument=timing+metrics   Options.Metrics set (what a manager wires)
//
// One op is one Get. Besides ns/op it reports client-cpu-us/op, the
// benchmark process's CPU time per Get (the API server is another process,
// so this is the client's own cost, less noisy than the round trip).
// Target: ≤ 2% on ns/op.
func BenchmarkClientOverhead(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{Controllers: "none"})
	if err != nil {
		b.Fatalf("control plane: %v", err)
	}
	b.Cleanup(func() {
		if err := env.Stop(); err != nil {
			b.Errorf("stop control plane: %v", err)
		}
	})
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		b.Fatal(err)
	}
	ns, err := testenv.CreateNamespace(ctx, cs, "client-overhead")
	if err != nil {
		b.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "target", Labels: map[string]string{"app": "bench"}},
		Data:       map[string]string{"key": "value"},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	key := client.KeyOf(cm)
	for _, v := range []struct {
		name    string
		metrics bool
	}{{"impl=skiff/instrument=none", false}, {"impl=skiff/instrument=timing+metrics", true}} {
		b.Run(v.name, func(b *testing.B) {
			o := client.Options{}
			if v.metrics {
				if o.Metrics, err = client.NewRequestMetrics(prometheus.NewRegistry()); err != nil {
					b.Fatal(err)
				}
			}
			c, err := client.New(env.Config(), o)
			if err != nil {
				b.Fatal(err)
			}
			// Discovery, the connection and the TLS handshake happen here,
			// not in the timed loop.
			for range 20 {
				if _, err := client.Get[*corev1.ConfigMap](ctx, c, key); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu := cpuSeconds()
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Get[*corev1.ConfigMap](ctx, c, key); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((cpuSeconds()-cpu)*1e6/float64(b.N), "client-cpu-us/op")
		})
	}
}
