package audit

import "github.com/prometheus/client_golang/prometheus"

// Metric names.
const (
	MetricBatches         = "skiff_audit_batches_received_total"
	MetricBatchesRejected = "skiff_audit_batches_rejected_total"
	MetricEventsReceived  = "skiff_audit_events_received_total"
	MetricEventsMatched   = "skiff_audit_events_matched_total"
	MetricEventsEnqueued  = "skiff_audit_events_enqueued_total"
	MetricEventsSkipped   = "skiff_audit_events_skipped_total"
)

// Metrics holds the receiver's Prometheus collectors. Create it once per
// registry with NewMetrics and give it to any number of Receivers
// (Options.Metrics). A nil *Metrics means no metrics.
//
//   - skiff_audit_batches_received_total: POSTs, accepted or not.
//   - skiff_audit_batches_rejected_total{reason}: batches answered with an
//     error, by Reject* reason.
//   - skiff_audit_events_received_total: events in accepted batches.
//   - skiff_audit_events_matched_total{resource}: events that passed a
//     watch's filter ("configmaps", "deployments.apps"); an event matched by
//     two watches counts twice.
//   - skiff_audit_events_enqueued_total{resource}: matched events turned
//     into a key and handed to the queue or callback.
//   - skiff_audit_events_skipped_total{resource,reason}: matched events that
//     made no key (reason SkipNoName).
type Metrics struct {
	batches, events            prometheus.Counter
	rejected                   *prometheus.CounterVec
	matched, enqueued, skipped *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them on reg. Registration
// errors, such as duplicates, are returned.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricBatches, Help: "Audit event batches received (POSTs), accepted or not.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBatchesRejected, Help: "Audit event batches rejected, by reason.",
		}, []string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricEventsReceived, Help: "Audit events received in accepted batches.",
		}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsMatched, Help: "Audit events that passed a watch's filter, by resource.",
		}, []string{"resource"}),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsEnqueued, Help: "Audit events turned into a key, by resource.",
		}, []string{"resource"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsSkipped, Help: "Matched audit events that made no key, by resource and reason.",
		}, []string{"resource", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.batches, m.rejected, m.events, m.matched, m.enqueued, m.skipped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
