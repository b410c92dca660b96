package audit_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/webhook/audit"
)

// staticMapper knows ConfigMaps and Deployments.
type staticMapper struct{}

func (staticMapper) ResourceFor(obj runtime.Object) (schema.GroupVersionResource, error) {
	switch obj.(type) {
	case *corev1.ConfigMap:
		return schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, nil
	case *appsv1.Deployment:
		return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, nil
	}
	return schema.GroupVersionResource{}, errors.New("no such resource")
}

const batch = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[
{"stage":"ResponseComplete","verb":"update","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"a","name":"one"},"responseStatus":{"code":200}},
{"stage":"ResponseComplete","verb":"update","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"b","name":"two"},"responseStatus":{"code":200}},
{"stage":"ResponseComplete","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"a"},"responseStatus":{"code":201}},
{"stage":"ResponseComplete","verb":"patch","user":{"username":"bob"},"objectRef":{"resource":"deployments","apiGroup":"apps","namespace":"a","name":"web"},"responseStatus":{"code":200}},
{"stage":"ResponseComplete","verb":"update","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"a","name":"s"},"responseStatus":{"code":200}}
]}`

type fixture struct {
	srv *httptest.Server
	q   *queue.Queue[controller.Request]
	reg *prometheus.Registry
	m   *audit.Metrics
	got []controller.Request // keys of the Deployment callback
}

func newFixture(t *testing.T, o audit.Options) *fixture {
	t.Helper()
	f := &fixture{q: queue.New(queue.Options[controller.Request]{}), reg: prometheus.NewRegistry()}
	var err error
	if f.m, err = audit.NewMetrics(f.reg); err != nil {
		t.Fatal(err)
	}
	o.Mapper, o.Metrics = staticMapper{}, f.m
	r, err := audit.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.Watch[*corev1.ConfigMap](r, f.q, audit.Filter{Namespaces: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	err = audit.WatchFunc[*appsv1.Deployment](r, audit.Filter{}, func(k controller.Request, ev *auditv1.Event) {
		f.got = append(f.got, k)
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(r)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.q.ShutDown)
	return f
}

func (f *fixture) post(t *testing.T, method, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+"/audit", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func drain(q *queue.Queue[controller.Request]) map[controller.Request]bool {
	out := map[controller.Request]bool{}
	for {
		k, ok := q.TryGet()
		if !ok {
			return out
		}
		out[k] = true
		q.Done(k)
	}
}

func TestReceiverTurnsMatchingEventsIntoKeys(t *testing.T) {
	f := newFixture(t, audit.Options{})
	if code, body := f.post(t, http.MethodPost, "application/json", batch); code != http.StatusOK {
		t.Fatalf("POST = %d %s, want 200", code, body)
	}
	keys := drain(f.q)
	want := controller.Request{Namespace: "a", Name: "one"}
	if len(keys) != 1 || !keys[want] {
		t.Fatalf("queue got %v, want only %v", keys, want)
	}
	if len(f.got) != 1 || f.got[0] != (controller.Request{Namespace: "a", Name: "web"}) {
		t.Fatalf("Deployment callback got %v, want [a/web]", f.got)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"batches", value(t, f.reg, audit.MetricBatches, nil), 1},
		{"events", value(t, f.reg, audit.MetricEventsReceived, nil), 5},
		{"matched configmaps", value(t, f.reg, audit.MetricEventsMatched, map[string]string{"resource": "configmaps"}), 2},
		{"enqueued configmaps", value(t, f.reg, audit.MetricEventsEnqueued, map[string]string{"resource": "configmaps"}), 1},
		{"skipped configmaps", value(t, f.reg, audit.MetricEventsSkipped, map[string]string{"resource": "configmaps", "reason": audit.SkipNoName}), 1},
		{"enqueued deployments", value(t, f.reg, audit.MetricEventsEnqueued, map[string]string{"resource": "deployments.apps"}), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestReceiverRejectsMalformedBatches(t *testing.T) {
	f := newFixture(t, audit.Options{MaxBodyBytes: 2048})
	big := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[],"pad":"` + strings.Repeat("x", 4096) + `"}`
	tests := []struct {
		name, method, contentType, body string
		code                            int
		reason, mention                 string
	}{
		{"GET", http.MethodGet, "", "", http.StatusMethodNotAllowed, audit.RejectMethod, "want POST"},
		{"PUT", http.MethodPut, "application/json", batch, http.StatusMethodNotAllowed, audit.RejectMethod, "want POST"},
		{"text body", http.MethodPost, "text/plain", "hello", http.StatusBadRequest, audit.RejectContentType, "text/plain"},
		{"not JSON", http.MethodPost, "application/json", "hello", http.StatusBadRequest, audit.RejectNotJSON, "not JSON"},
		{"wrong kind", http.MethodPost, "application/json", `{"kind":"Policy","apiVersion":"audit.k8s.io/v1"}`, http.StatusBadRequest, audit.RejectWrongType, `kind "Policy"`},
		{"oversized", http.MethodPost, "application/json", big, http.StatusBadRequest, audit.RejectTooLarge, "limit of 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := value(t, f.reg, audit.MetricBatchesRejected, map[string]string{"reason": tt.reason})
			code, body := f.post(t, tt.method, tt.contentType, tt.body)
			if code != tt.code || !strings.Contains(body, tt.mention) {
				t.Fatalf("got %d %q, want %d mentioning %q", code, body, tt.code, tt.mention)
			}
			after := value(t, f.reg, audit.MetricBatchesRejected, map[string]string{"reason": tt.reason})
			if after != before+1 {
				t.Fatalf("rejected{reason=%q} went %v → %v, want +1", tt.reason, before, after)
			}
		})
	}
	if keys := drain(f.q); len(keys) != 0 {
		t.Fatalf("rejected batches enqueued %v", keys)
	}
}

// TestReceiverOversizedChunkedBody checks the limit holds when the body's
// length is not announced.
func TestReceiverOversizedChunkedBody(t *testing.T) {
	f := newFixture(t, audit.Options{MaxBodyBytes: 1024})
	pr, pw := io.Pipe()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		pw.Write([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[],"pad":"`))
		pw.Write([]byte(strings.Repeat("y", 4096)))
		pw.Write([]byte(`"}`))
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL, pr)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pr.Close() // the writer may still be blocked if the server stopped reading early
	<-wrote
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), audit.RejectTooLarge) {
		t.Fatalf("got %d %q, want 400 too_large", resp.StatusCode, b)
	}
}

func TestWatchErrors(t *testing.T) {
	q := queue.New(queue.Options[controller.Request]{})
	defer q.ShutDown()
	noMapper, _ := audit.New(audit.Options{})
	if err := audit.Watch[*corev1.ConfigMap](noMapper, q, audit.Filter{}); err == nil || !strings.Contains(err.Error(), "Mapper") {
		t.Errorf("Watch without a Mapper: err = %v, want one naming the Mapper", err)
	}
	r, _ := audit.New(audit.Options{Mapper: staticMapper{}})
	if err := audit.Watch[*corev1.Secret](r, q, audit.Filter{}); err == nil || !strings.Contains(err.Error(), "*v1.Secret") {
		t.Errorf("Watch of an unmapped type: err = %v, want one naming *v1.Secret", err)
	}
	if err := audit.Watch[*corev1.ConfigMap](r, nil, audit.Filter{}); err == nil {
		t.Error("Watch with a nil queue: no error")
	}
	if err := audit.WatchFunc[*corev1.ConfigMap](r, audit.Filter{}, nil); err == nil {
		t.Error("WatchFunc with a nil func: no error")
	}
	if _, err := audit.New(audit.Options{MaxBodyBytes: -1}); err == nil {
		t.Error("New with a negative MaxBodyBytes: no error")
	}
}

// value reads the series name{labels} from reg; 0 when it does not exist.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
