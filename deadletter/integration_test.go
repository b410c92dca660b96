package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { env = e; return nil }))
}

// flaky reconciles by failing while fail is set, and counts attempts per
// key and per replica.
type flaky struct {
	replica string
	fail    *atomic.Bool
	mu      sync.Mutex
	counts  map[string]int // "replica key" -> reconciles
}

func (f *flaky) forReplica(name string) controller.Reconciler[controller.Request] {
	return controller.ReconcileFunc[controller.Request](func(_ context.Context, k controller.Request) (controller.Result, error) {
		f.mu.Lock()
		f.counts[name+" "+k.String()]++
		f.mu.Unlock()
		if f.fail.Load() {
			return controller.Result{}, errors.New("always failing: " + k.String())
		}
		return controller.Result{}, nil
	})
}

func (f *flaky) count(replica string, k controller.Request) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[replica+" "+k.String()]
}

// replica is one running controller with its store.
type replica struct {
	c      *controller.Controller[controller.Request]
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startReplica(t *testing.T, cfg *rest.Config, ns, ctrl, name string, rec controller.Reconciler[controller.Request], owns func(controller.Request) bool, log *slog.Logger, before func(*controller.Controller[controller.Request])) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := deadletter.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	store, err := deadletter.NewStore(deadletter.StoreOptions{Config: cfg, Controller: ctrl, Namespace: ns, Replica: name, Metrics: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(rec, controller.Options[controller.Request]{
		Name: ctrl, MaxFailures: 2, DeadLetterStore: store, OwnsKey: owns, Logger: log, ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{c: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop cancels the replica's context, nothing more graceful, and waits for
// Run to return.
func (r *replica) stop() {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
}

func (r *replica) info(key string) (controller.DeadLetterInfo, bool) {
	for _, d := range r.c.DeadLetterInfos() {
		if d.Key == key {
			return d, true
		}
	}
	return controller.DeadLetterInfo{}, false
}

// scrape reads the replica's metrics over HTTP, as Prometheus would, and
// returns the value of the sample whose line starts with series.
func (r *replica) scrape(t *testing.T, series string) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func entries(t *testing.T, cs kubernetes.Interface, ns, ctrl string) map[string]string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), deadletter.ConfigMapName(ctrl), metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return cm.Data
}

func storedEntry(t *testing.T, cs kubernetes.Interface, ns, ctrl, key string) (deadletter.Entry, bool) {
	v, ok := entries(t, cs, ns, ctrl)[deadletter.DataKey(key)]
	if !ok {
		return deadletter.Entry{}, false
	}
	e, err := deadletter.Decode(deadletter.DataKey(key), v)
	if err != nil {
		t.Fatalf("entry of %s: %v", key, err)
	}
	return e, true
}

func TestDeadLetterSurvivesRestart(t *testing.T) {
	cfg := env.Config()
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := testenv.Namespace(t, cfg)
	const ctrl = "Widgets/Restart" // not a valid object name: ConfigMapName makes one
	key := controller.Request{Namespace: ns, Name: "w1"}
	f := &flaky{fail: &atomic.Bool{}, counts: map[string]int{}}
	f.fail.Store(true)

	a := startReplica(t, cfg, ns, ctrl, "replica-a", f.forReplica("a"), nil, nil, func(c *controller.Controller[controller.Request]) { c.Queue().Add(key) })
	testenv.Eventually(t, 30*time.Second, "dead letter persisted by A", func() (bool, error) {
		e, ok := storedEntry(t, cs, ns, ctrl, key.String())
		return ok && e.Attempts == 2 && e.Replica == "replica-a" && strings.Contains(e.LastError, "always failing"), nil
	})
	if got := f.count("a", key); got != 2 {
		t.Fatalf("A reconciled %s %d times, want 2 (MaxFailures)", key, got)
	}
	series := `skiff_deadletter_persisted{controller="` + ctrl + `"}`
	testenv.Eventually(t, 10*time.Second, "persisted gauge 1 on A", func() (bool, error) { return a.scrape(t, series) == "1", nil })
	a.stop()

	// B starts with the key already queued, as its informer's first list
	// would queue it: the load takes it out before any worker runs.
	b := startReplica(t, cfg, ns, ctrl, "replica-b", f.forReplica("b"), nil, nil, func(c *controller.Controller[controller.Request]) { c.Queue().Add(key) })
	testenv.Eventually(t, 30*time.Second, "dead letter loaded by B", func() (bool, error) {
		d, ok := b.info(key.String())
		return ok && d.Here && d.Persisted && d.Attempts == 2, nil
	})
	testenv.Eventually(t, 30*time.Second, "B takes over the entry", func() (bool, error) {
		e, ok := storedEntry(t, cs, ns, ctrl, key.String())
		return ok && e.Replica == "replica-b", nil
	})
	if got := f.count("b", key); got != 0 {
		t.Fatalf("B reconciled the loaded dead letter %d times before any replay", got)
	}
	if got := b.scrape(t, series); got != "1" {
		t.Fatalf("B's %s = %q, want 1", series, got)
	}

	f.fail.Store(false)
	if !b.c.ReplayKey(key.String()) {
		t.Fatal("ReplayKey on B = false")
	}
	testenv.Eventually(t, 30*time.Second, "replayed key reconciled on B", func() (bool, error) { return f.count("b", key) == 1, nil })
	testenv.Eventually(t, 30*time.Second, "entry gone from the ConfigMap", func() (bool, error) {
		_, ok := storedEntry(t, cs, ns, ctrl, key.String())
		return !ok, nil
	})
	testenv.Eventually(t, 10*time.Second, "no dead letters listed on B", func() (bool, error) { return len(b.c.DeadLetterInfos()) == 0, nil })
	testenv.Eventually(t, 10*time.Second, "persisted gauge 0 on B", func() (bool, error) { return b.scrape(t, series) == "0", nil })
}

func TestReplayOnNonOwnerReachesOwner(t *testing.T) {
	cfg := env.Config()
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := testenv.Namespace(t, cfg)
	const ctrl = "two-replicas"
	// A fake ownership filter: A owns names starting with "a-", B the rest.
	ownedByA := func(k controller.Request) bool { return strings.HasPrefix(k.Name, "a-") }
	ownedByB := func(k controller.Request) bool { return !ownedByA(k) }
	keyA, keyB := controller.Request{Namespace: ns, Name: "a-1"}, controller.Request{Namespace: ns, Name: "b-1"}
	f := &flaky{fail: &atomic.Bool{}, counts: map[string]int{}}
	f.fail.Store(true)

	a := startReplica(t, cfg, ns, ctrl, "replica-a", f.forReplica("a"), ownedByA, nil, nil)
	b := startReplica(t, cfg, ns, ctrl, "replica-b", f.forReplica("b"), ownedByB, nil, nil)
	a.c.Queue().Add(keyA)
	b.c.Queue().Add(keyB)
	for _, k := range []controller.Request{keyA, keyB} {
		testenv.Eventually(t, 30*time.Second, "both dead letters persisted", func() (bool, error) {
			_, ok := storedEntry(t, cs, ns, ctrl, k.String())
			return ok, nil
		})
	}
	// Each replica lists both, and holds only its own.
	testenv.Eventually(t, 10*time.Second, "B lists A's dead letter as A's", func() (bool, error) {
		d, ok := b.info(keyA.String())
		return ok && !d.Here && d.Persisted && d.Replica == "replica-a", nil
	})
	if d, ok := a.info(keyA.String()); !ok || !d.Here {
		t.Fatalf("A's own dead letter on A: %+v, %v", d, ok)
	}

	f.fail.Store(false)
	if !b.c.ReplayKey(keyA.String()) {
		t.Fatal("ReplayKey(A's key) on B = false")
	}
	testenv.Eventually(t, 30*time.Second, "A reconciles the key replayed on B", func() (bool, error) { return f.count("a", keyA) == 3, nil })
	testenv.Eventually(t, 10*time.Second, "A's dead letter gone everywhere", func() (bool, error) {
		_, onA := a.info(keyA.String())
		_, onB := b.info(keyA.String())
		_, stored := storedEntry(t, cs, ns, ctrl, keyA.String())
		return !onA && !onB && !stored, nil
	})
	if got := f.count("b", keyA); got != 0 {
		t.Fatalf("B reconciled A's key %d times", got)
	}
	// B's own dead letter is untouched by all this.
	if d, ok := b.info(keyB.String()); !ok || !d.Here || !d.Persisted {
		t.Fatalf("B's dead letter after A's replay: %+v, %v", d, ok)
	}
	if got := f.count("b", keyB); got != 2 {
		t.Fatalf("B reconciled its dead key %d times, want 2", got)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMalformedEntriesSkippedAndKept(t *testing.T) {
	cfg := env.Config()
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := testenv.Namespace(t, cfg)
	const ctrl = "malformed"
	good := controller.Request{Namespace: ns, Name: "good"}
	v, err := deadletter.Encode(deadletter.NewEntry(good.String(), 7, errors.New("persisted by hand"), time.Unix(100, 0).UTC(), time.Unix(200, 0).UTC(), "someone"))
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{
		deadletter.DataKey(good.String()): v,
		"not-json":                        "{{{",
		"wrong-data-key":                  strings.Replace(v, "good", "other", 1),
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: deadletter.ConfigMapName(ctrl), Namespace: ns}, Data: data,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	f := &flaky{fail: &atomic.Bool{}, counts: map[string]int{}}
	f.fail.Store(true)
	r := startReplica(t, cfg, ns, ctrl, "replica-a", f.forReplica("a"), nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
	testenv.Eventually(t, 30*time.Second, "the valid entry loaded", func() (bool, error) {
		d, ok := r.info(good.String())
		return ok && d.Here && d.Attempts == 7 && d.LastError == "persisted by hand", nil
	})
	if n := len(r.c.DeadLetterInfos()); n != 1 {
		t.Fatalf("DeadLetterInfos has %d entries, want only the valid one: %+v", n, r.c.DeadLetterInfos())
	}
	testenv.Eventually(t, 10*time.Second, "malformed gauge", func() (bool, error) {
		return r.scrape(t, `skiff_deadletter_malformed{controller="malformed"}`) == "2", nil
	})
	for _, dk := range []string{"not-json", "wrong-data-key"} {
		if !regexp.MustCompile(`malformed dead-letter entry.*dataKey=` + dk).MatchString(logs.String()) {
			t.Fatalf("no log line reports data key %s:\n%s", dk, logs.String())
		}
	}
	// A write of the store (a new dead letter) keeps the malformed keys.
	other := controller.Request{Namespace: ns, Name: "other"}
	r.c.Queue().Add(other)
	testenv.Eventually(t, 30*time.Second, "new dead letter persisted", func() (bool, error) {
		_, ok := storedEntry(t, cs, ns, ctrl, other.String())
		return ok, nil
	})
	got := entries(t, cs, ns, ctrl)
	if got["not-json"] != data["not-json"] || got["wrong-data-key"] != data["wrong-data-key"] {
		t.Fatalf("malformed entries were not kept as they were: %v", got)
	}
}
