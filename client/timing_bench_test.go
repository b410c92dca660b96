package client

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// served answers every request in-process with a small body after calling
// the httptrace hooks a reused HTTP/2 connection calls, so a benchmark
// sees the instrumentation's whole per-request cost and nothing else.
type served struct{}

func (served) RoundTrip(req *http.Request) (*http.Response, error) {
	if ct := httptrace.ContextClientTrace(req.Context()); ct != nil {
		ct.GotConn(httptrace.GotConnInfo{Reused: true})
		ct.WroteRequest(httptrace.WroteRequestInfo{})
		ct.GotFirstResponseByte()
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Header: http.Header{
			headerFlowSchemaUID:    {"ad80d8b7-dd9d-48f1-b03b-05b80e7a3190"},
			headerPriorityLevelUID: {"ed174cf6-511a-4e6e-9681-f61ef7fdadec"},
		},
		Body: io.NopCloser(strings.NewReader(`{"kind":"ConfigMap"}`)),
	}, nil
}

// BenchmarkRequestInstrumentation is the in-process cost per request of the
// RequestMetrics round tripper (timing, metrics, APF headers) over a bare
// one; compare with the round trip of a real GET (BenchmarkClientOverhead
// in bench/) to get the overhead in percent.
func BenchmarkRequestInstrumentation(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "https://127.0.0.1:6443/api/v1/namespaces/default/configmaps/target", nil)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewRequestMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		rt   http.RoundTripper
	}{{"instrument=none", served{}}, {"instrument=timing+metrics", measured{m: m, next: served{}}}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := v.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
