package queue

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter decides how long a key waits before its next attempt after a
// failure. Time is passed in, so limiters are deterministic under a fake clock.
// Implementations must be safe for concurrent use; the queue calls them
// without holding its own lock.
type RateLimiter[K comparable] interface {
	// When records a failure of key at now and returns how long to wait
	// before retrying it.
	When(key K, now time.Time) time.Duration
	// Forget clears what the limiter remembers about key (call it on success).
	Forget(key K)
	// Retries returns how many failures of key the limiter is counting.
	Retries(key K) int
}

// Default bounds of NewExponential when given zero values.
const (
	DefaultBaseDelay = 5 * time.Millisecond
	DefaultMaxDelay  = 1000 * time.Second
)

// Exponential is a per-key exponential backoff: the n-th failure (counting
// from 1) of a key waits base·2^(n-1), capped at max. Create it with
// NewExponential.
type Exponential[K comparable] struct {
	base, max time.Duration

	mu       sync.Mutex
	failures map[K]int
}

// NewExponential returns a per-key exponential limiter. base <= 0 means
// DefaultBaseDelay (5 ms) and max <= 0 means DefaultMaxDelay (1000 s).
func NewExponential[K comparable](base, max time.Duration) *Exponential[K] {
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if max <= 0 {
		max = DefaultMaxDelay
	}
	return &Exponential[K]{base: base, max: max, failures: make(map[K]int)}
}

// When counts a failure and returns base·2^(failures-1), capped at max.
func (e *Exponential[K]) When(key K, _ time.Time) time.Duration {
	e.mu.Lock()
	n := e.failures[key]
	e.failures[key] = n + 1
	e.mu.Unlock()
	return backoff(e.base, e.max, n)
}

// Forget resets key's failure count.
func (e *Exponential[K]) Forget(key K) {
	e.mu.Lock()
	delete(e.failures, key)
	e.mu.Unlock()
}

// Retries returns key's failure count.
func (e *Exponential[K]) Retries(key K) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failures[key]
}

// backoff returns base·2^exp capped at max without overflowing.
func backoff(base, max time.Duration, exp int) time.Duration {
	if exp >= 62 {
		return max
	}
	d := float64(base) * math.Exp2(float64(exp))
	if d >= float64(max) {
		return max
	}
	return time.Duration(d)
}

// TokenBucket limits the overall retry rate of all keys together with a
// golang.org/x/time/rate token bucket. It keeps no per-key state: Forget does
// nothing and Retries returns 0.
type TokenBucket[K comparable] struct {
	l *rate.Limiter
}

// NewTokenBucket returns a limiter allowing perSecond retries per second on
// average with bursts of burst. The bucket starts full.
func NewTokenBucket[K comparable](perSecond float64, burst int) *TokenBucket[K] {
	return &TokenBucket[K]{l: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// When reserves a token at now and returns how long until it is available.
func (t *TokenBucket[K]) When(_ K, now time.Time) time.Duration {
	return t.l.ReserveN(now, 1).DelayFrom(now)
}

// Forget does nothing.
func (t *TokenBucket[K]) Forget(K) {}

// Retries returns 0.
func (t *TokenBucket[K]) Retries(K) int { return 0 }

// maxOf waits for the longest of its limiters.
type maxOf[K comparable] []RateLimiter[K]

// MaxOf returns a limiter whose When is the longest When of limiters (each of
// them records the failure), whose Forget forgets in all of them and whose
// Retries is the largest Retries.
func MaxOf[K comparable](limiters ...RateLimiter[K]) RateLimiter[K] {
	return maxOf[K](append([]RateLimiter[K](nil), limiters...))
}

func (m maxOf[K]) When(key K, now time.Time) time.Duration {
	var d time.Duration
	for _, l := range m {
		d = max(d, l.When(key, now))
	}
	return d
}

func (m maxOf[K]) Forget(key K) {
	for _, l := range m {
		l.Forget(key)
	}
}

func (m maxOf[K]) Retries(key K) int {
	n := 0
	for _, l := range m {
		n = max(n, l.Retries(key))
	}
	return n
}

// FailureAware wraps a limiter so that a key's backoff grows only with failures
// that happen after the key has waited out its current backoff.
//
// Exact semantics, for a key k and a call When(k, now):
//   - If k has a backoff window open (now is before the deadline returned by
//     the previous counted failure), the failure is not counted: the inner
//     limiter is not asked, and the remaining time of the window is returned.
//     A key that ran early (because the caller bypassed the backoff) and
//     failed again thus keeps its original retry time instead of doubling it.
//   - Otherwise the failure is counted: the inner limiter's When is returned
//     and the window is set to now plus that delay.
//
// Forget closes the window and forgets k in the inner limiter. Retries returns
// the inner limiter's count, which only counted failures reach.
//
// Together with the queue's rule that a plain Add does not pull a key out of a
// backoff, this fixes kubernetes/kubernetes#132805: events unrelated to a
// failure no longer make a failing key run early and inflate its backoff.
type FailureAware[K comparable] struct {
	inner RateLimiter[K]

	mu    sync.Mutex
	until map[K]time.Time
}

// NewFailureAware wraps inner; a nil inner means NewExponential(0, 0).
func NewFailureAware[K comparable](inner RateLimiter[K]) *FailureAware[K] {
	if inner == nil {
		inner = NewExponential[K](0, 0)
	}
	return &FailureAware[K]{inner: inner, until: make(map[K]time.Time)}
}

// When returns the remaining window if one is open, else counts the failure.
func (f *FailureAware[K]) When(key K, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.until[key]; ok && now.Before(u) {
		return u.Sub(now)
	}
	d := f.inner.When(key, now)
	f.until[key] = now.Add(d)
	return d
}

// Forget closes key's window and forgets it in the inner limiter.
func (f *FailureAware[K]) Forget(key K) {
	f.mu.Lock()
	delete(f.until, key)
	f.mu.Unlock()
	f.inner.Forget(key)
}

// Retries returns the inner limiter's count of counted failures.
func (f *FailureAware[K]) Retries(key K) int { return f.inner.Retries(key) }

// DefaultRateLimiter is the limiter a Queue uses when Options.RateLimiter is
// nil: NewFailureAware(NewExponential(5ms, 1000s)). It has no overall token
// bucket, so a burst of failures is never throttled globally; add one with
// MaxOf if the API server needs protecting.
func DefaultRateLimiter[K comparable]() RateLimiter[K] {
	return NewFailureAware[K](NewExponential[K](0, 0))
}
