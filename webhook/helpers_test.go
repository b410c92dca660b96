package webhook_test

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// selfSigned is a CertificateSource and CABundler serving one self-signed
// certificate valid for 127.0.0.1 and localhost.
type selfSigned struct {
	cert tls.Certificate
	pem  []byte
}

func newSelfSigned(t testing.TB) *selfSigned {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skiff webhook test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &selfSigned{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

func (s *selfSigned) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.cert, nil
}

func (s *selfSigned) CABundle() ([]byte, error) { return s.pem, nil }

// httpClient trusts s.
func (s *selfSigned) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// startServer runs srv until the test ends, and waits for it to serve.
func startServer(t testing.TB, srv *webhook.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Server.Run: %v", err)
		}
	})
	testenv.Eventually(t, 10*time.Second, "the webhook server to serve", func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, err
		default:
		}
		return srv.Healthz(nil) == nil && srv.Addr() != "", nil
	})
}

// review is an AdmissionReview request body.
func review(t testing.TB, uid, op string, kind map[string]string, obj, old any, dryRun bool) []byte {
	t.Helper()
	req := map[string]any{"uid": uid, "operation": op, "kind": kind, "dryRun": dryRun,
		"resource":  map[string]string{"group": "", "version": "v1", "resource": "configmaps"},
		"namespace": "ns", "name": "cm", "userInfo": map[string]any{"username": "alice"}}
	if obj != nil {
		req["object"] = obj
	}
	if old != nil {
		req["oldObject"] = old
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var configMapKind = map[string]string{"group": "", "version": "v1", "kind": "ConfigMap"}

// reviewResponse is the part of an answer the tests read.
type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Patch     []byte   `json:"patch"`
		PatchType string   `json:"patchType"`
		Warnings  []string `json:"warnings"`
	} `json:"response"`
}

// post sends body to path and decodes the answer.
func post(t testing.TB, c *http.Client, srv *webhook.Server, path string, body []byte) (int, reviewResponse) {
	t.Helper()
	resp, err := c.Post("https://"+srv.Addr()+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var rr reviewResponse
	if err := json.Unmarshal(raw, &rr); err != nil {
		t.Fatalf("answer %d is not an AdmissionReview: %v: %s", resp.StatusCode, err, raw)
	}
	return resp.StatusCode, rr
}

// metricValue is the value of the series name{labels} in reg (0 if absent).
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
