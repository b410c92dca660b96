package client

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TransportMetrics measure what Tune's transport does, for every client
// tuned with them (pass in TransportOptions.Metrics):
//
//	rest_client_rate_limiter_duration_seconds{verb,host}  histogram  time waiting for the client-side limiter (client-go's name and labels)
//	skiff_rest_client_retries_total{code,verb}            counter    retries made, by the status code ("<error>": connection failed) that caused them
//	skiff_rest_client_throttled_total                     counter    429 answers received
//	skiff_rest_client_adaptive_limit{host}                gauge      the adaptive limiter's current limit (requests in flight)
//
// Create it once per registry with NewTransportMetrics. A nil
// *TransportMetrics records nothing.
type TransportMetrics struct {
	wait      *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	throttles prometheus.Counter
	limit     *prometheus.GaugeVec
}

// NewTransportMetrics creates the metrics and registers them on reg.
func NewTransportMetrics(reg prometheus.Registerer) (*TransportMetrics, error) {
	m := &TransportMetrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rest_client_rate_limiter_duration_seconds",
			Help:    "Time a request waited in the client-side rate limiter, by verb and host.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60},
		}, []string{"verb", "host"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_rest_client_retries_total",
			Help: "Requests retried by Skiff's transport, by the status code that caused the retry (<error>: the connection failed) and verb.",
		}, []string{"code", "verb"}),
		throttles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_rest_client_throttled_total",
			Help: "429 Too Many Requests answers received from the API server.",
		}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_rest_client_adaptive_limit",
			Help: "The adaptive client-side limit of requests in flight, by host.",
		}, []string{"host"}),
	}
	for _, c := range []prometheus.Collector{m.wait, m.retries, m.throttles, m.limit} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *TransportMetrics) waited(verb, host string, d time.Duration) {
	if m != nil {
		m.wait.WithLabelValues(verb, host).Observe(d.Seconds())
	}
}

func (m *TransportMetrics) retried(resp *http.Response, verb string) {
	if m != nil {
		m.retries.WithLabelValues(statusLabel(resp), verb).Inc()
	}
}

func (m *TransportMetrics) throttled() {
	if m != nil {
		m.throttles.Inc()
	}
}

// limitGauge returns the setter of host's limit gauge, or nil.
func (m *TransportMetrics) limitGauge(host string) func(float64) {
	if m == nil {
		return nil
	}
	return m.limit.WithLabelValues(host).Set
}
