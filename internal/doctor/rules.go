package doctor

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Side is who a recommendation is for.
type Side string

const (
	Client Side = "client"
	Server Side = "server"
)

// Severity ranks findings: warnings first.
type Severity string

const (
	Warn Severity = "warn"
	Info Severity = "info"
)

// Finding is a measured fact that calls for a change, and the change.
type Finding struct {
	Severity Severity
	Side     Side
	Measured string // what was measured, with the number
	Advice   string // what to change, naming the setting or flag
}

// Thresholds of the rules. They are deliberately loose: a finding should
// mean something is worth changing, not that a number is imperfect.
const (
	// LowClientQPS: a client-side QPS below this throttles a controller's
	// bursts (client-go's default is 5).
	LowClientQPS = 50
	// SlowRoundTrip: the fastest small list slower than this means the
	// client is far from the server.
	SlowRoundTrip = 100 * time.Millisecond
	// LowConcurrencyLimit: a server total below this (default 600) is small.
	LowConcurrencyLimit = 100
	// FewSeats: a priority level with at most this many nominal seats runs
	// that few requests at once.
	FewSeats = 2
	// Saturated: in-flight requests at or above this fraction of the
	// concurrency limit.
	Saturated = 0.8
	// SlowList, SlowRead, SlowWrite: p99 request latency by verb.
	SlowList  = time.Second
	SlowRead  = 500 * time.Millisecond
	SlowWrite = time.Second
	// NearRequestTimeout: a p99 this high approaches --request-timeout
	// (default 60s).
	NearRequestTimeout = 30 * time.Second
	// SlowEtcd: etcd p99 above this (a healthy etcd answers in a few ms).
	SlowEtcd = 100 * time.Millisecond
)

// Recommend derives findings from a report: each rule is triggered by a
// measured value and says what to change on the client or the server.
// Warnings come first; otherwise the order is the rules' order. It is pure.
func Recommend(r Report) []Finding {
	var out []Finding
	add := func(sev Severity, side Side, measured, advice string) {
		out = append(out, Finding{sev, side, measured, advice})
	}
	c := r.Client
	if c.QPS > 0 && c.QPS < LowClientQPS {
		add(Warn, Client, fmt.Sprintf("client-side rate limit QPS %g / Burst %d throttles every burst of requests beyond it", c.QPS, c.Burst),
			fmt.Sprintf("turn it off (rest.Config QPS -1, Skiff's default, which backs off on 429 instead) or raise it to at least %d; the server's API Priority and Fairness is the real limiter", LowClientQPS*2))
	}
	if r.Features.Protobuf.Served && !strings.Contains(c.ContentType, "protobuf") {
		add(Info, Client, fmt.Sprintf("the server serves protobuf but the client sends %s", orText(c.ContentType, "JSON")),
			"set rest.Config ContentType to application/vnd.kubernetes.protobuf for built-in types (smaller, faster to decode; Skiff's client does)")
	}
	if c.Timeout == 0 {
		add(Info, Client, "no client request timeout: a request to a hung server waits until TCP gives up",
			"give non-watch requests a deadline (a context timeout, e.g. 30s); rest.Config Timeout also cuts watches")
	}
	if c.Proto != "" && !strings.HasPrefix(c.Proto, "HTTP/2") {
		add(Info, Client, fmt.Sprintf("the connection uses %s: one request at a time per connection", c.Proto),
			"allow HTTP/2 (unset DISABLE_HTTP2, avoid proxies that downgrade) so requests share one multiplexed connection")
	}
	if len(r.Lists) > 0 {
		fastest := r.Lists[0]
		for _, d := range r.Lists {
			fastest = min(fastest, d)
		}
		if fastest > SlowRoundTrip {
			add(Warn, Client, fmt.Sprintf("the fastest one-item list took %s: every request pays a long round trip", ms(fastest)),
				"run the client near the API server, and read from informers (list once, then watch) instead of polling")
		}
	}
	if w := r.Features.WatchList; w.Known && !w.Served {
		add(Info, Server, fmt.Sprintf("streaming watch-list is not served (%s)", w.Detail),
			"enable the WatchList feature (kube-apiserver --feature-gates=WatchList=true) so informers start from a stream instead of paginated lists")
	}
	if r.Flow.Exempt {
		add(Warn, Server, fmt.Sprintf("identity %s runs in the exempt priority level %q: API Priority and Fairness and the in-flight limits never hold it back", orUnknown(r.Identity.User), r.Flow.PriorityLevel),
			"run controllers as their own service account (not system:masters) matched by a FlowSchema to a limited level such as workload-high, so a runaway client cannot starve the server")
	}
	if m := r.Metrics; m != nil {
		out = append(out, serverRules(r, *m)...)
	} else {
		for _, u := range r.Unreadable {
			if strings.Contains(u.What, "/metrics") {
				add(Info, Server, "server metrics not readable: "+u.Why,
					"grant get on the non-resource URL /metrics (e.g. bind the system:monitoring ClusterRole) to see limits, queueing and latency")
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity == Warn && out[j].Severity != Warn })
	return out
}

func serverRules(r Report, m ServerMetrics) []Finding {
	var out []Finding
	add := func(sev Severity, side Side, measured, advice string) {
		out = append(out, Finding{sev, side, measured, advice})
	}
	if m.ConcurrencyLimit > 0 && m.ConcurrencyLimit < LowConcurrencyLimit {
		add(Warn, Server,
			fmt.Sprintf("server concurrency limit is %d seats (--max-requests-inflight + --max-mutating-requests-inflight; default 400 + 200 = 600)", m.ConcurrencyLimit),
			"raise --max-requests-inflight and --max-mutating-requests-inflight if the server has CPU and memory to spare; every priority level's seats are a share of this total")
	}
	if m.ConcurrencyLimit > 0 && m.Inflight != nil {
		if n := m.Inflight["readOnly"] + m.Inflight["mutating"]; n >= Saturated*float64(m.ConcurrencyLimit) {
			add(Warn, Server,
				fmt.Sprintf("%g requests were in flight in the last second, %.0f%% of the %d-seat limit", n, 100*n/float64(m.ConcurrencyLimit), m.ConcurrencyLimit),
				"raise --max-requests-inflight/--max-mutating-requests-inflight, or find the client sending the most (apiserver_request_total by user agent in audit logs)")
		}
	}
	for _, pl := range m.Levels {
		if pl.Rejected > 0 {
			advice := fmt.Sprintf("give %q more seats (raise its nominalConcurrencyShares, or the server total); clients should retry 429 after Retry-After (Skiff's client does)", pl.Name)
			if pl.RejectedByReason["queue-full"] > 0 {
				advice = fmt.Sprintf("lengthen %q's queues (queues, queueLengthLimit) or give it more seats (nominalConcurrencyShares); clients should retry 429 after Retry-After", pl.Name)
			}
			add(Warn, Server, fmt.Sprintf("API Priority and Fairness rejected %g requests (429) at priority level %q (%s)", pl.Rejected, pl.Name, reasons(pl.RejectedByReason)), advice)
		}
		if pl.InQueue > 0 {
			add(Info, Server, fmt.Sprintf("%g requests are waiting in queues at priority level %q", pl.InQueue, pl.Name),
				fmt.Sprintf("if this persists, give %q more seats (nominalConcurrencyShares) or spread its flows (distinguisherMethod ByUser)", pl.Name))
		}
		if pl.Name != "exempt" && pl.CurrentLimitSeats > 0 && pl.ExecutingSeats >= pl.CurrentLimitSeats {
			add(Warn, Server, fmt.Sprintf("priority level %q is saturated: %g of %g seats executing", pl.Name, pl.ExecutingSeats, pl.CurrentLimitSeats),
				fmt.Sprintf("raise %q's nominalConcurrencyShares or lendablePercent of idle levels", pl.Name))
		}
	}
	if name := r.Flow.PriorityLevel; name != "" && !r.Flow.Exempt {
		if pl, ok := m.Level(name); ok && pl.NominalSeats <= FewSeats {
			add(Warn, Server, fmt.Sprintf("this identity's priority level %q has %g nominal seats: at most that many of its requests run at once before borrowing", name, pl.NominalSeats),
				fmt.Sprintf("give the identity a FlowSchema to a level with more seats (workload-high, or a dedicated PriorityLevelConfiguration), or raise %q's nominalConcurrencyShares", name))
		}
	}
	for _, v := range m.Verbs {
		switch {
		case v.P99 >= NearRequestTimeout:
			add(Warn, Server, fmt.Sprintf("%s p99 is %s, near --request-timeout (default 60s)", v.Key, ms(v.P99)),
				"make requests smaller (paginate lists with limit) or raise kube-apiserver --request-timeout; requests past it fail with 504")
		case v.Key == "LIST" && v.P99 >= SlowList:
			add(Warn, Client, fmt.Sprintf("LIST p99 is %s on the server", ms(v.P99)),
				"list once and watch (informers), paginate with limit, and list with resourceVersion=\"0\" or watch-list so the watch cache serves it instead of etcd")
		case (v.Key == "GET") && v.P99 >= SlowRead:
			add(Warn, Server, fmt.Sprintf("GET p99 is %s on the server", ms(v.P99)),
				"check etcd latency and the apiserver's CPU; clients should read from informer caches")
		case isWrite(v.Key) && v.P99 >= SlowWrite:
			add(Warn, Server, fmt.Sprintf("%s p99 is %s on the server", v.Key, ms(v.P99)),
				"check etcd latency and admission webhooks (apiserver_admission_webhook_admission_duration_seconds)")
		}
	}
	for _, e := range m.Etcd {
		if e.P99 >= SlowEtcd {
			add(Warn, Server, fmt.Sprintf("etcd %s p99 is %s (healthy: a few ms)", e.Key, ms(e.P99)),
				"put etcd on local SSD/NVMe, check etcd_disk_wal_fsync_duration_seconds, defragment, and keep objects and lists small")
			break
		}
	}
	for _, c := range m.WatchCaches {
		if c.Terminated > 0 {
			add(Warn, Client, fmt.Sprintf("%g watchers of %s were terminated for falling behind", c.Terminated, c.Resource),
				"consume watch events without blocking (hand them to a queue); if clients then relist with 410 Gone, raise kube-apiserver --watch-cache-sizes for "+c.Resource)
		}
	}
	return out
}

func isWrite(verb string) bool {
	switch verb {
	case "POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION", "CREATE", "UPDATE":
		return true
	}
	return false
}
