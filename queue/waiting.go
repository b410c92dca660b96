package queue

// The waiting set holds keys with a future deadline (AddAfter, backoffs) in a
// heap by deadline, then seq. The sort keys are copied into the heap slots so
// comparisons stay in the heap's own contiguous memory instead of chasing
// entries; each entry records its position (waitIdx) so updates and removals
// are O(log n) without searching.

// waitSlot is one element of the waiting heap: entry i with copies of its
// deadline and seq.
type waitSlot struct {
	deadline int64
	seq      uint64
	i        int32
}

// waitOrder orders the waiting heap by deadline, then seq.
type waitOrder[K comparable] struct{ q *Queue[K] }

func (waitOrder[K]) less(a, b waitSlot) bool {
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.seq < b.seq
}

func (o waitOrder[K]) moved(x waitSlot, j int32) { o.q.entries[x.i].waitIdx = j }

// addDelayedLocked schedules entry i to become ready at deadline with
// priority prio, unless it already is ready or will be sooner.
func (q *Queue[K]) addDelayedLocked(i int32, prio int, deadline int64, backoff bool) {
	e := &q.entries[i]
	switch {
	case e.bucket != noBucket:
		if prio > e.readyPrio {
			q.setReadyPrio(i, prio)
		}
		return
	case e.dirty:
		e.dirtyPrio = max(e.dirtyPrio, prio)
		return
	case e.waitIdx >= 0:
		e.waitPrio = max(e.waitPrio, prio)
		e.backoff = e.backoff || backoff
		if deadline >= e.deadline {
			return
		}
		e.deadline = deadline
		q.waiting.s[e.waitIdx].deadline = deadline
		q.waiting.up(int(e.waitIdx))
	default:
		e.waitPrio, e.deadline, e.backoff = prio, deadline, backoff
		e.seq = q.seq
		q.seq++
		q.waiting.push(waitSlot{deadline: deadline, seq: e.seq, i: i})
	}
	// A new earliest deadline needs a waiter to arm a timer for it.
	if e.waitIdx == 0 && len(q.waiters) > 0 && (q.timerHolder == nil || deadline < q.timerDeadline) {
		q.signalOne()
	}
}

// promoteDue moves every waiting key whose deadline is at or before now to
// ready (or marks it dirty if it is being processed).
func (q *Queue[K]) promoteDue(now int64) {
	for q.waiting.len() > 0 && q.waiting.s[0].deadline <= now {
		i := q.waiting.remove(0).i
		e := &q.entries[i]
		e.backoff = false
		if e.procIdx >= 0 {
			e.dirty, e.dirtyPrio = true, e.waitPrio
			continue
		}
		q.pushReady(i, e.waitPrio, e.deadline)
	}
}
