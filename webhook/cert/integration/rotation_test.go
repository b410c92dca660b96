package integration

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook/cert"
)

// allow answers every AdmissionReview with allowed and counts calls.
func allow(calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		calls.Add(1)
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
}

// TestRotationUnderAdmissionTraffic serves a validating webhook (failure
// policy Fail) from two replicas' certificates while ConfigMap creates go
// through the API server at ≥ 50/s, with validities short enough that the
// serving certificate rotates and the CA rotates (publish, switch, drop)
// during the traffic. Every create must succeed.
func TestRotationUnderAdmissionTraffic(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	cs, dyn := clients(t)
	vwcName := "cert-rotation-" + ns

	opts := cert.SecretOptions{
		Config: env.Config(), Namespace: ns, Name: "webhook-cert", Hosts: []string{"127.0.0.1"},
		ValidatingWebhookConfigurations: []string{vwcName},
		CAValidity:                      24 * time.Second,
		ServingValidity:                 8 * time.Second,
		Backdate:                        time.Second,
		PropagationGrace:                2 * time.Second,
		CheckInterval:                   500 * time.Millisecond,
		RetryInterval:                   100 * time.Millisecond,
	}
	var replicas []*cert.Secret
	for range 2 {
		s, err := cert.NewSecret(opts)
		if err != nil {
			t.Fatal(err)
		}
		run(t, s)
		replicas = append(replicas, s)
	}
	for _, s := range replicas {
		waitReady(t, s)
	}

	// The webhook: a new TLS handshake for every request (no keep-alive),
	// alternating between the replicas' certificates, so every admission
	// checks what some replica serves at that moment.
	var (
		calls, handshakes atomic.Int64
		mu                sync.Mutex
		servedCerts       = map[string]string{} // fingerprint → issuer
	)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := replicas[handshakes.Add(1)%2].GetCertificate(h)
		if err == nil {
			mu.Lock()
			servedCerts[cert.Fingerprint(c.Certificate[0])] = c.Leaf.Issuer.CommonName
			mu.Unlock()
		}
		return c, err
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: allow(&calls), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	srv.SetKeepAlivesEnabled(false)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("webhook server: %v", err)
		}
	})

	createCluster(t, dyn, vwcGVR, webhookConfig(vwcName, "https://"+ln.Addr().String()+"/validate", map[string]any{
		"matchLabels": map[string]any{"kubernetes.io/metadata.name": ns}}))

	ctx := context.Background()
	n := 0
	create := func(ctx context.Context) error {
		mu.Lock()
		n++
		name := fmt.Sprintf("cm-%d", n)
		mu.Unlock()
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
	// Until the caBundle is injected and the API server has loaded it,
	// creates fail (failurePolicy Fail); wait for the webhook to answer.
	testenv.Eventually(t, 60*time.Second, "the API server calling the webhook successfully", func() (bool, error) {
		before := calls.Load()
		err := create(ctx)
		return err == nil && calls.Load() > before, err
	})

	bundleCAs := func() []string {
		b, err := replicas[0].CABundle()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range bundleCerts(t, b) {
			out = append(out, c.Subject.CommonName)
		}
		return out
	}
	startCAs := bundleCAs()
	mu.Lock()
	clear(servedCerts)
	mu.Unlock()
	callsAtStart := calls.Load()

	// The traffic: 80 creates/s from 48 workers (each create is a new TLS
	// handshake with the webhook, so a create can take a while on a busy machine) until the CA rotation is
	// complete (the bundle is one CA the traffic did not start with).
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	loadCtx, stopLoad := context.WithCancel(ctx)
	lim := rate.NewLimiter(80, 1)
	var wg sync.WaitGroup
	start := time.Now()
	for range 48 {
		wg.Go(func() {
			for lim.Wait(loadCtx) == nil {
				if err := create(ctx); err != nil {
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
	deadline := time.Now().Add(90 * time.Second)
	for {
		cas := bundleCAs()
		if len(cas) == 1 && !strings.Contains(strings.Join(startCAs, ","), cas[0]) {
			break
		}
		if time.Now().After(deadline) {
			stopLoad()
			wg.Wait()
			t.Fatalf("CA rotation not complete within 90s: bundle %v (at start %v)", cas, startCAs)
		}
		time.Sleep(100 * time.Millisecond) // sampling the bundle; the condition is checked each round
	}
	// Keep the traffic on for 150 more creates after the drop: the old CA
	// is leaving the bundle the API server trusts, and every create must
	// still pass.
	for after := ok.Load() + failed.Load(); ok.Load()+failed.Load() < after+150; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	elapsed := time.Since(start)

	mu.Lock()
	issuers := map[string]bool{}
	for _, iss := range servedCerts {
		issuers[iss] = true
	}
	nServed := len(servedCerts)
	mu.Unlock()
	rps := float64(ok.Load()+failed.Load()) / elapsed.Seconds()
	t.Logf("%d creates in %v (%.1f/s), %d failed; %d webhook calls; %d distinct serving certificates from %d CAs; bundle %v → %v",
		ok.Load()+failed.Load(), elapsed.Round(time.Millisecond), rps, failed.Load(), calls.Load()-callsAtStart, nServed, len(issuers), startCAs, bundleCAs())
	if failed.Load() != 0 {
		t.Fatalf("%d admissions failed during rotation; first errors: %v", failed.Load(), firstErrs)
	}
	if rps < 50 {
		t.Errorf("drove %.1f creates/s, want ≥ 50", rps)
	}
	if calls.Load()-callsAtStart < ok.Load() {
		t.Errorf("webhook answered %d calls for %d creates: some creates did not go through it", calls.Load()-callsAtStart, ok.Load())
	}
	if nServed < 3 || len(issuers) < 2 {
		t.Errorf("served %d distinct certificates from %d CAs during the traffic; want a serving rotation and a CA switch (≥3 certificates, 2 CAs)", nServed, len(issuers))
	}
	// The configuration carries the final bundle.
	u, err := dyn.Resource(vwcGVR).Get(ctx, vwcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	got, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
	b, _ := replicas[0].CABundle()
	if got != base64.StdEncoding.EncodeToString(b) {
		t.Error("the configuration's caBundle is not the final bundle")
	}
}
