package audit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook/audit"
)

// The shared control plane sends its audit events (testenv's default
// policy: Metadata for writes) to receiverURL, where each test mounts its
// own Receiver.
var (
	env         *testenv.Env
	receiverURL string
	receiverCA  []byte
	mounted     atomic.Pointer[http.Handler]
)

func TestMain(m *testing.M) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := mounted.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusOK) // nobody listening yet: drop the batch
	}))
	srv.StartTLS()
	receiverURL = srv.URL + "/audit"
	receiverCA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	code := testenv.RunTests(m, testenv.Options{Audit: &testenv.AuditOptions{URL: receiverURL, CABundle: receiverCA}},
		func(e *testenv.Env) error { env = e; return nil })
	srv.Close()
	os.Exit(code)
}

func mount(t *testing.T, h http.Handler) {
	mounted.Store(&h)
	t.Cleanup(func() { mounted.Store(nil) })
}

// seen records every key a callback watch got, to know an event has been
// delivered (and so already judged by every other watch).
type seen struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (s *seen) add(kind string) func(controller.Request, *auditv1.Event) {
	return func(k controller.Request, ev *auditv1.Event) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.keys[kind+" "+ev.Verb+" "+k.String()] = true
	}
}

func (s *seen) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key]
}

func TestAuditEventsBecomeQueueKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := env.Config()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	watched := testenv.Namespace(t, cfg)
	other := testenv.Namespace(t, cfg)

	reg := prometheus.NewRegistry()
	metrics, err := audit.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.New(audit.Options{Mapper: c, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New(queue.Options[controller.Request]{})
	defer q.ShutDown()
	if err := audit.Watch[*corev1.ConfigMap](r, q, audit.Filter{Namespaces: []string{watched}}); err != nil {
		t.Fatal(err)
	}
	all := &seen{keys: map[string]bool{}}
	if err := audit.WatchFunc[*corev1.ConfigMap](r, audit.Filter{IncludeFailed: true}, all.add("configmap")); err != nil {
		t.Fatal(err)
	}
	if err := audit.WatchFunc[*corev1.Secret](r, audit.Filter{}, all.add("secret")); err != nil {
		t.Fatal(err)
	}
	mount(t, r)

	// Writes that must arrive as keys: create, update, delete in the
	// watched namespace.
	cms := cs.CoreV1().ConfigMaps(watched)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := controller.Request{Namespace: watched, Name: "a"}
	waitKey(t, q, key, "create")
	cm.Data = map[string]string{"k": "v"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKey(t, q, key, "update")
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKey(t, q, key, "delete")

	// Writes that must not: a ConfigMap elsewhere, a Secret here, a failed
	// create, a generateName create (its name is not in a Metadata-level
	// event). The callback watches prove each was delivered.
	if _, err := cs.CoreV1().ConfigMaps(other).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(watched).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "Not_Valid"}}, metav1.CreateOptions{}); err == nil {
		t.Fatal("creating an invalid name succeeded")
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "audit events of the unwatched writes", func() (bool, error) {
		return all.has("configmap create "+other+"/b") && all.has("secret create "+watched+"/s") &&
			all.has("configmap create "+watched+"/Not_Valid"), nil
	})
	testenv.Eventually(t, 30*time.Second, "the generateName create counted as skipped", func() (bool, error) {
		return value(t, reg, audit.MetricEventsSkipped, map[string]string{"resource": "configmaps", "reason": audit.SkipNoName}) >= 1, nil
	})
	if k, ok := q.TryGet(); ok {
		t.Fatalf("queue got %v from a write the filter should drop", k)
	}

	// A malformed batch gets 400.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(receiverCA)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(receiverURL, "application/json", strings.NewReader(`{"kind":"EventList"`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed batch: HTTP %d, want 400", resp.StatusCode)
	}
	if got := value(t, reg, audit.MetricBatchesRejected, map[string]string{"reason": audit.RejectNotJSON}); got != 1 {
		t.Fatalf("rejected{not_json} = %v, want 1", got)
	}
	if got := value(t, reg, audit.MetricBatchesRejected, map[string]string{"reason": audit.RejectWrongType}); got != 0 {
		t.Fatalf("rejected{wrong_type} = %v: the API server's own batches were rejected", got)
	}
}

// waitKey waits until key is the next key in q (after a write of verb) and
// marks it done.
func waitKey(t *testing.T, q *queue.Queue[controller.Request], key controller.Request, verb string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the key of the "+verb+" of "+key.String(), func() (bool, error) {
		k, ok := q.TryGet()
		if !ok {
			return false, nil
		}
		q.Done(k)
		if k != key {
			t.Fatalf("after the %s of %v the queue gave %v", verb, key, k)
		}
		return true, nil
	})
}
