package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// script is the RoundTripper below Tune's: it answers attempt n (from 1)
// with answer(n, req) and records what it was sent. It stands in for the
// network, so the retry decisions can be checked attempt by attempt; the
// real API server's 429s are exercised in throttle_test.go.
type script struct {
	mu     sync.Mutex
	answer func(n int, req *http.Request) (*http.Response, error)
	bodies []string
	times  []time.Time
}

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		body = string(b)
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.times = append(s.times, time.Now())
	n := len(s.bodies)
	s.mu.Unlock()
	return s.answer(n, req)
}

func (s *script) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func status(code int, retryAfter string) *http.Response {
	h := http.Header{"Content-Type": []string{"text/plain"}}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(http.StatusText(code)))}
}

var errReset = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

// tunedOver returns Tune's RoundTripper over s.
func tunedOver(t *testing.T, s *script, o TransportOptions) http.RoundTripper {
	t.Helper()
	cfg, err := Tune(&rest.Config{Host: "https://h.invalid"}, o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.WrapTransport(s)
}

func send(t *testing.T, rt http.RoundTripper, ctx context.Context, method, url, contentType, body string) (*http.Response, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://h.invalid"+url, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := rt.RoundTrip(req)
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp, err
}

func TestRetries429HonouringRetryAfterAndReplayingTheBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		m, err := NewTransportMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		s := &script{answer: func(n int, _ *http.Request) (*http.Response, error) {
			if n <= 2 {
				return status(429, "2"), nil
			}
			return status(201, ""), nil
		}}
		rt := tunedOver(t, s, TransportOptions{Metrics: m})
		start := time.Now()
		resp, err := send(t, rt, context.Background(), "POST", "/api/v1/namespaces/a/configmaps", "application/json", `{"a":1}`)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("POST = %v, %v; want 201", resp, err)
		}
		if s.attempts() != 3 {
			t.Fatalf("%d attempts, want 3", s.attempts())
		}
		for i, b := range s.bodies {
			if b != `{"a":1}` {
				t.Fatalf("attempt %d sent body %q", i+1, b)
			}
		}
		for i := 1; i < 3; i++ {
			if gap := s.times[i].Sub(s.times[i-1]); gap < 2*time.Second {
				t.Fatalf("attempt %d came %v after the previous, before Retry-After 2s", i+1, gap)
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("took %v: more than Retry-After plus jitter", time.Since(start))
		}
		wantMetrics(t, reg, map[string]float64{
			"skiff_rest_client_throttled_total":                                         2,
			"skiff_rest_client_retries_total{code=429,verb=POST}":                       2,
			"rest_client_rate_limiter_duration_seconds_count{host=h.invalid,verb=POST}": 3,
		})
		// The limit was cut by the first 429 only (the second was sent
		// after the cut, so it cuts again), and grows back at 8/s.
		if got := gauge(t, reg, "skiff_rest_client_adaptive_limit"); got < 1 || got > 256 {
			t.Fatalf("adaptive limit %v", got)
		}
	})
}

func TestRetriesOnlyRepeatableRequestsAfter5xx(t *testing.T) {
	cases := []struct {
		method, contentType string
		code                int
		want                int // attempts
	}{
		{"GET", "", 503, 3},
		{"HEAD", "", 504, 3},
		{"PUT", "application/json", 503, 3},
		{"PATCH", "application/apply-patch+yaml", 504, 3},
		{"PATCH", "application/merge-patch+json", 503, 1},
		{"POST", "application/json", 503, 1},
		{"DELETE", "application/json", 503, 1},
		{"GET", "", 500, 1},
		{"GET", "", 404, 1},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.contentType+" "+http.StatusText(tc.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answer: func(n int, _ *http.Request) (*http.Response, error) {
					if n <= 2 {
						return status(tc.code, "1"), nil
					}
					return status(200, ""), nil
				}}
				rt := tunedOver(t, s, TransportOptions{})
				body := ""
				if tc.method != "GET" && tc.method != "HEAD" {
					body = "{}"
				}
				resp, err := send(t, rt, context.Background(), tc.method, "/api/v1/namespaces/a/configmaps/x", tc.contentType, body)
				if err != nil {
					t.Fatal(err)
				}
				if s.attempts() != tc.want {
					t.Fatalf("%d attempts, want %d", s.attempts(), tc.want)
				}
				if resp.Header.Get("Retry-After") != "" {
					t.Fatal("Retry-After left on the response: client-go would retry it again")
				}
			})
		})
	}
}

func TestWatchesBypassTheTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(429, "1"), nil }}
		rt := tunedOver(t, s, TransportOptions{MaxInFlight: 1})
		resp, err := send(t, rt, context.Background(), "GET", "/api/v1/configmaps?watch=true", "", "")
		if err != nil || s.attempts() != 1 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("watch: %d attempts, err %v, Retry-After %q; want 1 attempt, untouched", s.attempts(), err, resp.Header.Get("Retry-After"))
		}
	})
}

func TestConnectionResetsGiveUpWithRetryError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return nil, errReset }}
		rt := tunedOver(t, s, TransportOptions{MaxRetries: 3})
		_, err := send(t, rt, context.Background(), "GET", "/api/v1/namespaces/a/configmaps/x", "", "")
		var re *RetryError
		if !errors.As(err, &re) || re.Attempts != 4 || re.Reason != "attempts" || !errors.Is(re.Last, syscall.ECONNRESET) {
			t.Fatalf("err = %#v, want a RetryError after 4 attempts over ECONNRESET", err)
		}
		// A POST is not repeated after a reset: the server may have created it.
		s2 := &script{answer: func(int, *http.Request) (*http.Response, error) { return nil, errReset }}
		rt2 := tunedOver(t, s2, TransportOptions{})
		_, err = send(t, rt2, context.Background(), "POST", "/api/v1/namespaces/a/configmaps", "application/json", "{}")
		if !errors.Is(err, syscall.ECONNRESET) || s2.attempts() != 1 {
			t.Fatalf("POST after reset: %d attempts, err %v; want 1, the reset itself", s2.attempts(), err)
		}
	})
}

// TestClientGoDoesNotMultiplyRetries sends through client-go's
// rest.Request (a clientset over the tuned config): client-go would retry
// a 503 with Retry-After and a GET reset 10 times on its own; with Tune's
// transport the attempts are Tune's alone.
func TestClientGoDoesNotMultiplyRetries(t *testing.T) {
	cases := []struct {
		name   string
		answer func(int, *http.Request) (*http.Response, error)
		call   func(context.Context, kubernetes.Interface) error
		want   int
	}{
		{"GET reset", func(int, *http.Request) (*http.Response, error) { return nil, errReset },
			func(ctx context.Context, cs kubernetes.Interface) error {
				_, err := cs.CoreV1().ConfigMaps("a").Get(ctx, "x", metav1.GetOptions{})
				return err
			}, 3},
		{"GET 503", func(int, *http.Request) (*http.Response, error) { return status(503, "1"), nil },
			func(ctx context.Context, cs kubernetes.Interface) error {
				_, err := cs.CoreV1().ConfigMaps("a").Get(ctx, "x", metav1.GetOptions{})
				return err
			}, 3},
		{"POST 503", func(int, *http.Request) (*http.Response, error) { return status(503, "1"), nil },
			func(ctx context.Context, cs kubernetes.Interface) error {
				_, err := cs.CoreV1().ConfigMaps("a").Create(ctx, nil, metav1.CreateOptions{})
				return err
			}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answer: tc.answer}
				cfg, err := Tune(&rest.Config{Host: "https://h.invalid", Transport: s}, TransportOptions{MaxRetries: 2})
				if err != nil {
					t.Fatal(err)
				}
				cs, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					t.Fatal(err)
				}
				err = tc.call(context.Background(), cs)
				if err == nil {
					t.Fatal("call succeeded against a failing transport")
				}
				if s.attempts() != tc.want {
					t.Fatalf("%d attempts reached the network, want %d (err %v)", s.attempts(), tc.want, err)
				}
			})
		})
	}
	// Without Tune, client-go retries the GET 503 itself: the case above is
	// not vacuous.
	synctest.Test(t, func(t *testing.T) {
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(503, "1"), nil }}
		cs, err := kubernetes.NewForConfig(&rest.Config{Host: "https://h.invalid", Transport: s, QPS: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = cs.CoreV1().ConfigMaps("a").Get(context.Background(), "x", metav1.GetOptions{})
		if s.attempts() != 11 {
			t.Fatalf("plain client-go made %d attempts on a 503 with Retry-After, expected its 11", s.attempts())
		}
	})
}

func TestRetryBudgetStopsRetriesOf5xxAndPaces429s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(503, ""), nil }}
		rt := tunedOver(t, s, TransportOptions{RetryRate: 0.001, RetryBurst: 2, MaxRetries: 5})
		_, _ = send(t, rt, context.Background(), "GET", "/api/v1/a", "", "")
		if s.attempts() != 3 { // the burst of 2 retries, then "budget"
			t.Fatalf("%d attempts with a budget of 2 retries, want 3", s.attempts())
		}
		_, _ = send(t, rt, context.Background(), "GET", "/api/v1/a", "", "")
		if s.attempts() != 4 {
			t.Fatalf("a second request with an empty budget made %d attempts, want 1", s.attempts()-3)
		}

		// 429s wait for a token instead: 3 retries at 1 token per second
		// with a burst of 1 take about 2s more than the backoff alone.
		s2 := &script{answer: func(n int, _ *http.Request) (*http.Response, error) {
			if n <= 3 {
				return status(429, ""), nil
			}
			return status(200, ""), nil
		}}
		rt2 := tunedOver(t, s2, TransportOptions{RetryRate: 1, RetryBurst: 1, BackoffBase: time.Millisecond})
		start := time.Now()
		resp, err := send(t, rt2, context.Background(), "GET", "/api/v1/a", "", "")
		if err != nil || resp.StatusCode != 200 || s2.attempts() != 4 {
			t.Fatalf("429s with a slow budget: %v, %v after %d attempts; want 200 after 4", resp, err, s2.attempts())
		}
		if took := time.Since(start); took < 2*time.Second {
			t.Fatalf("3 retries at 1 token/s (burst 1) took %v, want >= 2s", took)
		}
	})
}

func TestDeadlineAndTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The wait the server asks for does not fit the deadline: the 429
		// is returned at once, without Retry-After.
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(429, "5"), nil }}
		rt := tunedOver(t, s, TransportOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := send(t, rt, ctx, "GET", "/api/v1/a", "", "")
		if err != nil || resp.StatusCode != 429 || s.attempts() != 1 || time.Since(start) != 0 {
			t.Fatalf("429 past the deadline: %v, %v, %d attempts, %v; want the 429 at once", resp, err, s.attempts(), time.Since(start))
		}

		// Timeout bounds a request that hangs; a watch has none.
		hang := &script{answer: func(_ int, req *http.Request) (*http.Response, error) {
			<-req.Context().Done()
			return nil, req.Context().Err()
		}}
		rt = tunedOver(t, hang, TransportOptions{Timeout: 3 * time.Second})
		start = time.Now()
		_, err = send(t, rt, context.Background(), "GET", "/api/v1/a", "", "")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 3*time.Second {
			t.Fatalf("hanging GET: %v after %v; want DeadlineExceeded after 3s", err, time.Since(start))
		}
		wctx, wcancel := context.WithTimeout(context.Background(), time.Hour)
		defer wcancel()
		start = time.Now()
		_, err = send(t, rt, wctx, "GET", "/api/v1/a?watch=true", "", "")
		if time.Since(start) != time.Hour {
			t.Fatalf("watch ended after %v (%v); the 3s timeout must not apply to it", time.Since(start), err)
		}
	})
}

func TestOpaqueBodyAndDisabledRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(429, "1"), nil }}
		rt := tunedOver(t, s, TransportOptions{})
		req, _ := http.NewRequest("POST", "https://h.invalid/api/v1/namespaces/a/configmaps", io.NopCloser(strings.NewReader("{}")))
		resp, err := rt.RoundTrip(req)
		if err != nil || s.attempts() != 1 {
			t.Fatalf("opaque body: %d attempts (%v), want 1: it cannot be replayed", s.attempts(), err)
		}
		_ = resp.Body.Close()

		s2 := &script{answer: func(int, *http.Request) (*http.Response, error) { return status(429, "1"), nil }}
		rt2 := tunedOver(t, s2, TransportOptions{MaxRetries: -1})
		resp, _ = send(t, rt2, context.Background(), "GET", "/api/v1/a", "", "")
		if s2.attempts() != 1 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("retries off: %d attempts, Retry-After %q; want 1 and kept for client-go", s2.attempts(), resp.Header.Get("Retry-After"))
		}
	})
}

func TestTuneDefaultsAndErrors(t *testing.T) {
	if _, err := Tune(nil, TransportOptions{}); err == nil {
		t.Fatal("Tune(nil) succeeded")
	}
	if _, err := Tune(&rest.Config{}, TransportOptions{RetryRate: -1}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative RetryRate: %v", err)
	}
	in := &rest.Config{Host: "https://h"}
	out, err := Tune(in, TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.QPS != -1 || out.Dial == nil || out.WrapTransport == nil {
		t.Fatalf("tuned config: QPS %v, Dial set %v, Wrap set %v", out.QPS, out.Dial != nil, out.WrapTransport != nil)
	}
	if in.QPS != 0 || in.Dial != nil || in.WrapTransport != nil {
		t.Fatal("Tune modified its input")
	}
	if out, _ := Tune(&rest.Config{Host: "https://h", QPS: 50, Burst: 100}, TransportOptions{}); out.QPS != 50 {
		t.Fatalf("an explicit QPS was replaced: %v", out.QPS)
	}
	// A 429 error keeps its suggested delay from the Status body after
	// Retry-After is removed (what a controller uses to requeue).
	err = apierrors.NewTooManyRequests("slow down", 3)
	if d, ok := apierrors.SuggestsClientDelay(err); !ok || d != 3 {
		t.Fatalf("SuggestsClientDelay = %v, %v", d, ok)
	}
}

// wantMetrics checks gathered samples: "name{l=v,...}" -> value; a
// histogram's _count is its sample count.
func wantMetrics(t *testing.T, g prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	got := map[string]float64{}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				key += "_count"
			}
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				got[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				got[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metric %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single-series gauge %s", name)
	return 0
}
