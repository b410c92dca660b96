package doctor

import (
	"os"
	"strings"
	"testing"
	"time"
)

func parseFile(t *testing.T, path string) Metrics {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ParseMetrics(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The golden scrape is a real kube-apiserver v1.36.3 started with
// --max-requests-inflight=5 --max-mutating-requests-inflight=2 (trimmed to
// the families doctor reads).
func TestSummarizeRealScrapeOfATightServer(t *testing.T) {
	s := Summarize(parseFile(t, "testdata/apiserver-v1.36-tight-inflight.txt"))
	if s.ConcurrencyLimit != 7 {
		t.Errorf("ConcurrencyLimit = %d, want 5+2 = 7", s.ConcurrencyLimit)
	}
	if len(s.Levels) != 8 {
		t.Errorf("%d priority levels, want the 8 defaults: %+v", len(s.Levels), s.Levels)
	}
	wl, ok := s.Level("workload-low")
	if !ok || wl.NominalSeats != 3 || wl.UpperSeats != 10 {
		t.Errorf("workload-low = %+v, %v; want nominal 3, upper 10", wl, ok)
	}
	if _, ok := s.Inflight["mutating"]; !ok {
		t.Errorf("Inflight = %v, want a mutating entry", s.Inflight)
	}
	verbs := map[string]Latency{}
	for _, v := range s.Verbs {
		verbs[v.Key] = v
		if v.Key == "WATCH" || v.Key == "CONNECT" {
			t.Errorf("long-running verb %s in request latency", v.Key)
		}
	}
	if g := verbs["GET"]; g.Count == 0 || g.P99 <= 0 || g.P99 < g.P50 {
		t.Errorf("GET latency = %+v", g)
	}
	for i := 1; i < len(s.Verbs); i++ {
		if s.Verbs[i].P99 > s.Verbs[i-1].P99 {
			t.Errorf("verbs not slowest first: %+v", s.Verbs)
		}
	}
	if len(s.Etcd) == 0 {
		t.Error("no etcd latency")
	}
	var ns *WatchCache
	for i := range s.WatchCaches {
		if s.WatchCaches[i].Resource == "namespaces" {
			ns = &s.WatchCaches[i]
		}
	}
	if ns == nil || ns.Capacity != 100 {
		t.Errorf("namespaces watch cache = %+v, want capacity 100", ns)
	}
}

const overloaded = `
apiserver_flowcontrol_nominal_limit_seats{priority_level="exempt"} 0
apiserver_flowcontrol_upper_limit_seats{priority_level="exempt"} 600
apiserver_flowcontrol_nominal_limit_seats{priority_level="workload-low"} 245
apiserver_flowcontrol_current_limit_seats{priority_level="workload-low"} 245
apiserver_flowcontrol_current_executing_seats{flow_schema="service-accounts",priority_level="workload-low"} 200
apiserver_flowcontrol_current_executing_seats{flow_schema="other",priority_level="workload-low"} 45
apiserver_flowcontrol_current_inqueue_requests{flow_schema="service-accounts",priority_level="workload-low"} 12
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="queue-full"} 30
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="time-out"} 4
apiserver_current_inflight_requests{request_kind="readOnly"} 400
apiserver_current_inflight_requests{request_kind="mutating"} 100
apiserver_request_duration_seconds_bucket{verb="LIST",resource="pods",le="1"} 10
apiserver_request_duration_seconds_bucket{verb="LIST",resource="pods",le="60"} 100
apiserver_request_duration_seconds_bucket{verb="LIST",resource="pods",le="+Inf"} 100
apiserver_request_duration_seconds_count{verb="LIST",resource="pods"} 100
apiserver_request_duration_seconds_sum{verb="LIST",resource="pods"} 2000
apiserver_request_duration_seconds_bucket{verb="WATCH",resource="pods",le="+Inf"} 100
apiserver_request_duration_seconds_count{verb="WATCH",resource="pods"} 100
etcd_request_duration_seconds_bucket{operation="get",resource="pods",le="0.1"} 1
etcd_request_duration_seconds_bucket{operation="get",resource="pods",le="1"} 10
etcd_request_duration_seconds_bucket{operation="get",resource="pods",le="+Inf"} 10
etcd_request_duration_seconds_count{operation="get",resource="pods"} 10
etcd_request_duration_seconds_sum{operation="get",resource="pods"} 5
watch_cache_capacity{group="",resource="pods"} 1000
apiserver_terminated_watchers_total{group="",resource="pods"} 3
`

func TestSummarizeOverloadedServer(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(overloaded))
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(m)
	if s.ConcurrencyLimit != 600 {
		t.Errorf("ConcurrencyLimit = %d, want 600", s.ConcurrencyLimit)
	}
	wl, _ := s.Level("workload-low")
	if wl.ExecutingSeats != 245 || wl.InQueue != 12 || wl.Rejected != 34 || wl.RejectedByReason["queue-full"] != 30 {
		t.Errorf("workload-low = %+v", wl)
	}
	if len(s.Verbs) != 1 || s.Verbs[0].Key != "LIST" || s.Verbs[0].P99 < 30*time.Second {
		t.Errorf("Verbs = %+v, want only LIST with p99 near 60s", s.Verbs)
	}
	if len(s.WatchCaches) != 1 || s.WatchCaches[0] != (WatchCache{"pods", 1000, 3}) {
		t.Errorf("WatchCaches = %+v", s.WatchCaches)
	}
}

func TestSummarizeEmptyScrape(t *testing.T) {
	s := Summarize(Metrics{})
	if s.ConcurrencyLimit != 0 || s.Levels != nil || s.Inflight != nil || s.Verbs != nil {
		t.Errorf("Summarize(empty) = %+v, want zero", s)
	}
}
