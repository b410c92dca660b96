package conversion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The result label of the webhook's metrics.
const (
	resultSuccess    = "success"     // 200, every object converted
	resultFailure    = "failure"     // 200, a Failure result (unknown version or kind, a conversion error, changed metadata)
	resultBadRequest = "bad_request" // 400 (or 405): not a v1 ConversionReview, not JSON, too large
	resultPanic      = "panic"       // 500: the webhook or a conversion function panicked
)

// ServeHTTP answers one ConversionReview. A body that is not a JSON
// apiextensions.k8s.io/v1 ConversionReview, has no request uid or is larger
// than MaxBodyBytes gets 400 with a plain-text message; a method other than
// POST gets 405. A request for an unknown desired version, an object of
// another kind or of an unregistered version, a conversion function's error
// and a conversion that changed protected metadata all get 200 with a
// Failure result whose message names the object: the API server hands that
// message to its client. A panic (in a conversion function or here) gets
// 500 and is logged; the server keeps running.
func (w *Webhook[H]) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := w.now()
	result := resultPanic
	defer func() {
		if p := recover(); p != nil {
			result = resultPanic
			w.log.Error("conversion webhook panicked", "kind", w.gk.String(), "panic", p, "stack", string(debug.Stack()))
			http.Error(rw, fmt.Sprintf("conversion webhook for %v: internal error: panic while converting: %v", w.gk, p), http.StatusInternalServerError)
		}
		w.metrics.observe(result, w.now().Sub(start))
	}()
	if r.Method != http.MethodPost {
		result = resultBadRequest
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, fmt.Sprintf("conversion webhook for %v: method %s not allowed: POST a ConversionReview", w.gk, r.Method), http.StatusMethodNotAllowed)
		return
	}
	body, err := w.readBody(rw, r)
	var req *request
	if err == nil {
		req, err = decodeReview(body)
	}
	if err != nil {
		result = resultBadRequest
		http.Error(rw, fmt.Sprintf("conversion webhook for %v: %v", w.gk, err), http.StatusBadRequest)
		return
	}
	resp := w.answer(req)
	out, err := json.Marshal(resp)
	if err != nil {
		panic(fmt.Sprintf("encode ConversionReview response: %v", err)) // only RawMessages we produced and plain fields: a bug
	}
	result = resultSuccess
	if resp.Response.Result.Status != metav1.StatusSuccess {
		result = resultFailure
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(out) // a failed write is the API server's timeout or disconnect; it retries or reports
}

// readBody checks the content type and reads at most maxBody bytes.
func (w *Webhook[H]) readBody(rw http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &badRequest{fmt.Sprintf("content type %q: want application/json", ct)}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, w.maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, &badRequest{fmt.Sprintf("request body larger than %d bytes (Options.MaxBodyBytes)", tooLarge.Limit)}
	}
	if err != nil {
		return nil, &badRequest{fmt.Sprintf("read request body: %v", err)}
	}
	return body, nil
}

// metrics are the webhook's Prometheus series; a nil *metrics records
// nothing.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	kind     string
}

func newMetrics(reg prometheus.Registerer, kind string) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_conversion_requests_total",
		Help: "ConversionReviews answered by Skiff conversion webhooks, by hub kind and result (success, failure, bad_request, panic).",
	}, []string{"kind", "result"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skiff_conversion_request_duration_seconds",
		Help:    "Time to answer a ConversionReview, by hub kind and result.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"kind", "result"})
	var err error
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if latency, err = register(reg, latency); err != nil {
		return nil, err
	}
	m := &metrics{requests: requests, latency: latency, kind: kind}
	for _, r := range []string{resultSuccess, resultFailure, resultBadRequest, resultPanic} {
		m.requests.WithLabelValues(kind, r)
		m.latency.WithLabelValues(kind, r)
	}
	return m, nil
}

// register registers c, or returns the collector of the same name another
// Webhook registered already (one per hub kind share the vectors).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) observe(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(m.kind, result).Inc()
	m.latency.WithLabelValues(m.kind, result).Observe(d.Seconds())
}
