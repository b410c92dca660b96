package deadletter

import "github.com/prometheus/client_golang/prometheus"

// Metric names. Label "controller".
const (
	MetricPersisted   = "skiff_deadletter_persisted"
	MetricMalformed   = "skiff_deadletter_malformed"
	MetricWriteErrors = "skiff_deadletter_write_errors_total"
	MetricDropped     = "skiff_deadletter_dropped_total"
)

// Metrics are the stores' Prometheus metrics; one Metrics serves many
// stores (label "controller"). Create it once per registry with NewMetrics.
type Metrics struct {
	persisted, malformed *prometheus.GaugeVec
	writeErrors, dropped *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them on reg; it fails if
// reg already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		persisted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricPersisted, Help: "Dead letters in the controller's ConfigMap, as this replica last saw it.",
		}, []string{"controller"}),
		malformed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricMalformed, Help: "Data keys of the controller's dead-letter ConfigMap that are not valid entries (skipped, left in place).",
		}, []string{"controller"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWriteErrors, Help: "Failed writes of the controller's dead-letter ConfigMap.",
		}, []string{"controller"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDropped, Help: "Dead letters not persisted because the ConfigMap held its maximum of entries.",
		}, []string{"controller"}),
	}
	for _, c := range []prometheus.Collector{m.persisted, m.malformed, m.writeErrors, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type storeMetrics struct {
	persisted, malformed prometheus.Gauge
	writeErrors, dropped prometheus.Counter
}

func (m *Metrics) forController(name string) *storeMetrics {
	return &storeMetrics{
		persisted: m.persisted.WithLabelValues(name), malformed: m.malformed.WithLabelValues(name),
		writeErrors: m.writeErrors.WithLabelValues(name), dropped: m.dropped.WithLabelValues(name),
	}
}
