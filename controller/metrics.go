package controller

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a controller's Prometheus metrics, named as controller-runtime
// names them so existing dashboards and alerts keep working. One Metrics may
// serve many controllers (label "controller").
type Metrics struct {
	total     *prometheus.CounterVec
	errors    *prometheus.CounterVec
	terminal  *prometheus.CounterVec
	panics    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	maxActive *prometheus.GaugeVec
	active    *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg. It fails if reg
// already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_reconcile_total",
			Help: "Total number of reconciliations per controller, by result (success, error, requeue, requeue_after).",
		}, []string{"controller", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_reconcile_errors_total",
			Help: "Total number of reconciliation errors per controller.",
		}, []string{"controller"}),
		terminal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_terminal_reconcile_errors_total",
			Help: "Total number of terminal reconciliation errors per controller.",
		}, []string{"controller"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_reconcile_panics_total",
			Help: "Total number of reconciliation panics per controller.",
		}, []string{"controller"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "controller_runtime_reconcile_time_seconds",
			Help: "Length of time per reconciliation per controller.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
				1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60},
		}, []string{"controller"}),
		maxActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "controller_runtime_max_concurrent_reconciles",
			Help: "Current number of workers (the adaptive pool's size) per controller.",
		}, []string{"controller"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "controller_runtime_active_workers",
			Help: "Number of currently used workers per controller.",
		}, []string{"controller"}),
	}
	for _, c := range []prometheus.Collector{m.total, m.errors, m.terminal, m.panics, m.duration, m.maxActive, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// init creates every series of controller name at zero, so dashboards and
// rate() see them before the first reconcile, error or panic.
func (m *Metrics) init(name string) {
	for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
		m.total.WithLabelValues(name, result)
	}
	m.errors.WithLabelValues(name)
	m.terminal.WithLabelValues(name)
	m.panics.WithLabelValues(name)
	m.maxActive.WithLabelValues(name)
	m.active.WithLabelValues(name)
}
