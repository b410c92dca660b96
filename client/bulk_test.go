package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// feed completes n writes, all started at started, finishing at now with
// latency each, and returns the limit after the last.
func feed(g *governor, n int, started, now time.Time, latency time.Duration) int {
	l := g.limit
	for range n {
		l = g.done(started, now, latency, false)
	}
	return l
}

func TestGovernorDecisions(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		// A first window of 16 writes at 10ms in 100ms sets the minimum and
		// grows the limit 16 → 24; then a second window of 24 writes at
		// latency second, taking secondDur (240ms: the same throughput).
		second    time.Duration
		secondDur time.Duration
		want      int // limit after the second window
	}{
		{"latency near the minimum, throughput same: grow", 10 * ms, 150 * ms, 36},
		{"latency 1.5x: still grow", 15 * ms, 150 * ms, 36},
		{"latency 1.8x: hold", 18 * ms, 150 * ms, 24},
		{"latency 2x: hold", 20 * ms, 150 * ms, 24},
		{"latency 2.5x, throughput same: shrink by a quarter", 25 * ms, 150 * ms, 18},
		{"latency 2.5x, throughput fell: shrink by a quarter", 25 * ms, 300 * ms, 18},
		{"latency 2.5x, throughput rose 20%: shrink all the same", 25 * ms, 125 * ms, 18},
		{"latency fine, throughput fell by half: hold", 10 * ms, 300 * ms, 24},
		{"latency fine, throughput fell by 5%: grow", 10 * ms, 157 * ms, 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGovernor(16, 64, t0)
			if got := feed(&g, 16, t0, t0.Add(100*ms), 10*ms); got != 24 {
				t.Fatalf("after the first window: limit %d, want 24", got)
			}
			start2 := t0.Add(100 * ms)
			if got := feed(&g, 24, start2, start2.Add(tc.secondDur), tc.second); got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGovernorThrottle(t *testing.T) {
	g := newGovernor(40, 64, t0)
	if got := g.done(t0, t0.Add(time.Millisecond), time.Millisecond, true); got != 20 {
		t.Fatalf("after a 429: limit %d, want 20", got)
	}
	// A 429 for a write sent before that cut reports on the old limit.
	if got := g.done(t0, t0.Add(2*time.Millisecond), time.Millisecond, true); got != 20 {
		t.Fatalf("after a stale 429: limit %d, want 20 (unchanged)", got)
	}
	// A fresh one cuts again, down to 1 and never below.
	now := t0.Add(3 * time.Millisecond)
	for range 10 {
		now = now.Add(time.Millisecond)
		g.done(now, now, 0, true)
	}
	if g.limit != 1 {
		t.Fatalf("after many 429s: limit %d, want 1", g.limit)
	}
}

func TestGovernorWindowWaitsForLimit(t *testing.T) {
	g := newGovernor(20, 64, t0)
	// 19 completions are less than a window of 20: no decision yet.
	if got := feed(&g, 19, t0, t0.Add(time.Second), time.Millisecond); got != 20 {
		t.Fatalf("limit %d before the window is full, want 20", got)
	}
	if got := feed(&g, 1, t0, t0.Add(time.Second), time.Millisecond); got != 30 {
		t.Fatalf("limit %d after the window, want 30", got)
	}
	// Below minWindow, a window is minWindow completions long.
	g = newGovernor(2, 64, t0)
	if got := feed(&g, minWindow-1, t0, t0.Add(time.Second), time.Millisecond); got != 2 {
		t.Fatalf("limit %d before minWindow completions, want 2", got)
	}
	if got := feed(&g, 1, t0, t0.Add(time.Second), time.Millisecond); got != 3 {
		t.Fatalf("limit %d after minWindow completions, want 3", got)
	}
}

// TestGovernorProperties feeds random completions and checks the invariants:
// the limit stays in [1, max] and a 429 never raises it.
func TestGovernorProperties(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for run := range 200 {
		maxL := 1 + rng.IntN(100)
		g := newGovernor(rng.IntN(120), maxL, t0)
		now := t0
		for range 500 {
			now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
			started := now.Add(-time.Duration(rng.IntN(200)) * time.Millisecond)
			lat := time.Duration(1+rng.IntN(100)) * time.Millisecond
			throttled := rng.IntN(20) == 0
			before := g.limit
			after := g.done(started, now, lat, throttled)
			if after < 1 || after > maxL {
				t.Fatalf("run %d: limit %d outside [1, %d]", run, after, maxL)
			}
			if throttled && after > before {
				t.Fatalf("run %d: a 429 raised the limit %d → %d", run, before, after)
			}
		}
	}
}

// simulate runs the governor against a model server that serves k requests
// at once in base time each and queues the rest (latency grows with the
// load beyond k), optionally answering 429 beyond throttleAt in flight. It
// returns the limits after each completion once half the writes are done.
func simulate(k int, base time.Duration, throttleAt, maxL, n int) []int {
	g := newGovernor(4, maxL, t0)
	type req struct {
		started, end time.Time
		throttled    bool
	}
	var inFlight []req
	now := t0
	var settled []int
	sent, done := 0, 0
	for done < n {
		for len(inFlight) < g.limit && sent < n {
			load := len(inFlight) + 1
			lat := base
			if load > k {
				lat = base * time.Duration(load) / time.Duration(k)
			}
			inFlight = append(inFlight, req{started: now, end: now.Add(lat), throttled: throttleAt > 0 && load > throttleAt})
			sent++
		}
		// complete the earliest.
		i := 0
		for j := range inFlight {
			if inFlight[j].end.Before(inFlight[i].end) {
				i = j
			}
		}
		r := inFlight[i]
		inFlight = append(inFlight[:i], inFlight[i+1:]...)
		now = r.end
		l := g.done(r.started, now, r.end.Sub(r.started), r.throttled)
		if r.throttled {
			sent-- // retried
		} else {
			done++
		}
		if done > n/2 {
			settled = append(settled, l)
		}
	}
	return settled
}

func TestGovernorSettlesNearServerCapacity(t *testing.T) {
	for _, k := range []int{2, 8, 20, 40} {
		t.Run(fmt.Sprint("capacity ", k), func(t *testing.T) {
			settled := simulate(k, 10*time.Millisecond, 0, 256, 20000)
			// Latency doubles at 2k in flight: the limit must stay where
			// the server is busy (≥ k) but not queueing more than 3× over.
			// Below the initial concurrency (4) the lowest latency the
			// governor sees is already queued and base is too high, so
			// the bound is 4.5k (see governor).
			hi := 3 * k
			if k < 4 {
				hi = 9 * k / 2
			}
			for _, l := range settled {
				if l < k || l > hi {
					t.Fatalf("limit %d after settling; want within [%d, %d]", l, k, hi)
				}
			}
			t.Logf("capacity %d: settled at %d", k, settled[len(settled)-1])
		})
	}
}

func TestGovernorBacksOffOn429(t *testing.T) {
	// A server that rejects beyond 16 in flight but never slows down.
	settled := simulate(1000, 10*time.Millisecond, 16, 256, 20000)
	for _, l := range settled {
		if l > 2*16 {
			t.Fatalf("limit %d after settling, want at most 32 for a server that throttles beyond 16", l)
		}
	}
}

func cms(n int) []*corev1.ConfigMap {
	out := make([]*corev1.ConfigMap, n)
	for i := range out {
		out[i] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("cm-%03d", i)}}
	}
	return out
}

// TestBulkAdaptsToModelServer runs Bulk (in a synctest bubble, so its clock
// and the model server's sleeps are fake time) against a write that takes
// 10ms with up to 8 in flight and proportionally longer beyond.
func TestBulkAdaptsToModelServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 8
		var inFlight, peak atomic.Int64
		write := func(ctx context.Context, cm *corev1.ConfigMap) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			lat := 10 * time.Millisecond
			if n > k {
				lat = lat * time.Duration(n) / k
			}
			time.Sleep(lat)
			return nil
		}
		res := Bulk(t.Context(), cms(2000), write, BulkOptions{MaxConcurrency: 64})
		if res.Succeeded != 2000 || res.Failed != 0 || res.NotAttempted != 0 || res.Err() != nil {
			t.Fatalf("result %+v, err %v", res, res.Err())
		}
		if p := int(peak.Load()); p > 64 || p > res.PeakConcurrency {
			t.Fatalf("%d writes were in flight at once; the peak limit was %d (max 64)", p, res.PeakConcurrency)
		}
		if res.Concurrency < k || res.Concurrency > 3*k {
			t.Fatalf("settled at %d, want within [%d, %d]", res.Concurrency, k, 3*k)
		}
		t.Logf("settled at %d, peak %d", res.Concurrency, res.PeakConcurrency)
	})
}

func TestBulkCollectsErrorsAndGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gr := schema.GroupResource{Resource: "configmaps"}
		var calls atomic.Int64
		write := func(ctx context.Context, cm *corev1.ConfigMap) error {
			calls.Add(1)
			time.Sleep(time.Millisecond)
			var i int
			fmt.Sscanf(cm.Name, "cm-%d", &i)
			switch {
			case i%10 == 3:
				return apierrors.NewAlreadyExists(gr, cm.Name)
			case i%50 == 7:
				return apierrors.NewTooManyRequests("slow down", 1)
			}
			return nil
		}
		res := Bulk(t.Context(), cms(100), write, BulkOptions{MaxErrors: 3})
		if calls.Load() != 100 {
			t.Fatalf("write called %d times, want 100 (failures must not stop the rest)", calls.Load())
		}
		if res.Succeeded != 88 || res.Failed != 12 || res.Throttled != 2 || res.NotAttempted != 0 {
			t.Fatalf("result %+v, want 88 succeeded, 12 failed (2 throttled)", res)
		}
		if len(res.Errors) != 3 {
			t.Fatalf("kept %d errors, want 3", len(res.Errors))
		}
		for _, err := range res.Errors {
			if !strings.Contains(err.Error(), "ns/cm-") {
				t.Errorf("error %q does not name its object", err)
			}
		}
		err := res.Err()
		if err == nil || !strings.Contains(err.Error(), "12 of 100 failed") || !apierrors.IsAlreadyExists(err) && !apierrors.IsTooManyRequests(err) {
			t.Fatalf("Err() = %v", err)
		}
	})
}

func TestBulkStopsWhenContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var mu sync.Mutex
		var running, calls int
		write := func(ctx context.Context, cm *corev1.ConfigMap) error {
			mu.Lock()
			running++
			calls++
			if calls == 10 {
				cancel()
			}
			mu.Unlock()
			defer func() { mu.Lock(); running--; mu.Unlock() }()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
				return nil
			}
		}
		res := Bulk(ctx, cms(1000), write, BulkOptions{InitialConcurrency: 64})
		mu.Lock()
		defer mu.Unlock()
		if running != 0 {
			t.Fatalf("%d writes still running after Bulk returned", running)
		}
		if res.NotAttempted == 0 || res.Succeeded+res.Failed+res.NotAttempted != 1000 || res.Succeeded+res.Failed != calls {
			t.Fatalf("result %+v after %d calls", res, calls)
		}
		if !errors.Is(res.Err(), context.Canceled) {
			t.Fatalf("Err() = %v, want one wrapping context.Canceled", res.Err())
		}
	})
}

func TestBulkEmpty(t *testing.T) {
	res := Bulk(t.Context(), nil, func(context.Context, *corev1.ConfigMap) error { return nil }, BulkOptions{})
	if res.Err() != nil || res.Succeeded != 0 || res.Concurrency != 4 {
		t.Fatalf("result %+v", res)
	}
}
