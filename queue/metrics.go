package queue

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, compatible with client-go's workqueue metrics (subsystem
// "workqueue", label "name") so existing dashboards keep working, plus two of
// Skiff's own.
const (
	MetricDepth                   = "workqueue_depth"
	MetricAdds                    = "workqueue_adds_total"
	MetricQueueDuration           = "workqueue_queue_duration_seconds"
	MetricWorkDuration            = "workqueue_work_duration_seconds"
	MetricRetries                 = "workqueue_retries_total"
	MetricUnfinishedWork          = "workqueue_unfinished_work_seconds"
	MetricLongestRunningProcessor = "workqueue_longest_running_processor_seconds"
	MetricDepthByPriority         = "workqueue_depth_by_priority"
	MetricDeadLetters             = "workqueue_dead_letters"
)

// Metrics holds the Prometheus collectors shared by every queue that is given
// it (Options.Metrics); queues are told apart by their Name label. Create it
// once per registry with NewMetrics. A nil *Metrics means no metrics.
//
// Unfinished work and the longest running processor are computed when the
// registry is scraped, so no goroutine updates them.
type Metrics struct {
	depth, depthByPriority, dead *prometheus.GaugeVec
	adds, retries                *prometheus.CounterVec
	latency, work                *prometheus.HistogramVec
	inflight                     *inflightCollector
}

// NewMetrics creates the collectors and registers them on reg (for example
// prometheus.DefaultRegisterer). Registration errors, such as duplicates,
// are returned.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	// Buckets of client-go's workqueue metrics: 10ns to 10s.
	buckets := prometheus.ExponentialBuckets(10e-9, 10, 10)
	m := &Metrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDepth, Help: "Current depth of workqueue",
		}, []string{"name"}),
		depthByPriority: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDepthByPriority, Help: "Current depth of workqueue by priority",
		}, []string{"name", "priority"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDeadLetters, Help: "Current number of dead-lettered keys in workqueue",
		}, []string{"name"}),
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAdds, Help: "Total number of adds handled by workqueue",
		}, []string{"name"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetries, Help: "Total number of retries handled by workqueue",
		}, []string{"name"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricQueueDuration, Help: "How long in seconds an item stays in workqueue before being requested.",
			Buckets: buckets,
		}, []string{"name"}),
		work: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricWorkDuration, Help: "How long in seconds processing an item from workqueue takes.",
			Buckets: buckets,
		}, []string{"name"}),
		inflight: &inflightCollector{
			unfinished: prometheus.NewDesc(MetricUnfinishedWork,
				"How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
				[]string{"name"}, nil),
			longest: prometheus.NewDesc(MetricLongestRunningProcessor,
				"How many seconds has the longest running processor for workqueue been running.",
				[]string{"name"}, nil),
			sources: make(map[*inflightSource]struct{}),
		},
	}
	for _, c := range []prometheus.Collector{m.depth, m.depthByPriority, m.dead, m.adds, m.retries, m.latency, m.work, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// queueMetrics are one queue's children of the collectors, resolved once so
// the hot path does no label lookups (except a small map for priorities).
type queueMetrics struct {
	name          string
	m             *Metrics
	depth, dead   prometheus.Gauge
	adds, retries prometheus.Counter
	latency, work prometheus.Observer
	byPriority    map[int]prometheus.Gauge
	source        *inflightSource
}

func (m *Metrics) forQueue(name string, inflight func() (float64, float64)) *queueMetrics {
	qm := &queueMetrics{
		name:       name,
		m:          m,
		depth:      m.depth.WithLabelValues(name),
		dead:       m.dead.WithLabelValues(name),
		adds:       m.adds.WithLabelValues(name),
		retries:    m.retries.WithLabelValues(name),
		latency:    m.latency.WithLabelValues(name),
		work:       m.work.WithLabelValues(name),
		byPriority: make(map[int]prometheus.Gauge),
		source:     &inflightSource{name: name, stats: inflight},
	}
	m.inflight.add(qm.source)
	return qm
}

// depthChange records that a key of priority prio joined (+1) or left (-1)
// the ready set. Called with the queue's lock held.
func (qm *queueMetrics) depthChange(prio int, delta float64) {
	qm.depth.Add(delta)
	g := qm.byPriority[prio]
	if g == nil {
		g = qm.m.depthByPriority.WithLabelValues(qm.name, strconv.Itoa(prio))
		qm.byPriority[prio] = g
	}
	g.Add(delta)
}

func (qm *queueMetrics) unregister() { qm.m.inflight.remove(qm.source) }

type inflightSource struct {
	name  string
	stats func() (total, longest float64)
}

// inflightCollector asks each live queue for its in-flight figures on scrape.
type inflightCollector struct {
	unfinished, longest *prometheus.Desc

	mu      sync.Mutex
	sources map[*inflightSource]struct{}
}

func (c *inflightCollector) add(s *inflightSource) {
	c.mu.Lock()
	c.sources[s] = struct{}{}
	c.mu.Unlock()
}

func (c *inflightCollector) remove(s *inflightSource) {
	c.mu.Lock()
	delete(c.sources, s)
	c.mu.Unlock()
}

func (c *inflightCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.unfinished
	ch <- c.longest
}

func (c *inflightCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := make([]*inflightSource, 0, len(c.sources))
	for s := range c.sources {
		sources = append(sources, s)
	}
	c.mu.Unlock()
	// Queues sharing a name are summed (unfinished) and maxed (longest).
	type agg struct{ total, longest float64 }
	byName := make(map[string]agg)
	for _, s := range sources {
		t, l := s.stats()
		a := byName[s.name]
		a.total += t
		a.longest = max(a.longest, l)
		byName[s.name] = a
	}
	for name, a := range byName {
		ch <- prometheus.MustNewConstMetric(c.unfinished, prometheus.GaugeValue, a.total, name)
		ch <- prometheus.MustNewConstMetric(c.longest, prometheus.GaugeValue, a.longest, name)
	}
}
