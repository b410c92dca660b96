package event

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests cover the recorder's pure parts — argument checks, the
// buffer, counting, pacing — with client-go's fake clientset, inside
// testing/synctest bubbles so time is fake. What the API server does with
// the Events is tested against the real control plane in event/integration.

var cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", UID: "cm-uid"}}

// fakeClient is a fake clientset that names created Events from their
// generateName (the fake tracker does not) and counts calls by verb.
func fakeClient() (*fake.Clientset, *sync.Map) {
	c := fake.NewClientset()
	calls := &sync.Map{}
	var seq atomic.Int64
	c.PrependReactor("*", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n, _ := calls.LoadOrStore(a.GetVerb(), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if ca, ok := a.(k8stesting.CreateAction); ok {
			ev := ca.GetObject().(*eventsv1.Event)
			ev.Name = fmt.Sprintf("%s%05d", ev.GenerateName, seq.Add(1))
		}
		return false, nil, nil
	})
	return c, calls
}

func callCount(calls *sync.Map, verb string) int64 {
	n, ok := calls.Load(verb)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testRecorder(t *testing.T, o Options, c *fake.Clientset) *Recorder {
	t.Helper()
	if o.Controller == "" {
		o.Controller = "skiff.dev/test"
	}
	if o.Instance == "" {
		o.Instance = "test-0"
	}
	o.Logger = quiet()
	r, err := newRecorder(o, c)
	if err != nil {
		t.Fatalf("newRecorder: %v", err)
	}
	return r
}

// start runs r.Run until the test ends, and waits for it.
func start(t *testing.T, r *Recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func metricValue(t *testing.T, reg *prometheus.Registry, typ Type, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != MetricEvents {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == string(typ) && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestNewRejectsBadOptions(t *testing.T) {
	c := fake.NewClientset()
	tests := []struct {
		o   Options
		err string
	}{
		{Options{}, "Controller"},
		{Options{Controller: "bad name!"}, `Controller "bad name!"`},
		{Options{Controller: "skiff.dev/x", SeriesWindow: time.Second, SeriesUpdateInterval: time.Minute}, "SeriesUpdateInterval"},
	}
	for _, tt := range tests {
		if _, err := newRecorder(tt.o, c); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("newRecorder(%+v) = %v, want an error naming %s", tt.o, err, tt.err)
		}
	}
	if _, err := New(Options{Controller: "skiff.dev/x"}); err == nil || !strings.Contains(err.Error(), "Config") {
		t.Errorf("New without Config = %v, want an error naming Config", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := newRecorder(Options{Controller: "skiff.dev/x", Instance: "i", Registerer: reg}, c); err != nil {
		t.Fatal(err)
	}
	if _, err := newRecorder(Options{Controller: "skiff.dev/x", Instance: "i", Registerer: reg}, c); err == nil {
		t.Errorf("a second recorder on the same registry registered %s twice without error", MetricEvents)
	}
	r, err := newRecorder(Options{Controller: "skiff.dev/x", Instance: strings.Repeat("i", 300)}, c)
	if err != nil || len(r.instance) != MaxInstanceLength {
		t.Errorf("long Instance: err %v, length %d, want cut to %d", err, len(r.instance), MaxInstanceLength)
	}
}

func TestEventRejectsBadArguments(t *testing.T) {
	r := testRecorder(t, Options{}, fake.NewClientset())
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"}}
	tests := []struct {
		name                 string
		obj                  Object
		typ                  Type
		reason, action, want string
	}{
		{"bad type", cm, "Info", "R", "A", `type "Info"`},
		{"empty reason", cm, Normal, "", "A", "reason"},
		{"long reason", cm, Normal, strings.Repeat("r", 129), "A", "reason"},
		{"empty action", cm, Normal, "R", "", "action"},
		{"long action", cm, Warning, "R", strings.Repeat("a", 129), "action"},
		{"unregistered CRD type", w, Normal, "R", "A", "kind not found in the scheme"},
		{"nil object", nil, Normal, "R", "A", "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Event(tt.obj, tt.typ, tt.reason, tt.action, "note")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Event = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if len(r.buf) != 0 {
		t.Errorf("%d rejected events were buffered", len(r.buf))
	}
	// The same CRD type is accepted once its scheme is given.
	s := runtime.NewScheme()
	s.AddKnownTypes(schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}, &Widget{})
	r2 := testRecorder(t, Options{Scheme: s}, fake.NewClientset())
	if err := r2.Event(w, Normal, "R", "A", "note"); err != nil {
		t.Errorf("Event on a registered CRD type: %v", err)
	}
}

// TestFullBufferDropsAndCounts blocks the writer inside a create, fills the
// buffer behind it, and checks that Event keeps returning at once with
// ErrBufferFull, counted in Stats and the metric; once the writer is
// released, everything buffered is written.
func TestFullBufferDropsAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, calls := fakeClient()
		entered, release := make(chan struct{}, 10), make(chan struct{})
		c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
			entered <- struct{}{}
			<-release
			return false, nil, nil
		})
		reg := prometheus.NewRegistry()
		r := testRecorder(t, Options{BufferSize: 2, Registerer: reg}, c)
		start(t, r)

		if err := r.Event(cm, Normal, "First", "Act", "1"); err != nil {
			t.Fatal(err)
		}
		<-entered // Run is now stuck in the first create
		for i := range 2 {
			if err := r.Event(cm, Warning, fmt.Sprintf("Buffered%d", i), "Act", "n"); err != nil {
				t.Fatalf("event %d with room in the buffer: %v", i, err)
			}
		}
		for range 3 {
			if err := r.Event(cm, Warning, "Overflow", "Act", "n"); !errors.Is(err, ErrBufferFull) {
				t.Fatalf("Event on a full buffer = %v, want ErrBufferFull", err)
			}
		}
		if s := r.Stats(); s.Dropped != 3 || s.Sent != 0 {
			t.Errorf("stats while blocked = %+v, want 3 dropped, 0 sent", s)
		}
		if v := metricValue(t, reg, Warning, "dropped"); v != 3 {
			t.Errorf("%s{type=Warning,result=dropped} = %v, want 3", MetricEvents, v)
		}
		close(release)
		synctest.Wait()
		if s := r.Stats(); s.Sent != 3 || s.Dropped != 3 || s.Failed != 0 {
			t.Errorf("stats after release = %+v, want 3 sent, 3 dropped", s)
		}
		if got := callCount(calls, "create"); got != 3 {
			t.Errorf("%d creates, want 3", got)
		}
		if v := metricValue(t, reg, Warning, "sent"); v != 2 {
			t.Errorf("%s{type=Warning,result=sent} = %v, want 2", MetricEvents, v)
		}
		if v := metricValue(t, reg, Normal, "sent"); v != 1 {
			t.Errorf("%s{type=Normal,result=sent} = %v, want 1", MetricEvents, v)
		}
	})
}

// TestSeriesPacing records one event many times and checks the API calls:
// one create, the series start at once, then one update per interval while
// repeats continue, and the final count on the stored object.
func TestSeriesPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, calls := fakeClient()
		reg := prometheus.NewRegistry()
		r := testRecorder(t, Options{SeriesUpdateInterval: 10 * time.Second, SeriesWindow: time.Minute, Registerer: reg}, c)
		start(t, r)
		for range 10 {
			if err := r.Event(cm, Warning, "Failing", "Sync", "boom"); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if cr, pa := callCount(calls, "create"), callCount(calls, "patch"); cr != 1 || pa != 1 {
			t.Fatalf("after 10 quick events: %d creates, %d patches; want 1 and 1 (the series start)", cr, pa)
		}
		time.Sleep(16 * time.Second) // past one interval plus the half-interval tick
		synctest.Wait()
		if pa := callCount(calls, "patch"); pa != 2 {
			t.Fatalf("after an interval: %d patches, want 2", pa)
		}
		list, err := c.EventsV1().Events("ns").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 || list.Items[0].Series == nil || list.Items[0].Series.Count != 10 {
			t.Fatalf("stored events = %+v, want one with series.count 10", list.Items)
		}
		time.Sleep(5 * time.Minute) // no new occurrences: no more writes
		synctest.Wait()
		if pa := callCount(calls, "patch"); pa != 2 {
			t.Errorf("a quiet series was written again: %d patches", pa)
		}
		if v := metricValue(t, reg, Warning, "series_updated"); v != 2 {
			t.Errorf("%s{result=series_updated} = %v, want 2", MetricEvents, v)
		}
		if r.tracker.len() != 0 {
			t.Errorf("%d series remembered after a quiet window", r.tracker.len())
		}
	})
}

// TestFailedWritesAreCountedNotRetried: a forbidden create is logged and
// counted once, and not tried again while nothing new happens.
func TestFailedWritesAreCountedNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := fakeClient()
		var creates atomic.Int64
		c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
			creates.Add(1)
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "", errors.New("namespace ns is being terminated"))
		})
		reg := prometheus.NewRegistry()
		r := testRecorder(t, Options{SeriesUpdateInterval: 10 * time.Second, SeriesWindow: time.Minute, Registerer: reg}, c)
		start(t, r)
		if err := r.Event(cm, Normal, "Created", "Create", ""); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := creates.Load(); got != 1 {
			t.Errorf("%d creates for one failing event over an hour, want 1", got)
		}
		if s := r.Stats(); s.Failed != 1 || s.Sent != 0 {
			t.Errorf("stats = %+v, want 1 failed", s)
		}
		if v := metricValue(t, reg, Normal, "failed"); v != 1 {
			t.Errorf("%s{result=failed} = %v, want 1", MetricEvents, v)
		}
	})
}

func TestRunStopsAndCountsLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, calls := fakeClient()
		r := testRecorder(t, Options{}, c)
		for i := range 3 {
			if err := r.Event(cm, Normal, fmt.Sprintf("R%d", i), "A", ""); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if err := r.Run(context.Background()); err == nil {
			t.Errorf("a second Run returned nil")
		}
		// Run may have written some before seeing ctx done (select is random);
		// everything is either sent or dropped.
		s := r.Stats()
		if s.Sent+s.Dropped != 3 || int64(s.Sent) != callCount(calls, "create") {
			t.Errorf("stats %+v with %d creates: want sent+dropped = 3", s, callCount(calls, "create"))
		}
	})
}
