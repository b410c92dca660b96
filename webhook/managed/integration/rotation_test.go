// Package integration tests webhook/managed against the local control plane:
// the API server calls a webhook server run by a manager through Add.
package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/cert"
	"github.com/skiffkit/skiff/webhook/managed"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestRotationUnderAdmissionTraffic runs a validating webhook (failure
// policy Fail) through Add — the real webhook.Server, its certificate in a
// Secret with validities short enough that the serving certificate and
// then the CA rotate — while ConfigMap creates go through the API server
// at ≥ 50/s. Every create must succeed. Alongside, a probe makes a fresh
// TLS connection to the server every 25ms and verifies the served
// certificate against the caBundle the configuration holds at that
// moment, as a new connection of the API server would.
func TestRotationUnderAdmissionTraffic(t *testing.T) {
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Config())
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(manager.Options{Config: env.Config(), Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	name := "rotation-" + ns
	srv, err := managed.Add(mgr, managed.Options{
		Name: name, Namespace: ns,
		Server: webhook.ServerOptions{Addr: "127.0.0.1:0"},
		Certificates: cert.SecretOptions{
			CAValidity:       24 * time.Second,
			ServingValidity:  8 * time.Second,
			Backdate:         time.Second,
			PropagationGrace: 2 * time.Second,
			CheckInterval:    500 * time.Millisecond,
			RetryInterval:    100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	allow, err := webhook.NewValidating(func(context.Context, webhook.Request[*corev1.ConfigMap]) webhook.Response {
		calls.Add(1)
		return webhook.Allow()
	}, webhook.Options{Operations: []webhook.Operation{webhook.Create},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(allow); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	t.Cleanup(func() {
		if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the configuration: %v", err)
		}
	})

	var n atomic.Int64
	create := func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", n.Add(1))}}
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		return err
	}
	testenv.Eventually(t, time.Minute, "the API server calling the webhook", func() (bool, error) {
		before := calls.Load()
		return create() == nil && calls.Load() > before, nil
	})

	// bundle is the caBundle the configuration holds now.
	bundle := func() ([]byte, error) {
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return vwc.Webhooks[0].ClientConfig.CABundle, nil
	}
	startBundle, err := bundle()
	if err != nil {
		t.Fatal(err)
	}
	startCAs := certs(t, startBundle)
	if len(startCAs) != 1 {
		t.Fatalf("the configuration starts with %d CAs, want 1", len(startCAs))
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }()

	// The probe.
	var (
		probeMu            sync.Mutex
		probes, probeFails int
		probeErrs          []string
		served             = map[string]string{} // serving fingerprint → issuer
		rotated            = make(chan struct{}) // the bundle is one CA, not the first
	)
	wg.Go(func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		closed := false
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			b, err := bundle()
			if err != nil {
				continue // the API server is busy; the probe is about the server
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(b)
			leaf, err := handshake(srv.Addr(), pool)
			probeMu.Lock()
			probes++
			if err != nil {
				probeFails++
				if len(probeErrs) < 5 {
					probeErrs = append(probeErrs, err.Error())
				}
			} else {
				served[cert.Fingerprint(leaf.Raw)] = leaf.Issuer.CommonName
			}
			probeMu.Unlock()
			if cas := certs(t, b); !closed && len(cas) == 1 && !cas[0].Equal(startCAs[0]) {
				closed = true
				close(rotated)
			}
		}
	})

	// The traffic: 80 creates/s from 64 workers (a create can take a while
	// on a busy machine).
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	lim := rate.NewLimiter(80, 1)
	callsAtStart := calls.Load()
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for lim.Wait(loadCtx) == nil {
				if err := create(); err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	select {
	case <-rotated:
	case <-time.After(60 * time.Second):
		t.Fatalf("the CA rotation did not reach the configuration within 60s")
	}
	// 150 more creates once the old CA has left the bundle.
	after := ok.Load() + failed.Load()
	testenv.Eventually(t, 30*time.Second, "150 creates after the old CA left the bundle", func() (bool, error) {
		return ok.Load()+failed.Load() >= after+150, nil
	})
	stopLoad()
	wg.Wait()
	elapsed := time.Since(start)

	total := ok.Load() + failed.Load()
	rps := float64(total) / elapsed.Seconds()
	issuers := map[string]bool{}
	for _, iss := range served {
		issuers[iss] = true
	}
	t.Logf("%d creates in %v (%.1f/s), %d failed; %d webhook calls; %d probes, %d failed; %d distinct serving certificates from %d CAs",
		total, elapsed.Round(time.Millisecond), rps, failed.Load(), calls.Load()-callsAtStart, probes, probeFails, len(served), len(issuers))
	if failed.Load() != 0 {
		t.Errorf("%d admissions failed during the rotation; first errors: %v", failed.Load(), firstErrs)
	}
	if probeFails != 0 {
		t.Errorf("%d of %d fresh TLS connections did not verify against the configuration's caBundle; first errors: %v", probeFails, probes, probeErrs)
	}
	if rps < 50 {
		t.Errorf("drove %.1f creates/s, want ≥ 50", rps)
	}
	if calls.Load()-callsAtStart < ok.Load() {
		t.Errorf("the webhook answered %d calls for %d creates: some creates did not go through it", calls.Load()-callsAtStart, ok.Load())
	}
	if len(served) < 3 || len(issuers) < 2 {
		t.Errorf("the server served %d distinct certificates from %d CAs; want a serving rotation and a CA switch (≥ 3 certificates, 2 CAs)", len(served), len(issuers))
	}
}

// handshake connects to addr with TLS, verifies the served certificate for
// 127.0.0.1 against roots, and returns it.
func handshake(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// certs parses a PEM bundle.
func certs(t *testing.T, b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Errorf("a certificate in the caBundle does not parse: %v", err)
			return out
		}
		out = append(out, c)
	}
}
