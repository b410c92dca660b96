package webhook

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. The webhook label is the
// path, as in controller-runtime.
type metrics struct {
	requests    *prometheus.CounterVec   // controller_runtime_webhook_requests_total{webhook,code}
	inFlight    *prometheus.GaugeVec     // controller_runtime_webhook_requests_in_flight{webhook}
	latency     *prometheus.HistogramVec // controller_runtime_webhook_latency_seconds{webhook}
	rejections  *prometheus.CounterVec   // skiff_webhook_rejections_total{webhook,code}
	panics      *prometheus.CounterVec   // skiff_webhook_panics_total{webhook}
	badRequests *prometheus.CounterVec   // skiff_webhook_bad_requests_total{webhook,reason}
	timeouts    *prometheus.CounterVec   // skiff_webhook_timeouts_total{webhook}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_webhook_requests_total",
			Help: "Total number of webhook requests by HTTP status code."}, []string{"webhook", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "controller_runtime_webhook_requests_in_flight",
			Help: "Current number of webhook requests being served."}, []string{"webhook"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "controller_runtime_webhook_latency_seconds",
			Help:    "Histogram of the latency of processing webhook requests.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}, []string{"webhook"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_webhook_rejections_total",
			Help: "Admission requests a handler denied, by the code returned to the client."}, []string{"webhook", "code"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_webhook_panics_total",
			Help: "Handler panics, each answered with HTTP 500."}, []string{"webhook"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_webhook_bad_requests_total",
			Help: "Requests refused with HTTP 400 before a handler ran, by reason."}, []string{"webhook", "reason"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_webhook_timeouts_total",
			Help: "Admission requests answered with the webhook's OnTimeout response because the handler overran."}, []string{"webhook"}),
	}
	if reg == nil {
		return m, nil
	}
	err := errors.Join(register(reg, &m.requests), register(reg, &m.inFlight), register(reg, &m.latency),
		register(reg, &m.rejections), register(reg, &m.panics), register(reg, &m.badRequests), register(reg, &m.timeouts))
	if err != nil {
		return nil, fmt.Errorf("webhook: register metrics: %w", err)
	}
	return m, nil
}

// register registers *c, or, if an equal collector is registered already (a
// second server in one registry), makes *c that one so both share series.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return err
}

func code(c int) string { return strconv.Itoa(c) }
