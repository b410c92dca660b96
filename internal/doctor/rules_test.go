package doctor

import (
	"strings"
	"testing"
	"time"
)

// healthy is a report nothing in it calls for a change.
func healthy() Report {
	return Report{
		Server:   "https://api.example:6443",
		Version:  "v1.36.3",
		Identity: Identity{User: "system:serviceaccount:ops:foo", Groups: []string{"system:serviceaccounts"}},
		Lists:    []time.Duration{2 * time.Millisecond, 3 * time.Millisecond},
		Features: Features{
			WatchList: Support{Known: true, Served: true, Detail: "x"},
			Protobuf:  Support{Known: true, Served: true, Detail: "x"},
			Bookmarks: Support{Known: true, Served: true, Detail: "x"},
		},
		Flow:   Flow{FlowSchema: "service-accounts", PriorityLevel: "workload-low", Shares: 100},
		Client: ClientSettings{QPS: -1, Timeout: 30 * time.Second, ContentType: "application/vnd.kubernetes.protobuf", Proto: "HTTP/2.0"},
		Metrics: &ServerMetrics{
			ConcurrencyLimit: 600,
			Inflight:         map[string]float64{"readOnly": 10, "mutating": 2},
			Levels:           []PriorityLevel{{Name: "workload-low", NominalSeats: 245, CurrentLimitSeats: 245, ExecutingSeats: 3}},
			Verbs:            []Latency{{Key: "LIST", Count: 10, P99: 50 * time.Millisecond}, {Key: "GET", Count: 10, P99: 5 * time.Millisecond}, {Key: "POST", Count: 10, P99: 20 * time.Millisecond}},
			Etcd:             []Latency{{Key: "get", Count: 10, P99: 5 * time.Millisecond}},
			WatchCaches:      []WatchCache{{Resource: "pods", Capacity: 100}},
		},
	}
}

func TestHealthyReportHasNoFindings(t *testing.T) {
	if f := Recommend(healthy()); len(f) != 0 {
		t.Errorf("findings for a healthy report: %+v", f)
	}
}

// Each rule fires on its own measured input, names the number it measured
// and the setting or flag to change.
func TestEachRuleFiresOnItsFinding(t *testing.T) {
	cases := []struct {
		name     string
		change   func(*Report)
		side     Side
		measured string
		advice   string
	}{
		{"client QPS", func(r *Report) { r.Client.QPS, r.Client.Burst = 5, 10 }, Client, "QPS 5 / Burst 10", "QPS -1"},
		{"JSON", func(r *Report) { r.Client.ContentType = "" }, Client, "sends JSON", "application/vnd.kubernetes.protobuf"},
		{"no timeout", func(r *Report) { r.Client.Timeout = 0 }, Client, "no client request timeout", "deadline"},
		{"HTTP/1.1", func(r *Report) { r.Client.Proto = "HTTP/1.1" }, Client, "HTTP/1.1", "HTTP/2"},
		{"far", func(r *Report) { r.Lists = []time.Duration{300 * time.Millisecond, 200 * time.Millisecond} }, Client, "200.0ms", "informers"},
		{"no watch-list", func(r *Report) { r.Features.WatchList = Support{Known: true, Detail: "HTTP 400"} }, Server, "HTTP 400", "WatchList=true"},
		{"exempt", func(r *Report) { r.Flow.PriorityLevel, r.Flow.Exempt = "exempt", true }, Server, "system:serviceaccount:ops:foo", "FlowSchema"},
		{"tight limit", func(r *Report) { r.Metrics.ConcurrencyLimit, r.Metrics.Inflight = 7, map[string]float64{"readOnly": 1} }, Server, "7 seats", "--max-requests-inflight"},
		{"saturated server", func(r *Report) { r.Metrics.Inflight = map[string]float64{"readOnly": 400, "mutating": 100} }, Server, "500 requests", "--max-mutating-requests-inflight"},
		{"rejections", func(r *Report) {
			r.Metrics.Levels[0].Rejected, r.Metrics.Levels[0].RejectedByReason = 9, map[string]float64{"time-out": 9}
		}, Server, "rejected 9 requests (429) at priority level \"workload-low\" (time-out 9)", "nominalConcurrencyShares"},
		{"queue full", func(r *Report) {
			r.Metrics.Levels[0].Rejected, r.Metrics.Levels[0].RejectedByReason = 2, map[string]float64{"queue-full": 2}
		}, Server, "queue-full 2", "queueLengthLimit"},
		{"queued", func(r *Report) { r.Metrics.Levels[0].InQueue = 4 }, Server, "4 requests are waiting", "nominalConcurrencyShares"},
		{"level saturated", func(r *Report) { r.Metrics.Levels[0].ExecutingSeats = 245 }, Server, "245 of 245 seats", "lendablePercent"},
		{"few seats", func(r *Report) { r.Metrics.Levels[0].NominalSeats = 1 }, Server, "1 nominal seats", "FlowSchema"},
		{"request timeout", func(r *Report) { r.Metrics.Verbs[0].P99 = 45 * time.Second }, Server, "LIST p99 is 45000.0ms", "--request-timeout"},
		{"slow list", func(r *Report) { r.Metrics.Verbs[0].P99 = 2 * time.Second }, Client, "LIST p99 is 2000.0ms", "resourceVersion"},
		{"slow get", func(r *Report) { r.Metrics.Verbs[1].P99 = time.Second }, Server, "GET p99", "etcd"},
		{"slow write", func(r *Report) { r.Metrics.Verbs[2].P99 = 3 * time.Second }, Server, "POST p99", "admission webhooks"},
		{"slow etcd", func(r *Report) { r.Metrics.Etcd[0].P99 = 400 * time.Millisecond }, Server, "etcd get p99 is 400.0ms", "etcd_disk_wal_fsync_duration_seconds"},
		{"terminated watchers", func(r *Report) { r.Metrics.WatchCaches[0].Terminated = 3 }, Client, "3 watchers of pods", "--watch-cache-sizes"},
		{"no metrics", func(r *Report) {
			r.Metrics = nil
			r.Unreadable = []Unreadable{{"server metrics (GET /metrics)", `forbidden: User "x" cannot get path "/metrics"`}}
		}, Server, `cannot get path "/metrics"`, "system:monitoring"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthy()
			tc.change(&r)
			f := Recommend(r)
			if len(f) != 1 {
				t.Fatalf("want exactly one finding, got %+v", f)
			}
			if f[0].Side != tc.side || !strings.Contains(f[0].Measured, tc.measured) || !strings.Contains(f[0].Advice, tc.advice) {
				t.Errorf("finding %+v: want side %s, measured mentioning %q, advice mentioning %q", f[0], tc.side, tc.measured, tc.advice)
			}
		})
	}
}

func TestWarningsComeFirst(t *testing.T) {
	r := healthy()
	r.Client.Timeout = 0           // info
	r.Metrics.ConcurrencyLimit = 7 // warn
	r.Metrics.Inflight = nil
	f := Recommend(r)
	if len(f) != 2 || f[0].Severity != Warn || f[1].Severity != Info {
		t.Errorf("findings %+v: want the warning first", f)
	}
}
