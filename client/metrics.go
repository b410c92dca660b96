package client

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// RequestMetrics counts and times every request a Client (and its
// informers) sends, with client-go's metric names and labels so existing
// dashboards work:
//
//	rest_client_requests_total{code,method,host}          counter
//	rest_client_request_duration_seconds{verb,host}       histogram, until the response headers (a watch: until it is established)
//
// Create it once per registry with NewRequestMetrics and pass it in
// Options.Metrics; a manager does this.
type RequestMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewRequestMetrics creates the metrics and registers them on reg.
func NewRequestMetrics(reg prometheus.Registerer) (*RequestMetrics, error) {
	m := &RequestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rest_client_requests_total",
			Help: "Number of HTTP requests to the API server, by status code, method and host.",
		}, []string{"code", "method", "host"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rest_client_request_duration_seconds",
			Help:    "Request latency until the response headers, by verb and host.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60},
		}, []string{"verb", "host"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// install wraps cfg's transport so every request is measured.
func (m *RequestMetrics) install(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return measured{m: m, next: rt}
	})
}

type measured struct {
	m    *RequestMetrics
	next http.RoundTripper
}

func (t measured) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.duration.WithLabelValues(req.Method, req.URL.Host).Observe(time.Since(start).Seconds())
	code := "<error>"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(code, req.Method, req.URL.Host).Inc()
	return resp, err
}
