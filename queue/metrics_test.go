package queue_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/skiffkit/skiff/queue"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := queue.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.NewMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry should fail")
	}
	q, clk := newFake(t, queue.Options[string]{Name: "pods", Metrics: m, MaxFailures: 1})
	q.AddWithPriority("a", 5)
	q.Add("b")
	q.Add("b")
	q.AddAfter("c", time.Second)
	k, _ := q.TryGet() // a
	clk.Advance(3 * time.Second)

	want := `
# HELP workqueue_adds_total Total number of adds handled by workqueue
# TYPE workqueue_adds_total counter
workqueue_adds_total{name="pods"} 4
# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name="pods"} 1
# HELP workqueue_depth_by_priority Current depth of workqueue by priority
# TYPE workqueue_depth_by_priority gauge
workqueue_depth_by_priority{name="pods",priority="0"} 1
workqueue_depth_by_priority{name="pods",priority="5"} 0
# HELP workqueue_longest_running_processor_seconds How many seconds has the longest running processor for workqueue been running.
# TYPE workqueue_longest_running_processor_seconds gauge
workqueue_longest_running_processor_seconds{name="pods"} 3
# HELP workqueue_retries_total Total number of retries handled by workqueue
# TYPE workqueue_retries_total counter
workqueue_retries_total{name="pods"} 1
# HELP workqueue_unfinished_work_seconds How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.
# TYPE workqueue_unfinished_work_seconds gauge
workqueue_unfinished_work_seconds{name="pods"} 3
`
	names := []string{"workqueue_adds_total", "workqueue_depth", "workqueue_depth_by_priority",
		"workqueue_longest_running_processor_seconds", "workqueue_retries_total", "workqueue_unfinished_work_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	q.Done(k)
	q.Fail("b", nil) // budget 1: dead at once
	if got := testutil.ToFloat64(mustCollector(t, reg, "workqueue_dead_letters")); got != 1 {
		t.Fatalf("dead letters = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "workqueue_work_duration_seconds", "workqueue_queue_duration_seconds"); err != nil || n != 2 {
		t.Fatalf("histograms: %d series, %v", n, err)
	}
	q.ShutDown()
	if n, _ := testutil.GatherAndCount(reg, "workqueue_unfinished_work_seconds"); n != 0 {
		t.Fatal("a shut-down queue still reports in-flight work")
	}
}

// mustCollector returns a collector exposing the gathered family name.
func mustCollector(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			v := mf.Metric[0].GetGauge().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name}, func() float64 { return v })
		}
	}
	t.Fatalf("%s not gathered", name)
	return nil
}
