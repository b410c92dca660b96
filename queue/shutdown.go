package queue

import "context"

// ShutDown stops the queue at once: later adds are ignored, keys not yet
// handed out are dropped, and every Get (blocked or future) returns
// ErrShutDown. Done is still accepted for keys being processed. It does not
// wait; it is idempotent, and it ends a drain in progress early.
func (q *Queue[K]) ShutDown() {
	q.mu.Lock()
	q.shutDownLocked(false)
	q.mu.Unlock()
}

// ShutDownWithDrain stops accepting adds, lets Get hand out the keys that are
// ready (and keys re-added while processing, when they are Done), drops keys
// still waiting for a deadline or backoff, and blocks until nothing is ready
// or processing, or ctx is done (then it returns ctx.Err() and the drain goes
// on). Workers must keep calling Get and Done for the drain to finish. It is
// idempotent; after ShutDown it waits only for keys being processed.
func (q *Queue[K]) ShutDownWithDrain(ctx context.Context) error {
	q.mu.Lock()
	q.shutDownLocked(true)
	drained := q.drained
	q.mu.Unlock()
	select {
	case <-drained:
		return nil
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
	if !q.draining {
		for q.nready > 0 {
			i := q.popReady()
			if q.m != nil {
				q.m.depthChange(q.entries[i].readyPrio, -1)
			}
			q.release(i)
		}
	}
	for len(q.waiters) > 0 {
		q.signalOne()
	}
	q.checkDrainedLocked()
}

func (q *Queue[K]) checkDrainedLocked() {
	if !q.shuttingDown || q.nready > 0 || len(q.processing) > 0 {
		return
	}
	select {
	case <-q.drained:
	default:
		close(q.drained)
		for len(q.waiters) > 0 {
			q.signalOne()
		}
		if q.m != nil {
			q.m.unregister()
		}
	}
}
