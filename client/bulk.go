package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiffkit/skiff/queue"
)

// BulkOptions configure Bulk. The zero value is valid; every field states
// its default.
type BulkOptions struct {
	// MaxConcurrency caps the writes in flight. Default 64.
	MaxConcurrency int
	// InitialConcurrency is the writes in flight at the start, before any
	// latency is known. Default 4 (or MaxConcurrency if smaller).
	InitialConcurrency int
	// MaxErrors is how many errors BulkResult.Errors keeps (the first ones
	// to complete). Default 10.
	MaxErrors int
	// Clock times the writes. Only Now is used. Default queue.RealClock{}.
	Clock queue.Clock
}

// BulkResult is what Bulk did. Succeeded+Failed+NotAttempted is the number
// of objects given.
type BulkResult struct {
	Succeeded int
	Failed    int
	// NotAttempted counts objects never written because ctx ended first.
	NotAttempted int
	// Errors holds the first MaxErrors failures, in completion order; each
	// names its object ("namespace/name") and wraps the write's error.
	Errors []error
	// Throttled counts writes that failed with 429 Too Many Requests (after
	// the transport's own retries).
	Throttled int
	// Concurrency is the concurrency limit at the end; PeakConcurrency the
	// highest it reached.
	Concurrency, PeakConcurrency int
	// CtxErr is ctx's error if ctx ended before every object was written.
	CtxErr error
}

// Err is nil if every object was written; otherwise an error saying how
// many failed, joined with the kept errors.
func (r BulkResult) Err() error {
	if r.Failed == 0 && r.NotAttempted == 0 {
		return nil
	}
	total := r.Succeeded + r.Failed + r.NotAttempted
	head := fmt.Errorf("bulk write: %d of %d failed, %d not attempted", r.Failed, total, r.NotAttempted)
	errs := append([]error{head}, r.Errors...)
	if r.CtxErr != nil {
		errs = append(errs, r.CtxErr)
	}
	return errors.Join(errs...)
}

// Bulk calls write once for every object in objs, concurrently, at the
// highest rate the server sustains without queueing, and returns what
// happened. It never stops early for a failed write: every object is tried
// unless ctx ends (then the rest are NotAttempted). It returns only after
// every write it started has returned.
//
// The number of writes in flight adapts (see governor): it starts at
// InitialConcurrency, grows while latency stays near the lowest latency seen
// and throughput does not fall, and shrinks by a quarter when latency rises
// above twice that minimum (the server is queueing) and by half when a
// write fails with 429. The client's transport (see Tune) separately limits
// and retries 429s for every request; Bulk adds the latency side and spreads
// the work.
//
// write may be called from many goroutines at once; objs is only read.
func Bulk[T Object](ctx context.Context, objs []T, write func(context.Context, T) error, o BulkOptions) BulkResult {
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 64
	}
	if o.InitialConcurrency <= 0 {
		o.InitialConcurrency = 4
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 10
	}
	if o.Clock == nil {
		o.Clock = queue.RealClock{}
	}

	var (
		mu       sync.Mutex
		gov      = newGovernor(o.InitialConcurrency, o.MaxConcurrency, o.Clock.Now())
		inFlight int
		res      = BulkResult{PeakConcurrency: gov.limit}
		wake     = make(chan struct{}, 1) // a write finished
		wg       sync.WaitGroup
	)
	finish := func(obj T, started time.Time, err error) {
		now := o.Clock.Now()
		throttled := err != nil && apierrors.IsTooManyRequests(err)
		mu.Lock()
		defer mu.Unlock()
		inFlight--
		limit := gov.done(started, now, now.Sub(started), throttled)
		res.PeakConcurrency = max(res.PeakConcurrency, limit)
		switch {
		case err == nil:
			res.Succeeded++
		default:
			res.Failed++
			if throttled {
				res.Throttled++
			}
			if len(res.Errors) < o.MaxErrors {
				res.Errors = append(res.Errors, fmt.Errorf("write %s: %w", objectKey(obj), err))
			}
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}

	next := 0
dispatch:
	for next < len(objs) {
		mu.Lock()
		if inFlight < gov.limit {
			inFlight++
			mu.Unlock()
			obj := objs[next]
			next++
			wg.Go(func() {
				started := o.Clock.Now()
				err := write(ctx, obj)
				finish(obj, started, err)
			})
			continue
		}
		mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			break dispatch
		}
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.NotAttempted = len(objs) - next
	if res.NotAttempted > 0 {
		res.CtxErr = ctx.Err()
	}
	res.Concurrency = gov.limit
	return res
}

func objectKey(obj Object) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}

// governor decides how many bulk writes may be in flight. It does no I/O,
// starts nothing and reads no clock: every input carries its time. Not safe
// for concurrent use.
//
// It judges the limit a window at a time: a window is the completions of
// writes started after the last decision, at least minWindow and at least
// the limit of them (about one round of the pipeline), so each decision
// sees only writes sent under the current limit. At the end of a window,
// with p50 its median latency and base the lowest p50 of any window so far
// (the server's latency when it is not queueing):
//
//   - p50 > 2×base: the server is queueing; limit × 3/4.
//   - p50 ≤ 1.5×base and throughput (completions per second over the
//     window) not below 90% of the previous window's: limit × 1.5.
//   - otherwise hold.
//
// Base is the lowest latency seen, so it is only the unloaded latency if
// some window ran without queueing: a server that queues already at
// InitialConcurrency makes base too high, and the limit settles higher than
// it would (up to about 4.5× the server's capacity instead of 3×, in the
// model of TestGovernorSettlesNearServerCapacity).
//
// A window judged at limit 1 sets base to its p50: with one write in flight
// nothing queues behind it, so if the server became slower for good the
// old base is stale (without this, the limit would stay at 1).
//
// A 429 on a write started after the last decision cuts the limit in half
// at once and starts a new window; 429s of writes sent before it report on
// the old limit and are ignored. The limit stays in [1, max].
type governor struct {
	limit, max  int
	windowStart time.Time       // the last decision
	window      []time.Duration // latencies of writes started since windowStart
	prevRate    float64         // completions/s of the previous window; 0: none yet
	base        time.Duration   // the lowest window p50; 0: none yet
}

// minWindow is the fewest completions a window judges by: on a busy
// machine single latencies vary several-fold, so a median of fewer is noise.
const minWindow = 16

func newGovernor(initial, maxLimit int, now time.Time) governor {
	maxLimit = max(maxLimit, 1)
	return governor{limit: min(max(initial, 1), maxLimit), max: maxLimit, windowStart: now}
}

// done records a write started at started that completed at now after
// latency; throttled says it failed with 429. It returns the new limit.
func (g *governor) done(started, now time.Time, latency time.Duration, throttled bool) int {
	if started.Before(g.windowStart) {
		return g.limit // sent under an older limit
	}
	if throttled {
		g.limit = max(1, g.limit/2)
		g.reset(now, 0)
		return g.limit
	}
	g.window = append(g.window, latency)
	if len(g.window) < max(minWindow, g.limit) {
		return g.limit
	}
	p50 := median(g.window)
	if g.base == 0 || p50 < g.base || g.limit == 1 {
		g.base = p50
	}
	base := g.base
	rate := 0.0
	if dt := now.Sub(g.windowStart); dt > 0 {
		rate = float64(len(g.window)) / dt.Seconds()
	}
	switch {
	case p50 > 2*base:
		g.limit = max(1, g.limit*3/4)
	case 2*p50 <= 3*base && (g.prevRate == 0 || rate == 0 || rate >= 0.9*g.prevRate):
		g.limit = min(g.max, g.limit+max(1, g.limit/2))
	}
	g.reset(now, rate)
	return g.limit
}

func (g *governor) reset(now time.Time, rate float64) {
	g.windowStart = now
	g.window = g.window[:0]
	g.prevRate = rate
}

// median returns the middle of ds (the lower middle for an even count); it
// reorders ds.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[(len(ds)-1)/2]
}
