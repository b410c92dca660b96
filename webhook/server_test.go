package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
)

func configMap(data map[string]string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "cm", "namespace": "ns"}, "data": data}
}

func newTestServer(t *testing.T, hooks ...webhook.Webhook) (*webhook.Server, *prometheus.Registry, *http.Client) {
	t.Helper()
	certs := newSelfSigned(t)
	reg := prometheus.NewRegistry()
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: certs, Registerer: reg, Logger: quiet, MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		if err := srv.Register(h); err != nil {
			t.Fatal(err)
		}
	}
	return srv, reg, certs.httpClient()
}

func TestValidatingSeesOperationsAndDecides(t *testing.T) {
	var seen atomic.Pointer[webhook.Request[*corev1.ConfigMap]]
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		seen.Store(&req)
		obj := req.Object
		if req.Operation == webhook.Delete {
			obj = req.OldObject
		}
		if obj.Data["bad"] != "" {
			return webhook.DenyWithCode(422, "bad key: "+obj.Data["bad"])
		}
		return webhook.Allow("looks fine")
	}, webhook.Options{Operations: []webhook.Operation{webhook.Create, webhook.Update, webhook.Delete}})
	if err != nil {
		t.Fatal(err)
	}
	srv, reg, c := newTestServer(t, v)
	startServer(t, srv)
	path := v.Path()
	if path != "/validate-core-v1-configmap" || v.Name() != "configmap.core.validate.skiff.dev" {
		t.Fatalf("default path and name = %s, %s", path, v.Name())
	}

	code, rr := post(t, c, srv, path, review(t, "u1", "CREATE", configMapKind, configMap(map[string]string{"a": "1"}), nil, true))
	if code != 200 || !rr.Response.Allowed || rr.Response.UID != "u1" || len(rr.Response.Warnings) != 1 || rr.APIVersion != "admission.k8s.io/v1" {
		t.Fatalf("good create = %d %+v", code, rr)
	}
	got := seen.Load()
	if got.Operation != webhook.Create || !got.DryRun || got.UserInfo.Username != "alice" || got.Namespace != "ns" || got.Name != "cm" ||
		got.Kind.Kind != "ConfigMap" || got.Resource.Resource != "configmaps" || got.OldObject != nil || got.Object.Data["a"] != "1" {
		t.Fatalf("handler saw %+v", got)
	}

	code, rr = post(t, c, srv, path, review(t, "u2", "UPDATE", configMapKind, configMap(map[string]string{"bad": "x"}), configMap(nil), false))
	if code != 200 || rr.Response.Allowed || rr.Response.Status.Code != 422 || rr.Response.Status.Message != "bad key: x" {
		t.Fatalf("bad update = %d %+v", code, rr)
	}
	if got := seen.Load(); got.OldObject == nil || got.DryRun {
		t.Fatalf("update: old object %v, dry run %v", got.OldObject, got.DryRun)
	}

	code, rr = post(t, c, srv, path, review(t, "u3", "DELETE", configMapKind, nil, configMap(map[string]string{"a": "1"}), false))
	if code != 200 || !rr.Response.Allowed {
		t.Fatalf("delete = %d %+v", code, rr)
	}
	if got := seen.Load(); got.Object != nil || got.OldObject.Data["a"] != "1" {
		t.Fatalf("delete: object %v, old object %v; want only the old one", got.Object, got.OldObject)
	}

	if n := metricValue(t, reg, "skiff_webhook_rejections_total", map[string]string{"webhook": path, "code": "422"}); n != 1 {
		t.Fatalf("rejections = %v, want 1", n)
	}
	if n := metricValue(t, reg, "controller_runtime_webhook_requests_total", map[string]string{"webhook": path, "code": "200"}); n != 3 {
		t.Fatalf("requests{code=200} = %v, want 3", n)
	}
	if n := metricValue(t, reg, "controller_runtime_webhook_latency_seconds", map[string]string{"webhook": path}); n != 3 {
		t.Fatalf("latency observations = %v, want 3", n)
	}
	if n := metricValue(t, reg, "controller_runtime_webhook_requests_in_flight", map[string]string{"webhook": path}); n != 0 {
		t.Fatalf("in flight = %v, want 0", n)
	}
}

func TestMutatingPatchesFromTheSentObject(t *testing.T) {
	m, err := webhook.NewMutating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		if req.Object.Data == nil {
			req.Object.Data = map[string]string{}
		}
		if _, ok := req.Object.Data["mode"]; !ok {
			req.Object.Data["mode"] = "default"
		}
		if req.Object.Labels == nil {
			req.Object.Labels = map[string]string{}
		}
		req.Object.Labels["defaulted"] = "true"
		delete(req.Object.Data, "drop")
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, c := newTestServer(t, m)
	startServer(t, srv)

	sent := configMap(map[string]string{"keep": "1", "drop": "2"})
	code, rr := post(t, c, srv, m.Path(), review(t, "u1", "CREATE", configMapKind, sent, nil, false))
	if code != 200 || !rr.Response.Allowed || rr.Response.PatchType != "JSONPatch" {
		t.Fatalf("mutate = %d %+v", code, rr)
	}
	raw, _ := json.Marshal(sent)
	p, err := jsonpatch.DecodePatch(rr.Response.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", rr.Response.Patch, err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply %s: %v", rr.Response.Patch, err)
	}
	var got corev1.ConfigMap
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"keep": "1", "mode": "default"}
	if len(got.Data) != 2 || got.Data["keep"] != want["keep"] || got.Data["mode"] != want["mode"] || got.Labels["defaulted"] != "true" {
		t.Fatalf("patched object %s (patch %s)", patched, rr.Response.Patch)
	}

	// Nothing to change: no patch.
	already := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "cm", "namespace": "ns", "labels": map[string]string{"defaulted": "true"}}, "data": map[string]string{"mode": "x"}}
	code, rr = post(t, c, srv, m.Path(), review(t, "u2", "CREATE", configMapKind, already, nil, false))
	if code != 200 || !rr.Response.Allowed || len(rr.Response.Patch) != 0 {
		t.Fatalf("unchanged object: %d, patch %s", code, rr.Response.Patch)
	}
}

// A field the Go type does not know (the API server's object is newer than
// T) survives the patch, while what the handler removed is still removed.
func TestMutatingPatchKeepsFieldsTheTypeDoesNotKnow(t *testing.T) {
	m, err := webhook.NewMutating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		delete(req.Object.Data, "drop")
		req.Object.Data["mode"] = "default"
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, c := newTestServer(t, m)
	startServer(t, srv)
	sent := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata":    map[string]any{"name": "cm", "namespace": "ns", "futureMeta": "m"},
		"data":        map[string]string{"keep": "1", "drop": "2"},
		"futureField": map[string]any{"x": 1},
	}
	code, rr := post(t, c, srv, m.Path(), review(t, "u1", "CREATE", configMapKind, sent, nil, false))
	if code != 200 || !rr.Response.Allowed {
		t.Fatalf("mutate = %d %+v", code, rr)
	}
	raw, _ := json.Marshal(sent)
	p, err := jsonpatch.DecodePatch(rr.Response.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", rr.Response.Patch, err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply %s: %v", rr.Response.Patch, err)
	}
	var got map[string]any
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if got["futureField"] == nil || got["metadata"].(map[string]any)["futureMeta"] != "m" {
		t.Errorf("a field ConfigMap does not know was removed: %s (patch %s)", patched, rr.Response.Patch)
	}
	data := got["data"].(map[string]any)
	if _, ok := data["drop"]; ok || data["keep"] != "1" || data["mode"] != "default" {
		t.Errorf("data after the patch = %v, want keep=1 mode=default (patch %s)", data, rr.Response.Patch)
	}
}

func TestBadRequestsGet400AndAreCounted(t *testing.T) {
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, reg, c := newTestServer(t, v)
	startServer(t, srv)
	podKind := map[string]string{"group": "", "version": "v1", "kind": "Pod"}
	big := configMap(map[string]string{"big": strings.Repeat("x", 70<<10)})
	for _, tc := range []struct {
		name, reason, message string
		body                  []byte
	}{
		{"not json", "not_json", "not a JSON object", []byte("hello")},
		{"broken json", "not_json", "not valid JSON", []byte(`{"apiVersion":`)},
		{"not a review", "not_admission_review", `kind "ConfigMap"`, []byte(`{"apiVersion":"v1","kind":"ConfigMap"}`)},
		{"wrong field type", "not_admission_review", "request", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":7}`)},
		{"v1beta1", "api_version", "only admission.k8s.io/v1", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`)},
		{"no request", "no_request", "no request", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)},
		{"unknown kind", "kind", "serves only v1/ConfigMap", review(t, "u", "CREATE", podKind, map[string]any{"kind": "Pod"}, nil, false)},
		{"object not a configmap", "object", "decode the object", review(t, "u", "CREATE", configMapKind, map[string]any{"data": 5}, nil, false)},
		{"update without old", "object", "no oldObject", review(t, "u", "UPDATE", configMapKind, configMap(nil), nil, false)},
		{"too large", "body_too_large", "more than the limit", review(t, "u", "CREATE", configMapKind, big, nil, false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, reg, "skiff_webhook_bad_requests_total", map[string]string{"webhook": v.Path(), "reason": tc.reason})
			code, rr := post(t, c, srv, v.Path(), tc.body)
			if code != http.StatusBadRequest || rr.Response.Allowed || rr.Response.Status.Code != 400 || !strings.Contains(rr.Response.Status.Message, tc.message) {
				t.Fatalf("= %d %+v, want 400 saying %q", code, rr.Response, tc.message)
			}
			if after := metricValue(t, reg, "skiff_webhook_bad_requests_total", map[string]string{"webhook": v.Path(), "reason": tc.reason}); after != before+1 {
				t.Fatalf("bad requests{reason=%s} went %v -> %v", tc.reason, before, after)
			}
		})
	}
	if n := metricValue(t, reg, "controller_runtime_webhook_requests_total", map[string]string{"webhook": v.Path(), "code": "400"}); n != 10 {
		t.Fatalf("requests{code=400} = %v, want 10", n)
	}
}

func TestPanicIsA500AndTheServerLives(t *testing.T) {
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		if req.Object.Data["panic"] != "" {
			panic("boom")
		}
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, reg, c := newTestServer(t, v)
	if err := srv.Handle("/raw", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("raw boom") })); err != nil {
		t.Fatal(err)
	}
	startServer(t, srv)
	code, rr := post(t, c, srv, v.Path(), review(t, "u1", "CREATE", configMapKind, configMap(map[string]string{"panic": "1"}), nil, false))
	if code != 500 || rr.Response.Allowed || rr.Response.UID != "u1" || !strings.Contains(rr.Response.Status.Message, "panicked") {
		t.Fatalf("panic = %d %+v", code, rr)
	}
	resp, err := c.Post("https://"+srv.Addr()+"/raw", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("raw handler panic = %d, want 500", resp.StatusCode)
	}
	if code, rr := post(t, c, srv, v.Path(), review(t, "u2", "CREATE", configMapKind, configMap(nil), nil, false)); code != 200 || !rr.Response.Allowed {
		t.Fatalf("after the panics = %d %+v", code, rr)
	}
	if n := metricValue(t, reg, "skiff_webhook_panics_total", map[string]string{"webhook": v.Path()}); n != 1 {
		t.Fatalf("panics = %v, want 1", n)
	}
	if n := metricValue(t, reg, "skiff_webhook_panics_total", map[string]string{"webhook": "/raw"}); n != 1 {
		t.Fatalf("raw panics = %v, want 1", n)
	}
}

func TestOverrunAnswersOnTimeoutAndRunWaitsForTheHandler(t *testing.T) {
	release := make(chan struct{})
	var returned atomic.Bool
	var ctxEnded atomic.Bool
	v, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		<-ctx.Done()
		ctxEnded.Store(true)
		<-release // a handler that ignores its deadline
		returned.Store(true)
		return webhook.Allow()
	}, webhook.Options{TimeoutSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	certs := newSelfSigned(t)
	reg := prometheus.NewRegistry()
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: certs, Registerer: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(v)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); close(release) }()
	waitServing(t, srv)

	start := time.Now()
	code, rr := post(t, certs.httpClient(), srv, v.Path(), review(t, "u1", "CREATE", configMapKind, configMap(nil), nil, false))
	took := time.Since(start)
	if code != 200 || rr.Response.Allowed || rr.Response.Status.Code != 504 || !strings.Contains(rr.Response.Status.Message, "did not decide within 800ms") {
		t.Fatalf("overrun = %d %+v", code, rr)
	}
	if took >= time.Second {
		t.Fatalf("answered after %v, not before the API server's 1s timeout", took)
	}
	// The answer went out when the deadline passed; the handler sees its ctx end then too.
	testenv.Eventually(t, 5*time.Second, "the handler's ctx to end at the deadline", func() (bool, error) { return ctxEnded.Load(), nil })
	if n := metricValue(t, reg, "skiff_webhook_timeouts_total", map[string]string{"webhook": v.Path()}); n != 1 {
		t.Fatalf("timeouts = %v, want 1", n)
	}
	cancel()
	release <- struct{}{} // the handler returns only now: Run must have waited for it
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Run returned before the handler did")
	}
	if srv.Healthz(nil) == nil {
		t.Fatal("Healthz is nil after Run returned")
	}
}

func waitServing(t *testing.T, srv *webhook.Server) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "the server to serve", func() (bool, error) {
		return srv.Healthz(nil) == nil && srv.Addr() != "", nil
	})
}

func TestOptionsAreChecked(t *testing.T) {
	allow := func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		return webhook.Allow()
	}
	for name, o := range map[string]webhook.Options{
		"short name":        {Name: "cm-check"},
		"timeout":           {TimeoutSeconds: 31},
		"handler timeout":   {TimeoutSeconds: 2, HandlerTimeout: 2 * time.Second},
		"side effects":      {SideEffects: "Some"},
		"reinvocation":      {ReinvocationPolicy: "IfNeeded"},
		"failure policy":    {FailurePolicy: "Maybe"},
		"relative path":     {Path: "validate"},
		"unknown operation": {Operations: []webhook.Operation{"PATCH"}},
	} {
		if _, err := webhook.NewValidating(allow, o); err == nil {
			t.Errorf("%s: options %+v accepted", name, o)
		}
	}
	if _, err := webhook.NewServer(webhook.ServerOptions{}); err == nil || !strings.Contains(err.Error(), "Certificates is nil") {
		t.Errorf("NewServer without certificates = %v", err)
	}
	if _, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.Pod]) webhook.Response { return webhook.Allow() }, webhook.Options{}); err != nil {
		t.Errorf("a Pod webhook: %v", err)
	}
	srv, _, _ := newTestServer(t)
	v1, _ := webhook.NewValidating(allow, webhook.Options{})
	v2, _ := webhook.NewValidating(allow, webhook.Options{})
	if err := srv.Register(v1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(v2); err == nil {
		t.Error("two webhooks on one path accepted")
	}
}

func TestClientCertificatesWhenClientCAIsSet(t *testing.T) {
	certs := newSelfSigned(t) // also the CA of the client's certificate
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.pem)
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: certs, ClientCA: pool, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Handle("/ok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})); err != nil {
		t.Fatal(err)
	}
	startServer(t, srv)
	if err := srv.Handle("/late", http.NotFoundHandler()); err == nil {
		t.Fatal("Handle after Run was accepted")
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Fatal("a second Run was accepted")
	}
	anon := certs.httpClient()
	if resp, err := anon.Get("https://" + srv.Addr() + "/ok"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	withCert := certs.httpClient()
	withCert.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{certs.cert}
	resp, err := withCert.Get("https://" + srv.Addr() + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a client with a certificate got %d", resp.StatusCode)
	}
	old := certs.httpClient()
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if resp, err := old.Get("https://" + srv.Addr() + "/ok"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 was accepted")
	}
}

func TestConfigOptionsAreChecked(t *testing.T) {
	v, _ := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		return webhook.Allow()
	}, webhook.Options{})
	srv, _, _ := newTestServer(t, v)
	for name, o := range map[string]webhook.ConfigOptions{
		"no name":         {URL: "https://127.0.0.1:9443"},
		"neither":         {Name: "x"},
		"both":            {Name: "x", URL: "https://127.0.0.1:9443", Service: &webhook.ServiceRef{Namespace: "n", Name: "s"}},
		"http":            {Name: "x", URL: "http://127.0.0.1:9443"},
		"query":           {Name: "x", URL: "https://127.0.0.1:9443?a=b"},
		"service no name": {Name: "x", Service: &webhook.ServiceRef{Namespace: "n"}},
	} {
		if _, _, err := srv.Configurations(o); err == nil {
			t.Errorf("%s: %+v accepted", name, o)
		}
	}
	vwc, mwc, err := srv.Configurations(webhook.ConfigOptions{Name: "x", URL: "https://127.0.0.1:9443/"})
	if err != nil {
		t.Fatal(err)
	}
	if mwc != nil || *vwc.Webhooks[0].ClientConfig.URL != "https://127.0.0.1:9443/validate-core-v1-configmap" || string(vwc.Webhooks[0].ClientConfig.CABundle) == "" {
		t.Fatalf("configurations %+v, %+v", vwc, mwc)
	}
}
