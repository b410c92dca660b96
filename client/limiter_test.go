package client

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestAIMDRules(t *testing.T) {
	type step struct {
		now      float64 // seconds after t0
		throttle bool
		sentAt   float64
		inFlight int
		wantCut  bool
		want     float64 // limit after the step
		allowed  int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"starts at max, grows no further", []step{
			{now: 0, want: 100, allowed: 100},
			{now: 10, want: 100, allowed: 100},
		}},
		{"429 cuts to half of the in-flight count when below the limit", []step{
			{now: 1, throttle: true, sentAt: 0.5, inFlight: 40, wantCut: true, want: 20, allowed: 20},
		}},
		{"429 cuts to half of the limit when more are in flight", []step{
			{now: 1, throttle: true, sentAt: 0.5, inFlight: 40, wantCut: true, want: 20},
			{now: 1, throttle: true, sentAt: 1, inFlight: 30, wantCut: true, want: 10, allowed: 10},
		}},
		{"a wave of 429s sent before the cut counts once", []step{
			{now: 1, throttle: true, sentAt: 0.5, inFlight: 100, wantCut: true, want: 50},
			{now: 1, throttle: true, sentAt: 0.5, inFlight: 99, want: 50},
			{now: 1.001, throttle: true, sentAt: 0.9, inFlight: 98, want: 50 + 0.008},
		}},
		{"never below 1", []step{
			{now: 1, throttle: true, sentAt: 1, inFlight: 1, wantCut: true, want: 1, allowed: 1},
			{now: 1, throttle: true, sentAt: 1, inFlight: 1, wantCut: true, want: 1, allowed: 1},
			{now: 1, throttle: true, sentAt: 1, inFlight: 0, wantCut: true, want: 1, allowed: 1},
		}},
		{"grows 8 per second after a cut, back to max", []step{
			{now: 1, throttle: true, sentAt: 1, inFlight: 2, wantCut: true, want: 1, allowed: 1},
			{now: 1.1, want: 1.8, allowed: 1},
			{now: 1.125, want: 2, allowed: 2},
			{now: 3, want: 17, allowed: 17},
			{now: 100, want: 100, allowed: 100},
		}},
		{"a clock going backwards adds nothing", []step{
			{now: 5, throttle: true, sentAt: 5, inFlight: 10, wantCut: true, want: 5},
			{now: 4, want: 5, allowed: 5},
			{now: 5.5, want: 9, allowed: 9},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAIMD(100, 8, 0.5, t0)
			for i, s := range tc.steps {
				if s.throttle {
					if cut := a.throttled(at(s.sentAt), at(s.now), s.inFlight); cut != s.wantCut {
						t.Fatalf("step %d: cut = %v, want %v", i, cut, s.wantCut)
					}
				}
				got := a.allowed(at(s.now))
				if math.Abs(a.limit-s.want) > 1e-6 {
					t.Fatalf("step %d: limit = %v, want %v", i, a.limit, s.want)
				}
				if s.allowed != 0 && got != s.allowed {
					t.Fatalf("step %d: allowed = %d, want %d", i, got, s.allowed)
				}
			}
		})
	}
}

// TestAIMDInvariants drives the core with random events and checks what
// must always hold: 1 <= limit <= max; growth never exceeds increase×dt; a
// cut never leaves more than half of min(limit, in flight) (or 1); a 429
// for a request sent before the last cut changes nothing.
func TestAIMDInvariants(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for run := range 200 {
		maxL := float64(1 + r.IntN(500))
		inc := r.Float64() * 20
		a := newAIMD(maxL, inc, 0.5, t0)
		now := t0
		var sends []time.Time
		for range 300 {
			now = now.Add(time.Duration(r.IntN(200)) * time.Millisecond)
			before := a.limit
			beforeCut := a.lastDecrease
			if r.IntN(3) == 0 && len(sends) > 0 {
				sentAt := sends[r.IntN(len(sends))]
				inFlight := r.IntN(600)
				a.grow(now)
				grown := a.limit
				cut := a.throttled(sentAt, now, inFlight)
				stale := !beforeCut.IsZero() && sentAt.Before(beforeCut)
				if stale && (cut || a.limit != grown) {
					t.Fatalf("run %d: a stale 429 changed the limit %v -> %v", run, grown, a.limit)
				}
				if cut && a.limit > math.Max(1, math.Min(grown, float64(max(inFlight, 1)))*0.5)+1e-9 {
					t.Fatalf("run %d: cut from %v with %d in flight left %v", run, grown, inFlight, a.limit)
				}
			} else {
				sends = append(sends, now)
				dt := now.Sub(a.updated).Seconds()
				a.allowed(now)
				if a.limit > before+inc*math.Max(dt, 0)+1e-9 {
					t.Fatalf("run %d: grew %v -> %v in %vs at %v/s", run, before, a.limit, dt, inc)
				}
			}
			if a.limit < 1 || a.limit > maxL {
				t.Fatalf("run %d: limit %v outside [1, %v]", run, a.limit, maxL)
			}
			if n := a.allowed(now); n < 1 || n > int(maxL) {
				t.Fatalf("run %d: allowed %d outside [1, %v]", run, n, maxL)
			}
		}
	}
}

func TestAdaptiveLimiterGatesFIFOAndCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gauge float64
		l := newAdaptiveLimiter(newAIMD(2, 0, 0.5, time.Now()), time.Now, func(v float64) { gauge = v })
		ctx := context.Background()
		s1, _ := l.Acquire(ctx)
		s2, _ := l.Acquire(ctx)

		order := make(chan int, 3)
		cctx, cancel := context.WithCancel(ctx)
		errs := make(chan error, 1)
		go func() { _, err := l.Acquire(cctx); errs <- err }() // waiter A, cancelled
		synctest.Wait()
		for i := 1; i <= 2; i++ {
			go func() {
				if _, err := l.Acquire(ctx); err == nil {
					order <- i
				}
			}()
			synctest.Wait()
		}
		cancel()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Acquire = %v, want context.Canceled", err)
		}
		select {
		case i := <-order:
			t.Fatalf("waiter %d got a slot while 2 of 2 are in flight", i)
		default:
		}
		l.Release(s1, false)
		synctest.Wait()
		if got := <-order; got != 1 {
			t.Fatalf("first admitted waiter = %d, want 1 (FIFO)", got)
		}
		// A 429 cuts the limit to 1: releasing s2 admits no one (2 in flight
		// before, the throttled one and waiter 1; after: waiter 1 only).
		l.Release(s2, true)
		synctest.Wait()
		select {
		case i := <-order:
			t.Fatalf("waiter %d admitted over a limit of 1", i)
		default:
		}
		if gauge != 1 || l.Limit() != 1 {
			t.Fatalf("limit after 429 = %v (gauge %v), want 1", l.Limit(), gauge)
		}
		l.Release(time.Now(), false) // waiter 1's slot
		synctest.Wait()
		if got := <-order; got != 2 {
			t.Fatalf("second admitted waiter = %d, want 2", got)
		}
	})
}

// TestAdaptiveLimiterNeverExceedsLimit runs many goroutines through the
// limiter while 429s cut it: no more than the ceiling are ever in flight,
// some run concurrently, and every slot is returned.
func TestAdaptiveLimiterNeverExceedsLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(newAIMD(16, 4, 0.5, time.Now()), time.Now, nil)
		var mu sync.Mutex
		inFlight, peak := 0, 0
		var wg sync.WaitGroup
		for g := range 50 {
			wg.Go(func() {
				for i := range 20 {
					sent, err := l.Acquire(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					inFlight++
					peak = max(peak, inFlight)
					mu.Unlock()
					time.Sleep(time.Duration(1+(g+i)%7) * time.Millisecond)
					mu.Lock()
					inFlight--
					mu.Unlock()
					l.Release(sent, (g*20+i)%13 == 0)
				}
			})
		}
		wg.Wait()
		if peak > 16 {
			t.Fatalf("peak in flight %d over the ceiling 16", peak)
		}
		if peak < 2 {
			t.Fatalf("peak in flight %d: the limiter admitted nothing concurrently", peak)
		}
		if l.inFlight != 0 || len(l.waiters) != 0 {
			t.Fatalf("after all released: %d in flight, %d waiting", l.inFlight, len(l.waiters))
		}
		if lim := l.Limit(); lim < 1 || lim > 16 {
			t.Fatalf("limit %v outside [1,16]", lim)
		}
	})
}
