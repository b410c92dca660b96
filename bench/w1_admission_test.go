package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/skiffkit/skiff/webhook"
)

// W1 BenchmarkAdmission: the same validating and mutating pod handlers
// (w1Validate, w1Default) served by Skiff's webhook.Server and by
// controller-runtime's webhook server, each over HTTPS (TLS 1.2+, the same
// ECDSA P-256 certificate, HTTP/1.1 keep-alive) on loopback, driven by the
// same load generator in a child process (w1_loadgen_test.go).
//
// Contenders, equal settings: both record their request metrics
// (controller-runtime always does, into its global registry; Skiff is
// given a registry), both log nothing (controller-runtime's logger is
// logr.Discard, Skiff's a discarding slog handler). Handlers are written
// the way each library's user writes them: Skiff's typed
// webhook.NewMutating/NewValidating, controller-runtime's typed
// admission.WithDefaulter/WithValidator (what its webhook builder
// installs).
//
// Figures per run: reviews/s in the closed loop (saturation), p50-ms and
// p99-ms at a fixed rate in the open loop, the server process's CPU time
// over the whole load (cpu-s) and reviews/s-per-core = reviews answered ÷
// that CPU time.

// w1Size is W1's scale (SKIFF_BENCH_SIZE): quick keeps the smoke run
// short (about 2.5 s per sub-benchmark); full gives the open loop 5000
// samples.
type w1Size struct {
	conns          int
	warmup, closed time.Duration
	rate           int
	open           time.Duration
}

func w1Sizes() w1Size {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return w1Size{conns: 16, warmup: time.Second, closed: 10 * time.Second, rate: 500, open: 10 * time.Second}
	}
	return w1Size{conns: 16, warmup: 200 * time.Millisecond, closed: time.Second, rate: 300, open: time.Second}
}

// w1Reviews is how many distinct AdmissionReviews are sent round-robin.
const w1ReviewCount = 64

// w1Impl starts a contender's server with the mutating or the validating
// handler and returns its URL and a func that stops it.
type w1Impl struct {
	name  string
	start func(mutating bool, certs *w1Certs) (url string, stop func() error, err error)
}

var w1Impls = []w1Impl{{"skiff", startSkiffW1}, {"ctrlruntime", startCtrlRuntimeW1}}

func BenchmarkAdmission(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	size := w1Sizes()
	certs, err := newW1Certs()
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"mutating", "validating"} {
		mutating := kind == "mutating"
		sample, err := w1Reviews(mutating, 16)
		if err != nil {
			b.Fatal(err)
		}
		for _, impl := range w1Impls {
			b.Run("impl="+impl.name+"/"+kind, func(b *testing.B) {
				url, stop, err := impl.start(mutating, certs)
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := stop(); err != nil {
						b.Errorf("stop the %s server: %v", impl.name, err)
					}
				}()
				if err := w1Verify(url, certs, mutating, sample); err != nil {
					b.Fatal(err)
				}
				var rps, perCore, p50, p99, cpu []float64
				b.ResetTimer()
				for range b.N {
					runtime.GC()
					c0 := cpuSeconds()
					r, err := runW1LoadgenProcess(w1Load{URL: url, CA: certs.pem, Mutating: mutating, Reviews: w1ReviewCount,
						Conns: size.conns, Warmup: size.warmup, Closed: size.closed, Rate: size.rate, Open: size.open})
					serverCPU := cpuSeconds() - c0
					if err != nil {
						b.Fatal(err)
					}
					if r.Proto != "HTTP/1.1" || r.Checked == 0 {
						b.Fatalf("load generator spoke %s and fully checked %d answers", r.Proto, r.Checked)
					}
					if late := r.OpenSec - size.open.Seconds(); late > 0.5 {
						b.Logf("%s: the open loop ran %.2fs over its %v schedule: the rate %d/s was not sustained", impl.name, late, size.open, size.rate)
					}
					rps = append(rps, float64(r.ClosedN)/r.ClosedSec)
					perCore = append(perCore, float64(r.Total)/serverCPU)
					p50 = append(p50, r.P50ms)
					p99 = append(p99, r.P99ms)
					cpu = append(cpu, serverCPU)
					b.Logf("%s/%s: closed %d in %.2fs, open %d at %d/s: p50 %.2f p99 %.2f max %.2f ms; server cpu %.2fs for %d, loadgen cpu %.2fs; %d fully checked",
						impl.name, kind, r.ClosedN, r.ClosedSec, r.OpenN, size.rate, r.P50ms, r.P99ms, r.MaxMs, serverCPU, r.Total, r.CPUSec, r.Checked)
				}
				b.ReportMetric(medianOf(rps), "reviews/s")
				b.ReportMetric(medianOf(perCore), "reviews/s-per-core")
				b.ReportMetric(medianOf(p50), "p50-ms")
				b.ReportMetric(medianOf(p99), "p99-ms")
				b.ReportMetric(medianOf(cpu), "cpu-s")
			})
		}
	}
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// w1Verify sends the sample reviews over its own connection and checks
// every answer in full.
func w1Verify(url string, certs *w1Certs, mutating bool, sample []w1Review) error {
	c := certs.client()
	defer c.CloseIdleConnections()
	for _, rv := range sample {
		status, body, err := w1Post(c, url, rv.body)
		if err != nil {
			return err
		}
		if err := w1Check(mutating, rv, status, body); err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
	}
	return nil
}

// startSkiffW1 serves the handler on Skiff's webhook server.
func startSkiffW1(mutating bool, certs *w1Certs) (string, func() error, error) {
	var hook webhook.Webhook
	var err error
	if mutating {
		hook, err = webhook.NewMutating(func(_ context.Context, req webhook.Request[*corev1.Pod]) webhook.Response {
			w1Default(req.Object)
			return webhook.Allow()
		}, webhook.Options{})
	} else {
		hook, err = webhook.NewValidating(func(_ context.Context, req webhook.Request[*corev1.Pod]) webhook.Response {
			if err := w1Validate(req.OldObject, req.Object); err != nil {
				return webhook.Deny(err.Error())
			}
			return webhook.Allow()
		}, webhook.Options{Operations: []webhook.Operation{webhook.Create, webhook.Update}})
	}
	if err != nil {
		return "", nil, err
	}
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: "127.0.0.1:0", Certificates: certs,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", nil, err
	}
	if err := srv.Register(hook); err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stop := func() error { cancel(); return <-done }
	ok := waitFor(10*time.Second, func() bool { return srv.Healthz(nil) == nil && srv.Addr() != "" })
	if !ok {
		return "", nil, fmt.Errorf("skiff webhook server did not serve within 10s: %v", stop())
	}
	return "https://" + srv.Addr() + hook.Path(), stop, nil
}

// crDefaulter and crValidator are the handlers in controller-runtime's
// typed interfaces.
type crDefaulter struct{}

func (crDefaulter) Default(_ context.Context, p *corev1.Pod) error { w1Default(p); return nil }

type crValidator struct{}

func (crValidator) ValidateCreate(_ context.Context, p *corev1.Pod) (admission.Warnings, error) {
	return nil, w1Validate(nil, p)
}

func (crValidator) ValidateUpdate(_ context.Context, old, p *corev1.Pod) (admission.Warnings, error) {
	return nil, w1Validate(old, p)
}

func (crValidator) ValidateDelete(context.Context, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// startCtrlRuntimeW1 serves the handler on controller-runtime's webhook
// server, registered the way its webhook builder does (the path kubebuilder
// generates for core pods).
func startCtrlRuntimeW1(mutating bool, certs *w1Certs) (string, func() error, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	srv := crwebhook.NewServer(crwebhook.Options{Host: "127.0.0.1", Port: port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.GetCertificate }}})
	path := "/validate--v1-pod"
	var h http.Handler = admission.WithValidator[*corev1.Pod](clientgoscheme.Scheme, crValidator{})
	if mutating {
		path = "/mutate--v1-pod"
		h = admission.WithDefaulter[*corev1.Pod](clientgoscheme.Scheme, crDefaulter{})
	}
	srv.Register(path, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	stop := func() error { cancel(); return <-done }
	checker := srv.StartedChecker()
	if !waitFor(10*time.Second, func() bool { return checker(nil) == nil }) {
		return "", nil, fmt.Errorf("controller-runtime webhook server did not serve within 10s: %v", stop())
	}
	return "https://127.0.0.1:" + strconv.Itoa(port) + path, stop, nil
}

// freePort is a loopback port that was free a moment ago
// (controller-runtime's server takes a port number, 0 meaning its default).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// w1Certs is one self-signed ECDSA P-256 serving certificate for
// 127.0.0.1, served by both contenders.
type w1Certs struct {
	cert tls.Certificate
	pem  []byte
}

func newW1Certs() (*w1Certs, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "w1 admission bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &w1Certs{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func (c *w1Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c.cert, nil }

// client trusts the certificate and speaks HTTP/1.1, as the API server does.
func (c *w1Certs) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}}}
}

// w1Post posts an AdmissionReview body and returns the answer.
func w1Post(c *http.Client, url string, body []byte) (int, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("post a review to %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("read the answer from %s: %w", url, err)
	}
	return resp.StatusCode, raw, nil
}

// BenchmarkAdmissionFloor measures, in one goroutine, the encoding/json
// work every typed mutating webhook in Go does per review of the W1
// fixture — decode the AdmissionReview envelope, decode the pod, marshal
// the mutated pod — and, for scale, validating the pod's JSON. Their sum
// bounds reviews/s-per-core of any server that decodes into the typed pod
// with encoding/json (no TLS, HTTP or patch included).
func BenchmarkAdmissionFloor(b *testing.B) {
	rv, err := w1Reviews(true, 1)
	if err != nil {
		b.Fatal(err)
	}
	body, raw := rv[0].body, rv[0].object
	b.Run("op=decode-review", func(b *testing.B) {
		for b.Loop() {
			var r struct {
				Request struct {
					UID       string
					Object    json.RawMessage
					OldObject json.RawMessage
				}
			}
			if err := json.Unmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=decode-pod", func(b *testing.B) {
		for b.Loop() {
			var p corev1.Pod
			if err := json.Unmarshal(raw, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=marshal-pod", func(b *testing.B) {
		var p corev1.Pod
		if err := json.Unmarshal(raw, &p); err != nil {
			b.Fatal(err)
		}
		w1Default(&p)
		for b.Loop() {
			if _, err := json.Marshal(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=valid-pod", func(b *testing.B) {
		for b.Loop() {
			if !json.Valid(raw) {
				b.Fatal("invalid")
			}
		}
	})
}
