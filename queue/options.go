package queue

import "time"

// DefaultAgingInterval is the Options.AgingInterval used when it is zero.
const DefaultAgingInterval = 100 * time.Millisecond

// Options configure a Queue. The zero value is valid; every field documents
// its default.
type Options[K comparable] struct {
	// Name labels the queue's metrics (label "name"). Default "".
	Name string

	// Clock is the time source. Default RealClock{}.
	Clock Clock

	// RateLimiter decides the delays of AddRateLimited and Fail.
	// Default (nil): DefaultRateLimiter(), a FailureAware exponential backoff
	// from 5 ms to 1000 s per key.
	RateLimiter RateLimiter[K]

	// AgingInterval is how much waiting time is worth one priority level.
	// A ready key is ordered by readyTime − priority·AgingInterval (earliest
	// first), which is the same as saying its effective priority grows by one
	// every AgingInterval it waits. Consequence (the starvation bound): a
	// key with priority p that became ready at t is handed out before any key
	// that becomes ready after t + (q−p)·AgingInterval, where q is the highest
	// priority used. Default (0): DefaultAgingInterval (100 ms), so a key at
	// priority −100 (controller-runtime's LowPriority) is overtaken only by
	// priority-0 keys that arrive within 10 s after it. Negative: no aging,
	// strict priorities (higher first, FIFO within a priority), which can
	// starve low priorities under sustained load.
	AgingInterval time.Duration

	// MaxFailures is the retry budget: the MaxFailures-th failure reported for
	// a key (AddRateLimited or Fail, counted since its last Forget or Replay)
	// moves it to the dead-letter set instead of scheduling a retry.
	// Default (0): no budget; failures are not recorded and keys retry forever.
	MaxFailures int

	// Metrics, if non-nil, receives the queue's metrics under Name.
	// Default nil: no metrics, and no cost beyond a nil check.
	Metrics *Metrics
}

// AddOptions modify one Add. The zero value is a plain Add.
type AddOptions struct {
	// Priority orders ready keys: higher first (subject to aging).
	// A key added again while waiting keeps the higher of its priorities.
	Priority int

	// After delays the key. <= 0 means ready now. If the key is already
	// waiting, the earliest deadline wins.
	After time.Duration

	// BypassBackoff makes the add take effect even if the key is waiting out
	// a backoff from AddRateLimited or Fail: the backoff is cancelled and the
	// key is scheduled as if the backoff had not been there. Without it, an
	// add of a key in backoff only raises its priority.
	BypassBackoff bool
}
