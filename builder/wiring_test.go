package builder_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// series is one sample of the Prometheus text format.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// parseSeries reads the Prometheus text exposition format (comments
// skipped; label values unescaped).
func parseSeries(t *testing.T, body string) []series {
	t.Helper()
	var out []series
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s := series{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name, rest = line[:i], line[i+1:]
			for !strings.HasPrefix(rest, "}") {
				eq := strings.Index(rest, "=\"")
				if eq < 0 {
					t.Fatalf("metrics line %q: bad labels", line)
				}
				name := rest[:eq]
				rest = rest[eq+1:]
				end := 1
				for ; end < len(rest) && rest[end] != '"'; end++ {
					if rest[end] == '\\' {
						end++
					}
				}
				if end >= len(rest) {
					t.Fatalf("metrics line %q: unterminated label value", line)
				}
				v, err := strconv.Unquote(rest[:end+1])
				if err != nil {
					t.Fatalf("metrics line %q: label %s: %v", line, name, err)
				}
				s.labels[name] = v
				rest = strings.TrimPrefix(rest[end+1:], ",")
			}
			rest = strings.TrimSpace(rest[1:])
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		valueText, _, _ := strings.Cut(rest, " ") // an optional timestamp follows
		v, err := strconv.ParseFloat(valueText, 64)
		if err != nil {
			t.Fatalf("metrics line %q: value: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// find returns the samples named name whose labels include want.
func find(all []series, name string, want map[string]string) []series {
	var out []series
	for _, s := range all {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			if s.labels[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// TestMetricsAreWiredToTheManagersHandler: a controller built by the
// builder reports its queue (workqueue_*), its reconciles
// (controller_runtime_*) and its informer (skiff_informer_*) in the
// manager's registry, served at /metrics by mgr.Handler().
func TestMetricsAreWiredToTheManagersHandler(t *testing.T) {
	const n, name = 3, "metered"
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	rec := newRecorder()
	c, err := builder.Build(mgr, rec.reconciler(nil), builder.Named(name), configMapsIn(ns), builder.For[*corev1.ConfigMap]())
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	createConfigMaps(t, cs, ns, n, nil)
	for i := range n {
		rec.waitDone(t, request{Namespace: ns, Name: fmt.Sprintf("cm-%03d", i)}, 1)
	}
	waitUntil(t, "the controller to count its reconciles", func() bool { return c.Stats().Reconciles >= n })

	srv := httptest.NewServer(mgr.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	all := parseSeries(t, string(body))
	one := func(metric string, labels map[string]string) float64 {
		t.Helper()
		got := find(all, metric, labels)
		if len(got) != 1 {
			t.Fatalf("/metrics has %d series %s%v, want 1", len(got), metric, labels)
		}
		return got[0].value
	}
	queue := map[string]string{"name": name}
	if v := one("workqueue_adds_total", queue); v < n {
		t.Errorf("workqueue_adds_total{name=%q} = %v, want >= %d", name, v, n)
	}
	if v := one("workqueue_depth", queue); v != 0 {
		t.Errorf("workqueue_depth{name=%q} = %v with every key reconciled, want 0", name, v)
	}
	if v := one("workqueue_work_duration_seconds_count", queue); v < n {
		t.Errorf("workqueue_work_duration_seconds_count{name=%q} = %v, want >= %d", name, v, n)
	}
	if v := one("controller_runtime_reconcile_total", map[string]string{"controller": name, "result": "success"}); v < n {
		t.Errorf("controller_runtime_reconcile_total{controller=%q,result=\"success\"} = %v, want >= %d", name, v, n)
	}
	if v := one("controller_runtime_max_concurrent_reconciles", map[string]string{"controller": name}); v < 1 {
		t.Errorf("controller_runtime_max_concurrent_reconciles{controller=%q} = %v, want >= 1", name, v)
	}
	// The informer's name is the client's business; it names the resource
	// and the namespace.
	var objects []series
	for _, s := range find(all, "skiff_informer_objects", nil) {
		if inf := s.labels["informer"]; strings.Contains(inf, "configmaps") && strings.Contains(inf, ns) {
			objects = append(objects, s)
		}
	}
	if len(objects) != 1 {
		t.Fatalf("/metrics has %d skiff_informer_objects series for the configmaps of %s, want 1: %v", len(objects), ns, find(all, "skiff_informer_objects", nil))
	}
	if v := objects[0].value; v != n {
		t.Errorf("skiff_informer_objects{informer=%q} = %v, want %d", objects[0].labels["informer"], v, n)
	}
	if v := one("skiff_informer_relists_total", map[string]string{"informer": objects[0].labels["informer"]}); v < 1 {
		t.Errorf("skiff_informer_relists_total = %v, want >= 1 (the first list)", v)
	}
}

// lockedBuffer is an io.Writer safe for the concurrent writes of a logger.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestReconcileContextCarriesALogger: controller.Logger(ctx) inside
// Reconcile is the manager's logger (the builder's default) with the
// attributes controller, key and reconcileID, a new ID per reconcile.
func TestReconcileContextCarriesALogger(t *testing.T) {
	const n, name = 2, "logged"
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	var out lockedBuffer
	mgr := newManager(t, manager.Options{Logger: slog.New(slog.NewTextHandler(&out, nil))})
	rec := newRecorder()
	_, err := builder.Build(mgr, rec.reconciler(func(ctx context.Context, req request, _ int) (controller.Result, error) {
		controller.Logger(ctx).Info("reconciling in test")
		return controller.Result{}, nil
	}), builder.Named(name), configMapsIn(ns), builder.For[*corev1.ConfigMap]())
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	createConfigMaps(t, cs, ns, n, nil)
	for i := range n {
		rec.waitDone(t, request{Namespace: ns, Name: fmt.Sprintf("cm-%03d", i)}, 1)
	}
	line := regexp.MustCompile(`msg="reconciling in test" controller=(\S+) key=(\S+) reconcileID=(\S+)`)
	ids := map[string]bool{}
	keys := map[string]bool{}
	lines := 0
	for l := range strings.Lines(out.String()) {
		if !strings.Contains(l, "reconciling in test") {
			continue
		}
		lines++
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("log line %q: want controller, key and reconcileID attributes", l)
		}
		if m[1] != name {
			t.Errorf("log line %q: controller=%s, want %s", l, m[1], name)
		}
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(m[3]) {
			t.Errorf("log line %q: reconcileID %q is not 16 hex digits", l, m[3])
		}
		keys[strings.Trim(m[2], `"`)] = true
		ids[m[3]] = true
	}
	for i := range n {
		if k := fmt.Sprintf("%s/cm-%03d", ns, i); !keys[k] {
			t.Errorf("no reconcile log line with key=%s; log:\n%s", k, out.String())
		}
	}
	if len(ids) != lines {
		t.Errorf("%d distinct reconcileIDs in %d reconcile log lines, want a new one per reconcile", len(ids), lines)
	}
}
