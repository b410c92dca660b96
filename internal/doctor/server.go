package doctor

import (
	"math"
	"sort"
	"time"
)

// Metric names read from kube-apiserver's /metrics (checked against
// v1.36). Counter and gauge vectors that nothing has touched yet have no
// sample at all (rejections, queued requests, terminated watchers on a
// healthy server): their absence reads as zero.
const (
	metricNominalSeats   = "apiserver_flowcontrol_nominal_limit_seats"
	metricLowerSeats     = "apiserver_flowcontrol_lower_limit_seats"
	metricUpperSeats     = "apiserver_flowcontrol_upper_limit_seats"
	metricCurrentSeats   = "apiserver_flowcontrol_current_limit_seats"
	metricExecutingSeats = "apiserver_flowcontrol_current_executing_seats"
	metricInQueue        = "apiserver_flowcontrol_current_inqueue_requests"
	metricRejected       = "apiserver_flowcontrol_rejected_requests_total"
	metricDispatched     = "apiserver_flowcontrol_dispatched_requests_total"
	metricInflight       = "apiserver_current_inflight_requests"
	metricRequestLatency = "apiserver_request_duration_seconds"
	metricWatchCacheCap  = "watch_cache_capacity"
	metricTerminated     = "apiserver_terminated_watchers_total"
	metricEtcdLatency    = "etcd_request_duration_seconds"
)

// ServerMetrics is what the API server's /metrics says about the knobs people
// tune. The zero value means nothing was known.
type ServerMetrics struct {
	// ConcurrencyLimit is the server's total concurrency (seats) that API
	// Priority and Fairness divides among priority levels; with APF on it is
	// --max-requests-inflight + --max-mutating-requests-inflight (default
	// 400+200). It is read as upper_limit_seats − nominal_limit_seats of the
	// exempt level, which borrows up to the whole server limit. 0 when the
	// scrape does not reveal it (APF off, or no exempt level).
	ConcurrencyLimit int
	// Levels are the priority levels, by name.
	Levels []PriorityLevel
	// Inflight is apiserver_current_inflight_requests by request_kind
	// (readOnly, mutating): the highest number in flight in the last second.
	Inflight map[string]float64
	// Verbs is request latency by verb (WATCH and CONNECT, which are
	// long-running, excluded), slowest p99 first.
	Verbs []Latency
	// Etcd is etcd request latency by operation, slowest p99 first.
	Etcd []Latency
	// WatchCaches is the watch cache of each resource, by group/resource.
	WatchCaches []WatchCache
}

// PriorityLevel is one API Priority and Fairness priority level.
type PriorityLevel struct {
	Name                                 string
	NominalSeats, LowerSeats, UpperSeats float64
	CurrentLimitSeats, ExecutingSeats    float64
	InQueue, Dispatched, Rejected        float64
	RejectedByReason                     map[string]float64 // queue-full, time-out, concurrency-limit, cancelled
}

// Latency summarizes one latency histogram.
type Latency struct {
	Key            string // the verb, or the etcd operation
	Count          float64
	Mean, P50, P99 time.Duration
}

// WatchCache is one resource's watch cache.
type WatchCache struct {
	Resource   string // "group/resource", or "resource" for the core group
	Capacity   float64
	Terminated float64 // watchers closed because they could not keep up
}

// Summarize reads the server side from a scrape of kube-apiserver's
// /metrics. Metrics it does not find are left zero.
func Summarize(m Metrics) ServerMetrics {
	var s ServerMetrics
	levels := map[string]*PriorityLevel{}
	level := func(name string) *PriorityLevel {
		pl := levels[name]
		if pl == nil {
			pl = &PriorityLevel{Name: name, RejectedByReason: map[string]float64{}}
			levels[name] = pl
		}
		return pl
	}
	gauge := func(metric string, set func(*PriorityLevel, float64)) {
		sums, _ := m.Sum(metric, "priority_level", nil)
		for name, v := range sums {
			set(level(name), v)
		}
	}
	gauge(metricNominalSeats, func(p *PriorityLevel, v float64) { p.NominalSeats = v })
	gauge(metricLowerSeats, func(p *PriorityLevel, v float64) { p.LowerSeats = v })
	gauge(metricUpperSeats, func(p *PriorityLevel, v float64) { p.UpperSeats = v })
	gauge(metricCurrentSeats, func(p *PriorityLevel, v float64) { p.CurrentLimitSeats = v })
	gauge(metricExecutingSeats, func(p *PriorityLevel, v float64) { p.ExecutingSeats = v })
	gauge(metricInQueue, func(p *PriorityLevel, v float64) { p.InQueue = v })
	gauge(metricDispatched, func(p *PriorityLevel, v float64) { p.Dispatched = v })
	for _, smp := range m[metricRejected] {
		pl := level(smp.Labels["priority_level"])
		pl.Rejected += smp.Value
		pl.RejectedByReason[smp.Labels["reason"]] += smp.Value
	}
	for _, pl := range levels {
		s.Levels = append(s.Levels, *pl)
	}
	sort.Slice(s.Levels, func(i, j int) bool { return s.Levels[i].Name < s.Levels[j].Name })
	if ex, ok := levels["exempt"]; ok && ex.UpperSeats > ex.NominalSeats {
		s.ConcurrencyLimit = int(ex.UpperSeats - ex.NominalSeats)
	}

	if in, ok := m.Sum(metricInflight, "request_kind", nil); ok {
		s.Inflight = in
	}
	for verb, h := range m.Histograms(metricRequestLatency, "verb", nil) {
		if verb == "WATCH" || verb == "CONNECT" || h.Count == 0 {
			continue
		}
		s.Verbs = append(s.Verbs, latencyOf(verb, h))
	}
	sortSlowestFirst(s.Verbs)
	for op, h := range m.Histograms(metricEtcdLatency, "operation", nil) {
		if h.Count > 0 {
			s.Etcd = append(s.Etcd, latencyOf(op, h))
		}
	}
	sortSlowestFirst(s.Etcd)

	caches := map[string]*WatchCache{}
	cache := func(labels map[string]string) *WatchCache {
		r := labels["resource"]
		if g := labels["group"]; g != "" {
			r = g + "/" + r
		}
		c := caches[r]
		if c == nil {
			c = &WatchCache{Resource: r}
			caches[r] = c
		}
		return c
	}
	for _, smp := range m[metricWatchCacheCap] {
		cache(smp.Labels).Capacity += smp.Value
	}
	for _, smp := range m[metricTerminated] {
		cache(smp.Labels).Terminated += smp.Value
	}
	for _, c := range caches {
		s.WatchCaches = append(s.WatchCaches, *c)
	}
	sort.Slice(s.WatchCaches, func(i, j int) bool { return s.WatchCaches[i].Resource < s.WatchCaches[j].Resource })
	return s
}

func latencyOf(key string, h Histogram) Latency {
	return Latency{Key: key, Count: h.Count, Mean: seconds(h.Mean()), P50: seconds(h.Quantile(0.5)), P99: seconds(h.Quantile(0.99))}
}

func seconds(f float64) time.Duration {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func sortSlowestFirst(l []Latency) {
	sort.Slice(l, func(i, j int) bool {
		if l[i].P99 != l[j].P99 {
			return l[i].P99 > l[j].P99
		}
		return l[i].Key < l[j].Key
	})
}

// Level returns the priority level named name.
func (s ServerMetrics) Level(name string) (PriorityLevel, bool) {
	for _, pl := range s.Levels {
		if pl.Name == name {
			return pl, true
		}
	}
	return PriorityLevel{}, false
}
