package queue

import "fmt"

// CheckInvariants verifies the queue's internal invariants, for tests.
func (q *Queue[K]) CheckInvariants() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if got, want := len(q.index), len(q.entries)-len(q.free); got != want {
		return fmt.Errorf("index has %d keys, %d entries in use", got, want)
	}
	for j, i := range q.ready {
		if int(q.entries[i].readyIdx) != j {
			return fmt.Errorf("ready[%d] says readyIdx %d", j, q.entries[i].readyIdx)
		}
		if j > 0 && q.readyLess(i, q.ready[(j-1)/2]) {
			return fmt.Errorf("ready heap order broken at %d", j)
		}
	}
	for j, i := range q.waiting {
		if int(q.entries[i].waitIdx) != j {
			return fmt.Errorf("waiting[%d] says waitIdx %d", j, q.entries[i].waitIdx)
		}
		if j > 0 && q.waitLess(i, q.waiting[(j-1)/2]) {
			return fmt.Errorf("waiting heap order broken at %d", j)
		}
	}
	for j, i := range q.processing {
		if int(q.entries[i].procIdx) != j {
			return fmt.Errorf("processing[%d] says procIdx %d", j, q.entries[i].procIdx)
		}
	}
	for k, i := range q.index {
		e := &q.entries[i]
		if e.key != k {
			return fmt.Errorf("index[%v] points at entry of %v", k, e.key)
		}
		ready, waiting, proc := e.readyIdx >= 0, e.waitIdx >= 0, e.procIdx >= 0
		switch {
		case !ready && !waiting && !proc:
			return fmt.Errorf("%v tracked but idle", k)
		case ready && (waiting || proc || e.dirty):
			return fmt.Errorf("%v ready and waiting=%v processing=%v dirty=%v", k, waiting, proc, e.dirty)
		case e.dirty && (!proc || waiting):
			return fmt.Errorf("%v dirty, processing=%v waiting=%v", k, proc, waiting)
		case e.backoff && !waiting:
			return fmt.Errorf("%v in backoff but not waiting", k)
		}
		if _, dead := q.dead[k]; dead && (ready || waiting || e.dirty) {
			return fmt.Errorf("%v dead but scheduled", k)
		}
	}
	return nil
}

// Waiters returns the number of Gets blocked in the queue, for tests.
func (q *Queue[K]) Waiters() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}
