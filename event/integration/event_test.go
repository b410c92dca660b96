// Package integration tests the event recorder against the local control
// plane (testenv): what the API server stores, and what it refuses.
package integration

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/event"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { env = e; return nil }))
}

const controller = "skiff.dev/event-test"

// startRecorder builds a recorder on the shared control plane with fast
// series pacing, runs it until the test ends, and waits for Run to return.
func startRecorder(t *testing.T, o event.Options) *event.Recorder {
	t.Helper()
	if o.Config == nil {
		o.Config = env.Config()
	}
	o.Controller = controller
	o.Instance = "it-0"
	if o.SeriesUpdateInterval == 0 {
		o.SeriesUpdateInterval = 200 * time.Millisecond
	}
	if o.SeriesWindow == 0 {
		o.SeriesWindow = time.Minute
	}
	o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	r, err := event.New(o)
	if err != nil {
		t.Fatalf("event.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// testWriter sends the recorder's log to the test's log. Run is joined in a
// Cleanup, so nothing writes after the test is over.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitFor polls cond every 50ms until it returns true or 30s pass.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}

// eventsWith lists the events.k8s.io/v1 Events in ns with the given reason.
func eventsWith(t *testing.T, cs kubernetes.Interface, ns, reason string) ([]eventsv1.Event, error) {
	list, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func createConfigMap(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create config map: %v", err)
	}
	return cm
}

func TestEventOnConfigMap(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	cm := createConfigMap(t, cs, ns, "settings")
	reg := prometheus.NewRegistry()
	rec := startRecorder(t, event.Options{Registerer: reg})

	if err := rec.Eventf(cm, event.Normal, "ConfigMapSynced", "Sync", "synced %d keys", 3); err != nil {
		t.Fatalf("Event: %v", err)
	}
	var got []eventsv1.Event
	// The recorder counts a create when its response arrives, which may be
	// after the Event is visible in a list.
	waitFor(t, "the Event, and the recorder counting it", func() (bool, error) {
		var err error
		got, err = eventsWith(t, cs, ns, "ConfigMapSynced")
		return len(got) == 1 && rec.Stats().Sent == 1, err
	})
	ev := got[0]
	want := corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: ns, Name: "settings", UID: cm.UID, ResourceVersion: cm.ResourceVersion}
	if ev.Regarding != want {
		t.Errorf("regarding = %+v, want %+v", ev.Regarding, want)
	}
	if ev.Reason != "ConfigMapSynced" || ev.Action != "Sync" || ev.Type != "Normal" || ev.Note != "synced 3 keys" {
		t.Errorf("reason/action/type/note = %q/%q/%q/%q", ev.Reason, ev.Action, ev.Type, ev.Note)
	}
	if ev.ReportingController != controller || ev.ReportingInstance != "it-0" {
		t.Errorf("reporting = %q/%q, want %q/it-0", ev.ReportingController, ev.ReportingInstance, controller)
	}
	if ev.Series != nil || ev.EventTime.IsZero() {
		t.Errorf("series = %+v, eventTime = %v; want a singleton with an eventTime", ev.Series, ev.EventTime)
	}
	if !strings.HasPrefix(ev.Name, "settings-") {
		t.Errorf("event name %q does not start with the regarding object's name", ev.Name)
	}
	if s := rec.Stats(); s.Sent != 1 || s.Failed != 0 {
		t.Errorf("stats = %+v, want 1 sent", s)
	}
	if v := counter(t, reg, "Normal", "sent"); v != 1 {
		t.Errorf("skiff_events_total{type=Normal,result=sent} = %v, want 1", v)
	}
}

// TestRepeatsBecomeOneSeries records the same event 10 times at once: one
// Event whose series reaches count 10.
func TestRepeatsBecomeOneSeries(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	cm := createConfigMap(t, cs, ns, "hot")
	reg := prometheus.NewRegistry()
	rec := startRecorder(t, event.Options{Registerer: reg})

	for range 10 {
		if err := rec.Event(cm, event.Warning, "SyncFailed", "Sync", "backend unavailable"); err != nil {
			t.Fatalf("Event: %v", err)
		}
	}
	var got []eventsv1.Event
	waitFor(t, "one Event with series.count 10", func() (bool, error) {
		var err error
		got, err = eventsWith(t, cs, ns, "SyncFailed")
		return len(got) == 1 && got[0].Series != nil && got[0].Series.Count == 10 && rec.Stats().SeriesUpdated >= 2, err
	})
	if lo := got[0].Series.LastObservedTime; lo.Before(&got[0].EventTime) {
		t.Errorf("series.lastObservedTime %v is before eventTime %v", lo, got[0].EventTime)
	}
	s := rec.Stats()
	if s.Sent != 1 || s.Failed != 0 || s.Dropped != 0 {
		t.Errorf("stats = %+v, want 1 sent, nothing failed or dropped", s)
	}
	if v := counter(t, reg, "Warning", "series_updated"); v != float64(s.SeriesUpdated) {
		t.Errorf("skiff_events_total{type=Warning,result=series_updated} = %v, want %d as in Stats", v, s.SeriesUpdated)
	}
}

// TestDeletedEventIsRecreatedWithSeries deletes a series' Event; the next
// series write finds it gone and creates a new Event carrying the count.
func TestDeletedEventIsRecreatedWithSeries(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	cm := createConfigMap(t, cs, ns, "flappy")
	rec := startRecorder(t, event.Options{})
	record := func() {
		if err := rec.Event(cm, event.Warning, "Flapping", "Probe", "down"); err != nil {
			t.Fatal(err)
		}
	}
	record()
	record()
	var first []eventsv1.Event
	waitFor(t, "series.count 2", func() (bool, error) {
		var err error
		first, err = eventsWith(t, cs, ns, "Flapping")
		return len(first) == 1 && first[0].Series != nil && first[0].Series.Count == 2, err
	})
	if err := cs.EventsV1().Events(ns).Delete(context.Background(), first[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	record() // its patch gets NotFound
	waitFor(t, "the failed patch", func() (bool, error) { return rec.Stats().Failed == 1, nil })
	record() // a new occurrence: the next write creates, with the series
	waitFor(t, "a new Event with series.count 4", func() (bool, error) {
		got, err := eventsWith(t, cs, ns, "Flapping")
		return len(got) == 1 && got[0].Name != first[0].Name && got[0].Series != nil && got[0].Series.Count == 4, err
	})
}

// Widget stands for a user's CRD type. The API server does not check that
// the regarding object exists, so no CRD needs installing.
type Widget struct {
	metav1.TypeMeta
	metav1.ObjectMeta
}

func (w *Widget) DeepCopyObject() runtime.Object { c := *w; return &c }

func TestCRDTypeAndUnknownType(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w1", UID: "0a4c1f3e-0000-4000-8000-000000000001"}}

	plain := startRecorder(t, event.Options{})
	err := plain.Event(w, event.Normal, "Reconciled", "Reconcile", "")
	if !errors.Is(err, event.ErrUnknownKind) || !strings.Contains(err.Error(), "Widget") {
		t.Fatalf("Event on an unregistered type = %v, want ErrUnknownKind naming Widget", err)
	}

	scheme := runtime.NewScheme()
	scheme.AddKnownTypes(schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}, &Widget{})
	rec := startRecorder(t, event.Options{Scheme: scheme})
	if err := rec.Event(w, event.Normal, "Reconciled", "Reconcile", ""); err != nil {
		t.Fatalf("Event on a registered CRD type: %v", err)
	}
	waitFor(t, "the Widget's Event", func() (bool, error) {
		got, err := eventsWith(t, cs, ns, "Reconciled")
		return len(got) == 1 && got[0].Regarding.APIVersion == "demo.skiff.dev/v1" && got[0].Regarding.Kind == "Widget", err
	})
	if s := plain.Stats(); s != (event.Stats{}) {
		t.Errorf("the rejected event was counted: %+v", s)
	}
}

// TestClusterScopedAndLongNote: an Event about a cluster-scoped object goes
// to "default"; a 5 KiB note is cut and accepted.
func TestClusterScopedAndLongNote(t *testing.T) {
	cs := clientset(t)
	nsName := testenv.Namespace(t, env.Config())
	nsObj, err := cs.CoreV1().Namespaces().Get(context.Background(), nsName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := startRecorder(t, event.Options{})
	reason := "Checked" + strings.ReplaceAll(string(nsObj.UID[:8]), "-", "")
	if err := rec.Event(nsObj, event.Warning, reason, "Check", strings.Repeat("x", 5000)); err != nil {
		t.Fatal(err)
	}
	var got []eventsv1.Event
	waitFor(t, "the Namespace's Event in default", func() (bool, error) {
		got, err = eventsWith(t, cs, "default", reason)
		return len(got) == 1, err
	})
	t.Cleanup(func() {
		_ = cs.EventsV1().Events("default").Delete(context.Background(), got[0].Name, metav1.DeleteOptions{})
	})
	ev := got[0]
	if ev.Regarding.Kind != "Namespace" || ev.Regarding.Name != nsName || ev.Regarding.Namespace != "" {
		t.Errorf("regarding = %+v", ev.Regarding)
	}
	if len(ev.Note) > event.MaxNoteLength || !strings.HasSuffix(ev.Note, "(truncated)") {
		t.Errorf("note of %d bytes ending %q, want at most %d ending (truncated)", len(ev.Note), ev.Note[len(ev.Note)-20:], event.MaxNoteLength)
	}
}

// TestForbiddenIsCountedNotRetried writes as a user with no RBAC grants.
func TestForbiddenIsCountedNotRetried(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	cm := createConfigMap(t, cs, ns, "denied")
	cfg := env.Config()
	cfg.Impersonate.UserName = "nobody"
	reg := prometheus.NewRegistry()
	rec := startRecorder(t, event.Options{Config: cfg, Registerer: reg})
	if err := rec.Event(cm, event.Normal, "Denied", "Create", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forbidden create to be counted", func() (bool, error) {
		return rec.Stats().Failed == 1, nil
	})
	if v := counter(t, reg, "Normal", "failed"); v != 1 {
		t.Errorf("skiff_events_total{type=Normal,result=failed} = %v, want 1", v)
	}
	if got, err := eventsWith(t, cs, ns, "Denied"); err != nil || len(got) != 0 {
		t.Errorf("events = %v (%v), want none", got, err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, typ, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != event.MetricEvents {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ty, re string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "type":
					ty = l.GetValue()
				case "result":
					re = l.GetValue()
				}
			}
			if ty == typ && re == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
