package conversion_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

// TestOverHTTPSWithMetrics serves the webhook over TLS, as the API server
// reaches it, and checks every result is counted and timed.
func TestOverHTTPSWithMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	w, err := conversion.New[*boat.V2](boatScheme(t), conversion.Options{Registerer: reg, MaxBodyBytes: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = conversion.Spoke(w, func(src *boat.V1, dst *boat.V2) error {
		if src.Spec.Size < 0 {
			panic("negative")
		}
		return boat.ToV2(src, dst)
	}, boat.FromV2)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/convert", w)
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	defer srv.Close()
	hc := srv.Client()

	send := func(body []byte) (int, string) {
		t.Helper()
		resp, err := hc.Post(srv.URL+"/convert", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := send(reviewBody(t, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", 2, nil))); code != 200 || !strings.Contains(body, `"status":"Success"`) {
		t.Fatalf("success case: %d %s", code, body)
	}
	if code, body := send(reviewBody(t, "conversion.test.skiff.dev/v7", v1Boat("ns", "a", 2, nil))); code != 200 || !strings.Contains(body, `"status":"Failure"`) {
		t.Fatalf("failure case: %d %s", code, body)
	}
	for _, bad := range [][]byte{[]byte("nope"), bytes.Repeat([]byte(" "), 5000)} {
		if code, body := send(bad); code != 400 {
			t.Fatalf("bad request: %d %s", code, body)
		}
	}
	if code, body := send(reviewBody(t, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", -1, nil))); code != 500 {
		t.Fatalf("panic case: %d %s", code, body)
	}

	want := map[string]float64{"success": 1, "failure": 1, "bad_request": 2, "panic": 1}
	for result, n := range want {
		if got := testutil.ToFloat64(requestsCounter(t, reg, result)); got != n {
			t.Errorf("skiff_conversion_requests_total{result=%q} = %v, want %v", result, got, n)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "skiff_conversion_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != 5 {
		t.Errorf("latency histogram observed %d requests, want 5", observed)
	}
}

// requestsCounter finds the requests counter's series for result by
// registering an identical vector: the registry hands back its own.
func requestsCounter(t *testing.T, reg *prometheus.Registry, result string) prometheus.Collector {
	t.Helper()
	probe := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_conversion_requests_total",
		Help: "ConversionReviews answered by Skiff conversion webhooks, by hub kind and result (success, failure, bad_request, panic).",
	}, []string{"kind", "result"})
	err := reg.Register(probe)
	are, ok := err.(prometheus.AlreadyRegisteredError)
	if !ok {
		t.Fatalf("the webhook did not register skiff_conversion_requests_total: %v", err)
	}
	return are.ExistingCollector.(*prometheus.CounterVec).WithLabelValues("Boat.conversion.test.skiff.dev", result)
}

// TestTwoWebhooksShareARegistry: one registry, several CRDs' webhooks.
func TestTwoWebhooksShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := conversion.New[*boat.V2](boatScheme(t), conversion.Options{Registerer: reg}); err != nil {
			t.Fatalf("second webhook on one registry: %v", err)
		}
	}
	n, err := testutil.GatherAndCount(reg, "skiff_conversion_requests_total")
	if err != nil || n != 4 {
		t.Fatalf("series at zero: %d (%v), want 4 (one per result)", n, err)
	}
}

func TestStanza(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	got, err := conversion.Stanza(conversion.ClientConfig{URL: "https://127.0.0.1:8443/convert", CABundle: ca})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"strategy":"Webhook","webhook":{"clientConfig":{"caBundle":"` + base64.StdEncoding.EncodeToString(ca) + `","url":"https://127.0.0.1:8443/convert"},"conversionReviewVersions":["v1"]}}`
	if string(b) != want {
		t.Errorf("URL stanza\n got %s\nwant %s", b, want)
	}
	got, err = conversion.Stanza(conversion.ClientConfig{Service: &conversion.Service{Namespace: "sys", Name: "hooks", Path: "/convert"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(got)
	want = `{"strategy":"Webhook","webhook":{"clientConfig":{"service":{"name":"hooks","namespace":"sys","path":"/convert","port":443}},"conversionReviewVersions":["v1"]}}`
	if string(b) != want {
		t.Errorf("Service stanza\n got %s\nwant %s", b, want)
	}

	bad := []struct {
		cc   conversion.ClientConfig
		want string
	}{
		{conversion.ClientConfig{}, "neither URL nor Service"},
		{conversion.ClientConfig{URL: "https://a", Service: &conversion.Service{Namespace: "n", Name: "s"}}, "has both URL"},
		{conversion.ClientConfig{URL: "http://127.0.0.1/convert"}, "scheme must be https"},
		{conversion.ClientConfig{URL: "https:///convert"}, "has no host"},
		{conversion.ClientConfig{URL: "https://u:p@host/convert"}, "user information"},
		{conversion.ClientConfig{URL: "https://host/convert?x=1"}, "query"},
		{conversion.ClientConfig{URL: "https://host/convert#frag"}, "fragment"},
		{conversion.ClientConfig{Service: &conversion.Service{Name: "s"}}, "needs a namespace and a name"},
		{conversion.ClientConfig{Service: &conversion.Service{Namespace: "n", Name: "s", Port: 70000}}, "port 70000 is out of range"},
		{conversion.ClientConfig{Service: &conversion.Service{Namespace: "n", Name: "s", Path: "convert"}}, `path "convert" must start with /`},
		{conversion.ClientConfig{URL: "https://host/", CABundle: []byte("not pem")}, "not PEM"},
		{conversion.ClientConfig{URL: "https://host/", CABundle: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}})}, `is "RSA PRIVATE KEY", want CERTIFICATE`},
		{conversion.ClientConfig{URL: "https://host/", CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})}, "certificate 0"},
	}
	for _, c := range bad {
		if _, err := conversion.Stanza(c.cc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Stanza(%+v) = %v, want an error containing %q", c.cc, err, c.want)
		}
	}
}

// TestLatencyUsesTheInjectedClock: the histogram measures with Options.Now.
func TestLatencyUsesTheInjectedClock(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(0, 0)
	w, err := conversion.New[*boat.V2](boatScheme(t), conversion.Options{Registerer: reg, Now: func() time.Time {
		now = now.Add(300 * time.Millisecond) // each reading is 300ms after the last
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	post(w, []byte("x"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "skiff_conversion_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h.GetSampleCount() == 1 && h.GetSampleSum() != 0.3 {
				t.Errorf("observed %vs, want 0.3s", h.GetSampleSum())
			} else if h.GetSampleCount() == 1 {
				return
			}
		}
	}
	t.Fatal("no request observed in the latency histogram")
}
