package client

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// RequestMetrics counts and times every request a Client (and its
// informers) sends. The rest_client_* metrics have client-go's names and
// labels so existing dashboards work; the skiff_* ones break a request
// down further:
//
//	rest_client_requests_total{code,method,host}                   counter
//	rest_client_request_duration_seconds{verb,host}                histogram, until the response headers (a watch: until it is established)
//	skiff_rest_client_request_phase_seconds{phase,verb}            histogram: dns, connect, tls, server, transfer (see PhaseDNS ...); verb is the Kubernetes verb (get, list, watch, create, ...)
//	skiff_rest_client_connections_total{reused}                    counter: connections taken for a request, "true" when one was reused from the pool
//	skiff_rest_client_priority_level_responses_total{flow_schema_uid,priority_level_uid}
//	                                                               counter: responses by the API Priority and Fairness classification the server reported
//
// LastPriorityAndFairness returns the classification of the latest
// response. Create RequestMetrics once per registry with NewRequestMetrics
// and pass it in Options.Metrics; a manager does this. Its methods are safe
// for concurrent use.
type RequestMetrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	phases        *prometheus.HistogramVec
	connections   *prometheus.CounterVec
	reused, fresh prometheus.Counter
	apf           *prometheus.CounterVec
	lastAPF       atomic.Pointer[PriorityAndFairness]
}

// NewRequestMetrics creates the metrics and registers them on reg.
func NewRequestMetrics(reg prometheus.Registerer) (*RequestMetrics, error) {
	m := &RequestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rest_client_requests_total",
			Help: "Number of HTTP requests to the API server, by status code, method and host.",
		}, []string{"code", "method", "host"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rest_client_request_duration_seconds",
			Help:    "Request latency until the response headers, by verb and host.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60},
		}, []string{"verb", "host"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skiff_rest_client_request_phase_seconds",
			Help: "Time of each phase of a request to the API server (dns, connect, tls: new connections only; server: request written to first response byte; transfer: first byte to end of body, not for watches), by phase and Kubernetes verb.",
			// Loopback and in-cluster phases take tens of microseconds.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"phase", "verb"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_rest_client_connections_total",
			Help: "Connections taken for requests to the API server; reused=\"true\" when one came from the pool (no dns, connect or tls phase).",
		}, []string{"reused"}),
		apf: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_rest_client_priority_level_responses_total",
			Help: "Responses from the API server by the API Priority and Fairness flow schema and priority level UIDs it reported (X-Kubernetes-PF-FlowSchema-UID, X-Kubernetes-PF-PriorityLevel-UID).",
		}, []string{"flow_schema_uid", "priority_level_uid"}),
	}
	m.reused = m.connections.WithLabelValues("true")
	m.fresh = m.connections.WithLabelValues("false")
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.phases, m.connections, m.apf} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// LastPriorityAndFairness returns the API Priority and Fairness
// classification of the latest response that carried one, and false if
// none has.
func (m *RequestMetrics) LastPriorityAndFairness() (PriorityAndFairness, bool) {
	if p := m.lastAPF.Load(); p != nil {
		return *p, true
	}
	return PriorityAndFairness{}, false
}

func (m *RequestMetrics) notePriorityAndFairness(h http.Header) {
	pf, ok := priorityAndFairnessOf(h)
	if !ok {
		return
	}
	m.apf.WithLabelValues(pf.FlowSchemaUID, pf.PriorityLevelUID).Inc()
	if last := m.lastAPF.Load(); last == nil || *last != pf {
		m.lastAPF.Store(&pf)
	}
}

// install wraps cfg's transport so every request is measured.
func (m *RequestMetrics) install(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return measured{m: m, next: rt}
	})
}

type measured struct {
	m    *RequestMetrics
	next http.RoundTripper
}

func (t measured) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	req, timer := t.m.traceRequest(req)
	resp, err := t.next.RoundTrip(req)
	t.m.duration.WithLabelValues(req.Method, req.URL.Host).Observe(time.Since(start).Seconds())
	code := "<error>"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		t.m.notePriorityAndFairness(resp.Header)
		if !timer.watch && resp.Body != nil {
			resp.Body = &endNotifier{ReadCloser: resp.Body, end: timer.bodyEnded}
		}
	}
	t.m.requests.WithLabelValues(code, req.Method, req.URL.Host).Inc()
	return resp, err
}
