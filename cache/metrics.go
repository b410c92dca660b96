package cache

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// informerStats are an informer's counters: plain atomics written on the hot
// path and read by Stats and, at scrape time, by Metrics.
type informerStats struct {
	relists       atomic.Int64
	watchRestarts atomic.Int64
	events        atomic.Int64
	skipped       atomic.Int64
	kept          atomic.Int64 // relisted objects kept undecoded (relistskip.go)
	errors        atomic.Int64
	backlog       atomic.Int64 // keys waiting for event handlers, summed over handlers
	coalesced     atomic.Int64 // changes merged into ones already waiting for a handler
	bytes         atomic.Int64 // approximate bytes of cached objects (see Metrics)
	lastRV        atomic.Value // string
	lastErr       atomic.Pointer[error]
}

func (s *informerStats) setLastError(err error) { s.lastErr.Store(&err) }

func (s *informerStats) lastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Metrics exports informer metrics to Prometheus, labelled by informer name:
//
//	skiff_informer_objects                      gauge   objects cached
//	skiff_informer_bytes                        gauge   approximate bytes cached (protobuf size of stored objects; 0 for types without one)
//	skiff_informer_relists_total                counter full lists (the first included)
//	skiff_informer_watch_restarts_total         counter watches reopened after one ended
//	skiff_informer_events_total                 counter watch events applied (rate() gives events/s)
//	skiff_informer_skipped_objects_total        counter objects skipped as undecodable or nameless
//	skiff_informer_errors_total                 counter failed lists and watches
//	skiff_informer_handler_backlog              gauge   keys waiting for event handlers (summed over handlers)
//	skiff_informer_handler_coalesced_total      counter changes merged into changes already waiting for a handler
//	skiff_informer_last_synced_resource_version gauge   last resourceVersion applied (if numeric)
//
// Values are read from the informers' counters at scrape time, so metrics
// cost nothing per event. One Metrics may serve many informers; names must
// be unique among informers running at once.
type Metrics struct {
	mu    sync.Mutex
	infs  map[string]source
	descs []*prometheus.Desc
}

type source struct {
	stats *informerStats
	len   func() int
}

var metricDefs = []struct {
	name, help string
	typ        prometheus.ValueType
}{
	{"skiff_informer_objects", "Objects cached by the informer.", prometheus.GaugeValue},
	{"skiff_informer_bytes", "Approximate bytes of objects cached by the informer.", prometheus.GaugeValue},
	{"skiff_informer_relists_total", "Full lists done by the informer.", prometheus.CounterValue},
	{"skiff_informer_watch_restarts_total", "Watches reopened after one ended.", prometheus.CounterValue},
	{"skiff_informer_events_total", "Watch events applied.", prometheus.CounterValue},
	{"skiff_informer_skipped_objects_total", "Objects skipped because they could not be decoded or had no name.", prometheus.CounterValue},
	{"skiff_informer_errors_total", "Failed lists and watches.", prometheus.CounterValue},
	{"skiff_informer_handler_backlog", "Keys waiting for the informer's event handlers, summed over handlers.", prometheus.GaugeValue},
	{"skiff_informer_handler_coalesced_total", "Changes merged into changes already waiting for an event handler.", prometheus.CounterValue},
	{"skiff_informer_last_synced_resource_version", "Last resourceVersion applied, if numeric.", prometheus.GaugeValue},
}

// NewMetrics registers the informer metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{infs: map[string]source{}}
	for _, d := range metricDefs {
		m.descs = append(m.descs, prometheus.NewDesc(d.name, d.help, []string{"informer"}, nil))
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) add(name string, s *informerStats, n func() int) {
	m.mu.Lock()
	m.infs[name] = source{s, n}
	m.mu.Unlock()
}

func (m *Metrics) remove(name string, s *informerStats) {
	m.mu.Lock()
	if m.infs[name].stats == s {
		delete(m.infs, name)
	}
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, src := range m.infs {
		s := src.stats
		rv, _ := s.lastRV.Load().(string)
		rvf, _ := strconv.ParseFloat(rv, 64)
		vals := []float64{
			float64(src.len()), float64(s.bytes.Load()), float64(s.relists.Load()), float64(s.watchRestarts.Load()),
			float64(s.events.Load()), float64(s.skipped.Load()), float64(s.errors.Load()),
			float64(s.backlog.Load()), float64(s.coalesced.Load()), rvf,
		}
		for i, v := range vals {
			ch <- prometheus.MustNewConstMetric(m.descs[i], metricDefs[i].typ, v, name)
		}
	}
}

type sizer interface{ Size() int }

// sizeOf is the approximate in-memory cost of an object: its protobuf
// encoded size where the type has one.
func sizeOf(o any) int64 {
	if s, ok := o.(sizer); ok {
		return int64(s.Size())
	}
	return 0
}
