package queue

import (
	"context"
	"errors"
)

// ErrDrainStopped is returned by ShutDownWithDrain when ShutDown ended the
// drain before every key was done.
var ErrDrainStopped = errors.New("queue: drain stopped by ShutDown")

// Shutting down, exactly (the tests in shutdown_test.go follow this list):
//
//   - Both ShutDown and ShutDownWithDrain make later adds (Add*, Fail,
//     AddRateLimited, Replay) do nothing, and drop the keys waiting for a
//     deadline or a backoff. Done is always accepted.
//   - ShutDown also drops the ready keys and the pending requeues (keys added
//     again while being processed): every Get, blocked or later, returns
//     ErrShutDown at once.
//   - ShutDownWithDrain keeps them: Get hands out the ready keys, and a key
//     added again while being processed (before the drain began) becomes
//     ready when it is Done, and is handed out like the others. So Get keeps
//     blocking while such a key is still being processed, and returns
//     ErrShutDown only once nothing is ready and no Done can make anything
//     ready. Keys being processed without a pending requeue do not hold Get:
//     their Done adds nothing.
//   - ShutDownWithDrain returns nil once nothing is ready and nothing is being
//     processed: every key handed out was Done.
//   - ShutDown during a drain ends it: the ready keys and pending requeues are
//     dropped, blocked Gets return ErrShutDown, and every ShutDownWithDrain
//     waiting returns ErrDrainStopped at once, even if keys are still being
//     processed (their Done is still accepted).
//   - ShutDownWithDrain after ShutDown hands nothing out; it waits until the
//     keys being processed are Done (or ctx is done, or ShutDown is called
//     again).

// ShutDown stops the queue at once: later adds are ignored, keys not yet
// handed out are dropped, and every Get (blocked or future) returns
// ErrShutDown. Done is still accepted for keys being processed. It does not
// wait, and it is idempotent. It ends a drain in progress early: every
// ShutDownWithDrain waiting returns ErrDrainStopped.
func (q *Queue[K]) ShutDown() {
	q.mu.Lock()
	q.shutDownLocked(false)
	q.mu.Unlock()
}

// ShutDownWithDrain stops accepting adds and drops keys still waiting for a
// deadline or backoff, but lets Get hand out the keys that are ready and the
// keys added again while they were being processed, once they are Done. It
// blocks until nothing is ready or being processed and returns nil; or until
// ctx is done, then it returns ctx.Err() and the drain goes on; or until
// ShutDown is called, then it returns ErrDrainStopped. Workers must keep
// calling Get and Done for the drain to finish; Get returns ErrShutDown to
// them once no key is ready or can become ready again. It is idempotent;
// after ShutDown it hands nothing out and waits only for the keys being
// processed.
func (q *Queue[K]) ShutDownWithDrain(ctx context.Context) error {
	q.mu.Lock()
	q.shutDownLocked(true)
	drained := q.drained
	if q.drainStop == nil {
		q.drainStop = make(chan struct{})
	}
	stop := q.drainStop
	q.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-stop:
		select {
		case <-drained: // both happened: the drain did finish
			return nil
		default:
			return ErrDrainStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ShuttingDown reports whether ShutDown or ShutDownWithDrain was called.
func (q *Queue[K]) ShuttingDown() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.shuttingDown
}

func (q *Queue[K]) shutDownLocked(drain bool) {
	if !q.shuttingDown {
		q.shuttingDown, q.draining = true, drain
		for len(q.waiting) > 0 {
			i := q.waitRemove(len(q.waiting) - 1)
			q.entries[i].backoff = false
			q.release(i)
		}
	} else if !drain {
		q.draining = false
	}
	if !drain && q.drainStop != nil {
		close(q.drainStop)
		q.drainStop = nil
	}
	if !q.draining {
		for q.nready > 0 {
			i := q.popReady()
			if q.m != nil {
				q.m.depthChange(q.entries[i].readyPrio, -1)
			}
			q.release(i)
		}
		for _, i := range q.processing {
			q.entries[i].dirty = false
		}
	}
	q.wakeAllLocked()
	q.checkDrainedLocked()
}

// exhaustedLocked reports whether Get has nothing more to hand out, ever:
// the queue is shut down, and unless it is draining that is all; while
// draining, nothing is ready and no key being processed will be requeued
// by its Done.
func (q *Queue[K]) exhaustedLocked() bool {
	if !q.shuttingDown {
		return false
	}
	if !q.draining {
		return true
	}
	if q.nready > 0 {
		return false
	}
	for _, i := range q.processing { // as many as there are workers
		if q.entries[i].dirty {
			return false
		}
	}
	return true
}

// wakeAllLocked wakes every blocked Get to look at the queue again.
func (q *Queue[K]) wakeAllLocked() {
	for len(q.waiters) > 0 {
		q.signalOne()
	}
}

func (q *Queue[K]) checkDrainedLocked() {
	if !q.shuttingDown || q.nready > 0 || len(q.processing) > 0 {
		return
	}
	select {
	case <-q.drained:
	default:
		close(q.drained)
		if q.m != nil {
			q.m.unregister()
		}
	}
}
