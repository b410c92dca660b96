package client

import (
	"context"
	"math"
	"sync"
	"time"
)

// aimd is the decision core of the adaptive concurrency limiter: how many
// requests may be in flight at once. It does no I/O, starts nothing and
// reads no clock: every input carries its time. Not safe for concurrent
// use; adaptiveLimiter holds a lock around it.
//
// The rules, in the spirit of TCP's congestion window:
//
//   - Additive increase: while the server does not throttle, the limit
//     grows by increase per second of elapsed time, up to max. Time, not
//     traffic, drives it, so a client that was throttled and then went
//     quiet is back at full speed a bounded time later.
//   - Multiplicative decrease: a 429 sets the limit to decrease × the
//     smaller of the limit and the number of requests that were in flight
//     (counting the throttled one): the in-flight count is what the server
//     actually refused, which may be far below a limit that was never
//     reached.
//   - Once per round trip: a 429 for a request sent before the last
//     decrease is ignored — it reports on the old limit, already cut. So a
//     wave of 100 rejections halves the limit once, not 100 times.
//   - Never below 1: the client always makes progress.
type aimd struct {
	limit        float64
	max          float64
	increase     float64 // per second
	decrease     float64 // factor in (0,1)
	updated      time.Time
	lastDecrease time.Time
}

func newAIMD(max, increasePerSecond, decrease float64, now time.Time) aimd {
	return aimd{limit: max, max: max, increase: increasePerSecond, decrease: decrease, updated: now}
}

// grow applies the additive increase for the time since the last update.
// Time never runs backwards here: an earlier now is taken as no time.
func (a *aimd) grow(now time.Time) {
	if dt := now.Sub(a.updated); dt > 0 {
		a.limit = math.Min(a.max, a.limit+a.increase*dt.Seconds())
		a.updated = now
	}
}

// allowed is the number of requests that may be in flight at now.
func (a *aimd) allowed(now time.Time) int {
	a.grow(now)
	return int(math.Max(1, math.Floor(a.limit)))
}

// throttled records a 429 at now for a request sent at sentAt while
// inFlight requests (it included) were outstanding. It reports whether the
// limit was cut.
func (a *aimd) throttled(sentAt, now time.Time, inFlight int) bool {
	a.grow(now)
	if !a.lastDecrease.IsZero() && sentAt.Before(a.lastDecrease) {
		return false
	}
	base := math.Min(a.limit, float64(max(inFlight, 1)))
	a.limit = math.Max(1, base*a.decrease)
	a.lastDecrease = now
	return true
}

// adaptiveLimiter gates requests by the aimd limit: Acquire waits, first
// come first served, until fewer than the limit are in flight. It is safe
// for concurrent use and starts no goroutine.
type adaptiveLimiter struct {
	now   func() time.Time
	gauge func(float64) // observes the limit after every change; may be nil

	mu       sync.Mutex
	core     aimd
	inFlight int
	waiters  []*waiter // FIFO
}

type waiter struct {
	ready   chan struct{} // closed when the slot is granted
	granted bool          // guarded by adaptiveLimiter.mu
}

func newAdaptiveLimiter(core aimd, now func() time.Time, gauge func(float64)) *adaptiveLimiter {
	l := &adaptiveLimiter{now: now, gauge: gauge, core: core}
	l.observe()
	return l
}

// Acquire waits for a slot, or until ctx is done (then it returns ctx's
// error and holds nothing). On success it returns the time the slot was
// granted; pass it to Release.
func (l *adaptiveLimiter) Acquire(ctx context.Context) (time.Time, error) {
	l.mu.Lock()
	now := l.now()
	if len(l.waiters) == 0 && l.inFlight < l.core.allowed(now) {
		l.inFlight++
		l.mu.Unlock()
		return now, nil
	}
	w := &waiter{ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return l.now(), nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted {
			l.inFlight--
			l.admitLocked(l.now())
		} else {
			l.removeLocked(w)
		}
		l.mu.Unlock()
		return time.Time{}, ctx.Err()
	}
}

// Release returns the slot granted at sentAt; throttled says the server
// answered 429.
func (l *adaptiveLimiter) Release(sentAt time.Time, throttled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if throttled {
		l.core.throttled(sentAt, now, l.inFlight)
	}
	l.inFlight--
	l.admitLocked(now)
	l.observe()
}

// Limit is the current limit (for tests and `skiff doctor`).
func (l *adaptiveLimiter) Limit() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.core.grow(l.now())
	return l.core.limit
}

func (l *adaptiveLimiter) admitLocked(now time.Time) {
	allowed := l.core.allowed(now)
	for len(l.waiters) > 0 && l.inFlight < allowed {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		w.granted = true
		l.inFlight++
		close(w.ready)
	}
}

func (l *adaptiveLimiter) removeLocked(w *waiter) {
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			return
		}
	}
}

func (l *adaptiveLimiter) observe() {
	if l.gauge != nil {
		l.gauge(l.core.limit)
	}
}
