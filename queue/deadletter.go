package queue

import (
	"cmp"
	"slices"
	"time"
)

// DeadLetter describes a key that used up its retry budget
// (Options.MaxFailures). DeadLetters returns copies; the caller owns them.
type DeadLetter[K comparable] struct {
	Key          K
	Attempts     int       // failures reported, the last one included
	LastError    error     // error of the last Fail (nil for AddRateLimited)
	FirstFailure time.Time // time of the first counted failure
	LastFailure  time.Time // time of the failure that dead-lettered it
	DroppedAdds  int       // adds ignored since it was dead-lettered
}

// failure is the retry-budget record of a failing key.
type failure struct {
	attempts    int
	first, last time.Time
	err         error
}

// AddRateLimited reports a failure of key without an error. It is Fail(key, nil).
func (q *Queue[K]) AddRateLimited(key K) { q.Fail(key, nil) }

// Fail reports that processing key failed with err and schedules a retry.
//
// The retry waits for the rate limiter's When(key, now) delay (a backoff). The
// key keeps the priority it was handed out with (or had while queued). Adds of
// the key that arrived while it was being processed are folded into this
// retry, and later plain adds do not end the backoff early (see
// AddOptions.BypassBackoff). If the key is already ready, it stays ready.
//
// With a retry budget (Options.MaxFailures > 0), the failure and err are
// recorded first; the MaxFailures-th one moves key to the dead-letter set
// instead: it is removed from the ready and waiting sets, will not be
// requeued by Done, and the limiter forgets it. After shutdown, Fail does
// nothing.
func (q *Queue[K]) Fail(key K, err error) {
	now := q.clock.Now()
	q.mu.Lock()
	if q.shuttingDown {
		q.mu.Unlock()
		return
	}
	if len(q.dead) > 0 {
		if d, ok := q.dead[key]; ok {
			d.DroppedAdds++
			q.mu.Unlock()
			return
		}
	}
	if q.maxFailures > 0 && q.recordFailureLocked(key, now, err) {
		q.mu.Unlock()
		q.limiter.Forget(key)
		return
	}
	prio := 0
	if i, ok := q.index[key]; ok {
		e := &q.entries[i]
		switch {
		case e.procIdx >= 0 || e.bucket != noBucket:
			prio = e.readyPrio
		case e.waitIdx >= 0:
			prio = e.waitPrio
		}
	}
	q.mu.Unlock()

	d := q.limiter.When(key, now)

	q.mu.Lock()
	q.addLocked(key, prio, d, false, true, int64(now.Sub(q.epoch)))
	q.mu.Unlock()
}

// recordFailureLocked counts a failure and dead-letters key when the budget is
// used up, reporting whether it did.
func (q *Queue[K]) recordFailureLocked(key K, now time.Time, err error) bool {
	if q.fails == nil {
		q.fails = make(map[K]*failure)
	}
	f := q.fails[key]
	if f == nil {
		f = &failure{first: now}
		q.fails[key] = f
	}
	f.attempts++
	f.last, f.err = now, err
	if f.attempts < q.maxFailures {
		return false
	}
	delete(q.fails, key)
	if q.dead == nil {
		q.dead = make(map[K]*DeadLetter[K])
	}
	q.dead[key] = &DeadLetter[K]{Key: key, Attempts: f.attempts, LastError: err, FirstFailure: f.first, LastFailure: now}
	if i, ok := q.index[key]; ok {
		e := &q.entries[i]
		e.dirty, e.backoff = false, false
		if e.bucket != noBucket {
			q.removeReady(i)
			if q.m != nil {
				q.m.depthChange(e.readyPrio, -1)
			}
		}
		if e.waitIdx >= 0 {
			q.waitRemove(int(e.waitIdx))
		}
		q.release(i)
	}
	if q.m != nil {
		q.m.dead.Set(float64(len(q.dead)))
	}
	q.checkDrainedLocked()
	return true
}

// Forget tells the queue that key succeeded: the rate limiter forgets it and,
// with a retry budget, its failure count starts again from zero. It does not
// cancel a pending retry.
func (q *Queue[K]) Forget(key K) {
	q.limiter.Forget(key)
	if q.maxFailures > 0 {
		q.mu.Lock()
		delete(q.fails, key)
		q.mu.Unlock()
	}
}

// Retries returns the rate limiter's failure count for key.
func (q *Queue[K]) Retries(key K) int { return q.limiter.Retries(key) }

// DeadLetters returns the dead-lettered keys, oldest last failure first.
func (q *Queue[K]) DeadLetters() []DeadLetter[K] {
	q.mu.Lock()
	out := make([]DeadLetter[K], 0, len(q.dead))
	for _, d := range q.dead {
		out = append(out, *d)
	}
	q.mu.Unlock()
	slices.SortStableFunc(out, func(a, b DeadLetter[K]) int { return cmp.Compare(a.LastFailure.UnixNano(), b.LastFailure.UnixNano()) })
	return out
}

// Replay takes key out of the dead-letter set and adds it (priority 0) with a
// fresh budget. It reports false, doing nothing, if key is not dead-lettered
// or the queue is shut down.
func (q *Queue[K]) Replay(key K) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.dead[key]; !ok || q.shuttingDown {
		return false
	}
	delete(q.dead, key)
	if q.m != nil {
		q.m.dead.Set(float64(len(q.dead)))
	}
	q.addLocked(key, 0, 0, false, false, 0)
	return true
}

// ReplayAll replays every dead-lettered key and returns how many it replayed.
func (q *Queue[K]) ReplayAll() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return 0
	}
	n := len(q.dead)
	keys := make([]K, 0, n)
	for k := range q.dead {
		keys = append(keys, k)
	}
	clear(q.dead)
	if q.m != nil {
		q.m.dead.Set(0)
	}
	for _, k := range keys {
		q.addLocked(k, 0, 0, false, false, 0)
	}
	return n
}
