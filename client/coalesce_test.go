package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// sent is one request the fake sender saw.
type sent struct {
	at    time.Time
	name  string
	sub   string
	patch map[string]any
}

// fakeSender records requests; a request blocks while gate is non-nil and
// open, and fails with fail[name] if set. The answer has resourceVersion n
// (the request's number).
type fakeSender struct {
	mu   sync.Mutex
	reqs []sent
	gate chan struct{}
	fail map[string]error
}

func (f *fakeSender) send(ctx context.Context, obj Object, sub string, patch []byte) error {
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil {
		return err
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, sent{at: time.Now(), name: obj.GetName(), sub: sub, patch: p})
	n, gate, err := len(f.reqs), f.gate, f.fail[obj.GetName()]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	obj.SetResourceVersion(strconv.Itoa(n))
	return err
}

func (f *fakeSender) requests() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.reqs...)
}

func cm(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
}

// startRun runs co until the returned stop is called; stop waits for Run.
func startRun(t *testing.T, co *Coalescer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func dataPatch(k, v string) []byte { return fmt.Appendf(nil, `{"data":{%q:%q}}`, k, v) }

func TestCoalescerMergesWithinWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		co := newCoalescer(f.send, CoalesceOptions{Window: 20 * time.Millisecond})
		stop := startRun(t, co)
		defer stop()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 50)
		objs := make([]*corev1.ConfigMap, 50)
		for i := range 50 {
			objs[i] = cm("a")
			wg.Go(func() {
				time.Sleep(time.Duration(i%10) * time.Millisecond) // spread over half the window
				errs[i] = co.MergePatch(context.Background(), objs[i], dataPatch(fmt.Sprint("k", i), "v"))
			})
		}
		wg.Wait()
		reqs := f.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1: %+v", len(reqs), reqs)
		}
		if got := reqs[0].at.Sub(start); got != 20*time.Millisecond {
			t.Errorf("sent %v after the first change, want the window (20ms)", got)
		}
		data := reqs[0].patch["data"].(map[string]any)
		if len(data) != 50 {
			t.Errorf("patch has %d keys, want 50", len(data))
		}
		for i := range 50 {
			if errs[i] != nil || objs[i].ResourceVersion != "1" {
				t.Errorf("waiter %d: err %v, resourceVersion %q; want nil, the answer's \"1\"", i, errs[i], objs[i].ResourceVersion)
			}
		}
	})
}

func TestCoalescerMaxBatchAndOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		co := newCoalescer(f.send, CoalesceOptions{Window: time.Second, MaxBatch: 3})
		stop := startRun(t, co)
		defer stop()
		var wg sync.WaitGroup
		for i := range 7 {
			wg.Go(func() {
				if err := co.MergePatch(context.Background(), cm("a"), dataPatch("k", strconv.Itoa(i))); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait() // enter in order 0..6
		}
		wg.Wait()
		reqs := f.requests()
		// Three changes fill a batch: sent at once. The next three fill the
		// next batch while the first is in flight; the last waits its window.
		want := []string{"2", "5", "6"}
		if len(reqs) != len(want) {
			t.Fatalf("%d requests, want %d", len(reqs), len(want))
		}
		for i, r := range reqs {
			if got := r.patch["data"].(map[string]any)["k"]; got != want[i] {
				t.Errorf("request %d carries k=%v, want the last of its batch, %s", i, got, want[i])
			}
		}
		if d := reqs[2].at.Sub(reqs[0].at); d != time.Second {
			t.Errorf("last request %v after the first, want the window (1s)", d)
		}
	})
}

func TestCoalescerOneInFlightPerObject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{gate: make(chan struct{})}
		co := newCoalescer(f.send, CoalesceOptions{})
		stop := startRun(t, co)
		defer stop()
		var wg sync.WaitGroup
		patch := func(name, k string) {
			wg.Go(func() {
				if err := co.MergePatch(context.Background(), cm(name), dataPatch(k, "v")); err != nil {
					t.Error(err)
				}
			})
		}
		patch("a", "first")
		patch("b", "other-object")
		time.Sleep(10 * time.Millisecond) // the window ends: a and b are sent together
		synctest.Wait()
		if n := len(f.requests()); n != 2 {
			t.Fatalf("%d requests in flight, want 2 (one per object)", n)
		}
		patch("a", "second")
		time.Sleep(time.Second) // far past its window, but a's first request is still in flight
		synctest.Wait()
		if n := len(f.requests()); n != 2 {
			t.Fatalf("%d requests, want still 2 while a's first is in flight", n)
		}
		close(f.gate)
		wg.Wait()
		reqs := f.requests()
		if len(reqs) != 3 || reqs[2].name != "a" || reqs[2].patch["data"].(map[string]any)["second"] == nil {
			t.Fatalf("requests %+v, want a third one for a's second change", reqs)
		}
	})
}

func TestCoalescerErrorReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		f := &fakeSender{fail: map[string]error{"bad": boom}}
		co := newCoalescer(f.send, CoalesceOptions{})
		stop := startRun(t, co)
		defer stop()
		var wg sync.WaitGroup
		var mu sync.Mutex
		results := map[string][]error{}
		for i := range 10 {
			name := []string{"bad", "good"}[i%2]
			wg.Go(func() {
				err := co.MergePatch(context.Background(), cm(name), dataPatch(fmt.Sprint(i), "v"))
				mu.Lock()
				results[name] = append(results[name], err)
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, err := range results["bad"] {
			if !errors.Is(err, boom) {
				t.Errorf("waiter of the failed request got %v, want boom", err)
			}
		}
		for _, err := range results["good"] {
			if err != nil {
				t.Errorf("waiter of the other object got %v", err)
			}
		}
		if len(results["bad"]) != 5 || len(f.requests()) != 2 {
			t.Errorf("%d bad waiters, %d requests; want 5, 2", len(results["bad"]), len(f.requests()))
		}
	})
}

func TestCoalescerSplitsWhatDoesNotCompose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		co := newCoalescer(f.send, CoalesceOptions{})
		stop := startRun(t, co)
		defer stop()
		var wg sync.WaitGroup
		for _, p := range []string{`{"data":null}`, `{"data":{"a":"1"}}`, `{"data":{"b":"2"}}`} {
			wg.Go(func() {
				if err := co.MergePatchStatus(context.Background(), cm("a"), []byte(p)); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait()
		}
		wg.Wait()
		reqs := f.requests()
		if len(reqs) != 2 || reqs[0].patch["data"] != nil || len(reqs[1].patch["data"].(map[string]any)) != 2 || reqs[1].sub != "status" {
			t.Fatalf("requests %+v; want the delete alone, then a and b together, on status", reqs)
		}
	})
}

func TestCoalescerCancelledWaiterWithdraws(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		co := newCoalescer(f.send, CoalesceOptions{Window: time.Second})
		stop := startRun(t, co)
		defer stop()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := co.MergePatch(ctx, cm("a"), dataPatch("gone", "v")); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled waiter got %v", err)
			}
		})
		wg.Go(func() {
			if err := co.MergePatch(context.Background(), cm("a"), dataPatch("kept", "v")); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		cancel()
		wg.Wait()
		reqs := f.requests()
		if len(reqs) != 1 || reqs[0].patch["data"].(map[string]any)["gone"] != nil {
			t.Fatalf("requests %+v; want one without the withdrawn change", reqs)
		}
	})
}

func TestCoalescerRunEndFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		co := newCoalescer(f.send, CoalesceOptions{Window: time.Hour})
		stop := startRun(t, co)
		start := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- co.MergePatch(context.Background(), cm("a"), dataPatch("k", "v")) }()
		synctest.Wait()
		stop()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if reqs := f.requests(); len(reqs) != 1 || reqs[0].at != start {
			t.Fatalf("requests %+v; want one, sent when Run's context ended", reqs)
		}
		if err := co.MergePatch(context.Background(), cm("a"), dataPatch("k", "v")); !errors.Is(err, ErrCoalescerStopped) {
			t.Errorf("after Run: %v, want ErrCoalescerStopped", err)
		}
		if err := co.Run(context.Background()); err == nil {
			t.Error("second Run: nil error")
		}
	})
}

func TestCoalescerRejectsNonObjectPatch(t *testing.T) {
	co := newCoalescer((&fakeSender{}).send, CoalesceOptions{})
	if err := co.MergePatch(context.Background(), cm("a"), []byte(`[1]`)); err == nil {
		t.Fatal("a JSON list was accepted as a merge patch")
	}
}
