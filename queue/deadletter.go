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

// deadLetter is a DeadLetter with the order in which it entered the set.
type deadLetter[K comparable] struct {
	DeadLetter[K]
	seq uint64
}

// putDeadLocked adds d to the dead-letter set.
func (q *Queue[K]) putDeadLocked(d DeadLetter[K]) {
	if q.dead == nil {
		q.dead = make(map[K]*deadLetter[K])
	}
	q.dead[d.Key] = &deadLetter[K]{DeadLetter: d, seq: q.deadSeq}
	q.deadSeq++
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
	q.putDeadLocked(DeadLetter[K]{Key: key, Attempts: f.attempts, LastError: err, FirstFailure: f.first, LastFailure: now})
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
	q.deadChangedLocked()
	q.checkDrainedLocked()
	return true
}

// deadChangedLocked updates the dead-letter gauge and signals
// DeadLetterChanges without blocking.
func (q *Queue[K]) deadChangedLocked() {
	if q.m != nil {
		q.m.dead.Set(float64(len(q.dead)))
	}
	select {
	case q.deadChanged <- struct{}{}:
	default: // a signal is pending already; the reader will see this change too
	}
}

// DeadLetterChanges returns a channel that receives a value after the
// dead-letter set changes: a key dead-lettered (Fail, AddRateLimited),
// replayed (Replay, ReplayAll) or restored (Restore). It has a buffer of
// one and the queue never blocks on it, so several changes may arrive as
// one signal: a reader re-reads DeadLetters after each receive, and sees
// every change made before the signal it received. There is one channel per
// queue (every call returns it), meant for one reader. DroppedAdds counts
// are not changes. The channel is never closed.
func (q *Queue[K]) DeadLetterChanges() <-chan struct{} { return q.deadChanged }

// Restore puts d.Key into the dead-letter set with d's record (attempts,
// last error, failure times, DroppedAdds), as if its retry budget had just
// run out: a dead letter reloaded from a persisted store after a restart or
// a hand-off. A key that is ready or waiting (for a delay or a backoff) is
// taken out of the ready and waiting sets, its failure count is reset, and
// the rate limiter forgets it. Restore reports false and changes nothing
// if the key is being processed (a worker holds it: it is not for the
// store to decide its fate; ask again after Done), is dead-lettered already
// (the existing record is kept), or the queue is shut down.
//
// Restore works with or without a retry budget (Options.MaxFailures): a
// restored key stays dead until Replay either way.
func (q *Queue[K]) Restore(d DeadLetter[K]) bool {
	q.mu.Lock()
	if q.shuttingDown {
		q.mu.Unlock()
		return false
	}
	if _, ok := q.dead[d.Key]; ok {
		q.mu.Unlock()
		return false
	}
	if i, ok := q.index[d.Key]; ok {
		e := &q.entries[i]
		if e.procIdx >= 0 {
			q.mu.Unlock()
			return false
		}
		if e.bucket != noBucket {
			q.removeReady(i)
			if q.m != nil {
				q.m.depthChange(e.readyPrio, -1)
			}
		}
		if e.waitIdx >= 0 {
			q.waitRemove(int(e.waitIdx))
		}
		e.backoff = false
		q.release(i)
	}
	delete(q.fails, d.Key)
	q.putDeadLocked(d)
	q.deadChangedLocked()
	q.mu.Unlock()
	q.limiter.Forget(d.Key)
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

// DeadLetters returns the dead-lettered keys, oldest last failure first
// (ties in the order they became dead letters).
func (q *Queue[K]) DeadLetters() []DeadLetter[K] {
	q.mu.Lock()
	all := q.deadInOrderLocked()
	q.mu.Unlock()
	slices.SortStableFunc(all, func(a, b *deadLetter[K]) int {
		return cmp.Compare(a.LastFailure.UnixNano(), b.LastFailure.UnixNano())
	})
	out := make([]DeadLetter[K], len(all))
	for i, d := range all {
		out[i] = d.DeadLetter
	}
	return out
}

// deadInOrderLocked returns copies of the dead letters in the order they
// became dead letters.
func (q *Queue[K]) deadInOrderLocked() []*deadLetter[K] {
	out := make([]*deadLetter[K], 0, len(q.dead))
	for _, d := range q.dead {
		c := *d
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *deadLetter[K]) int { return cmp.Compare(a.seq, b.seq) })
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
	q.deadChangedLocked()
	q.addLocked(key, 0, 0, false, false, 0)
	return true
}

// Discard takes key out of the dead-letter set without adding it again:
// for a replica that no longer owns key, whose persisted dead letter moves
// to the new owner (see package deadletter). The failure record is
// forgotten too. It reports false, doing nothing, if key is not
// dead-lettered or the queue is shut down.
func (q *Queue[K]) Discard(key K) bool {
	q.mu.Lock()
	if _, ok := q.dead[key]; !ok || q.shuttingDown {
		q.mu.Unlock()
		return false
	}
	delete(q.dead, key)
	delete(q.fails, key)
	q.deadChangedLocked()
	q.mu.Unlock()
	q.limiter.Forget(key)
	return true
}

// ReplayAll replays every dead-lettered key, in the order they became dead
// letters, and returns how many it replayed.
func (q *Queue[K]) ReplayAll() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return 0
	}
	all := q.deadInOrderLocked()
	clear(q.dead)
	if len(all) > 0 {
		q.deadChangedLocked()
	}
	for _, d := range all {
		q.addLocked(d.Key, 0, 0, false, false, 0)
	}
	return len(all)
}
