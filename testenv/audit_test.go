package testenv_test

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/testenv"
)

// auditSink counts the audit batches it accepts and, once broken, answers
// 503 and counts those instead.
type auditSink struct {
	broken            atomic.Bool
	accepted, refused atomic.Int64
	lastBody          atomic.Value // string
}

func (s *auditSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if s.broken.Load() {
		s.refused.Add(1)
		http.Error(w, "receiver broken on purpose", http.StatusServiceUnavailable)
		return
	}
	s.lastBody.Store(string(body))
	s.accepted.Add(1)
}

// TestAuditStopIsFastWhenReceiverIsGone: a batch the API server is still
// retrying when its receiver has gone must not hold Stop for long. With
// kube-apiserver's default --audit-webhook-initial-backoff (10s) the retries
// take about 80s and Stop ends by killing the process after 30s.
func TestAuditStopIsFastWhenReceiverIsGone(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	sink := &auditSink{}
	srv := httptest.NewUnstartedServer(sink)
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	env, err := testenv.Start(ctx, testenv.Options{
		DataDir: t.TempDir(), // a caller's data dir: the audit files go elsewhere
		Audit:   &testenv.AuditOptions{URL: srv.URL + "/audit", CABundle: ca},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	stopping := false
	defer func() {
		if !stopping {
			env.Stop()
		}
	}()
	cs := clientset(t, env)
	create := func(name string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create configmap %s: %v", name, err)
		}
	}

	create("delivered")
	testenv.Eventually(t, 30*time.Second, "the audit event of configmap delivered", func() (bool, error) {
		b, _ := sink.lastBody.Load().(string)
		return strings.Contains(b, `"name":"delivered"`) && strings.Contains(b, `"kind":"EventList"`), nil
	})

	sink.broken.Store(true)
	create("refused")
	testenv.Eventually(t, 30*time.Second, "a refused audit batch (the API server then retries it)", func() (bool, error) {
		return sink.refused.Load() > 0, nil
	})
	srv.Close() // the receiver is gone; the batch is still being retried

	stopping = true
	go func() { stopped <- env.Stop() }()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-deadline.C:
		t.Errorf("Stop did not return within 15s of its call with an audit batch pending and the receiver gone")
		<-stopped
	}
}

func TestAuditOptionsRejected(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	for _, tt := range []struct {
		name    string
		a       testenv.AuditOptions
		mention string
	}{
		{"http", testenv.AuditOptions{URL: "http://127.0.0.1:1/audit"}, "want https"},
		{"no CA for a remote host", testenv.AuditOptions{URL: "https://audit.example.com/audit"}, "loopback"},
		{"negative wait", testenv.AuditOptions{URL: "https://127.0.0.1:1/", MaxBatchWait: -time.Second}, "MaxBatchWait"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, err := testenv.Start(ctx, testenv.Options{Binary: "/nonexistent/never-run", Audit: &tt.a})
			if err == nil {
				env.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.mention)
			}
		})
	}
}
