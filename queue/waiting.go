package queue

// The waiting set holds keys with a future deadline (AddAfter, backoffs) in a
// binary heap ordered by deadline, then seq. The sort
// keys are copied into the heap slots so comparisons stay in the heap's own
// contiguous memory instead of chasing entries; each entry records its
// position (waitIdx) so updates and removals are O(log n) without searching.

// waitSlot is one element of the waiting heap: entry i with copies of its
// deadline and seq.
type waitSlot struct {
	deadline int64
	seq      uint64
	i        int32
}

func waitLess(a, b *waitSlot) bool {
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.seq < b.seq
}

func (q *Queue[K]) waitUp(j int) {
	h := q.waiting
	x := h[j]
	for j > 0 {
		p := (j - 1) / 2
		if !waitLess(&x, &h[p]) {
			break
		}
		h[j] = h[p]
		q.entries[h[j].i].waitIdx = int32(j)
		j = p
	}
	h[j] = x
	q.entries[x.i].waitIdx = int32(j)
}

func (q *Queue[K]) waitDown(j int) {
	h := q.waiting
	n := len(h)
	x := h[j]
	for {
		c := 2*j + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && waitLess(&h[r], &h[c]) {
			c = r
		}
		if !waitLess(&h[c], &x) {
			break
		}
		h[j] = h[c]
		q.entries[h[j].i].waitIdx = int32(j)
		j = c
	}
	h[j] = x
	q.entries[x.i].waitIdx = int32(j)
}

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
		q.waitEarlier(i)
	default:
		e.waitPrio, e.deadline, e.backoff = prio, deadline, backoff
		e.seq = q.seq
		q.seq++
		q.waitPush(i)
	}
	// A new earliest deadline needs a waiter to arm a timer for it.
	if e.waitIdx == 0 && len(q.waiters) > 0 && (q.timerHolder == nil || deadline < q.timerDeadline) {
		q.signalOne()
	}
}

// promoteDue moves every waiting key whose deadline is at or before now to
// ready (or marks it dirty if it is being processed).
func (q *Queue[K]) promoteDue(now int64) {
	for len(q.waiting) > 0 {
		if q.waiting[0].deadline > now {
			return
		}
		i := q.waiting[0].i
		e := &q.entries[i]
		q.waitRemove(0)
		e.backoff = false
		if e.procIdx >= 0 {
			e.dirty, e.dirtyPrio = true, e.waitPrio
			continue
		}
		q.pushReady(i, e.waitPrio, e.deadline)
	}
}

// waitPush adds entry i, whose deadline and seq are set.
func (q *Queue[K]) waitPush(i int32) {
	e := &q.entries[i]
	q.waiting = append(q.waiting, waitSlot{deadline: e.deadline, seq: e.seq, i: i})
	q.waitUp(len(q.waiting) - 1)
}

// waitEarlier moves entry i up after its deadline was lowered.
func (q *Queue[K]) waitEarlier(i int32) {
	e := &q.entries[i]
	q.waiting[e.waitIdx].deadline = e.deadline
	q.waitUp(int(e.waitIdx))
}

// waitRemove removes the slot at heap position j and returns its entry.
func (q *Queue[K]) waitRemove(j int) int32 {
	h := q.waiting
	i := h[j].i
	last := len(h) - 1
	if j != last {
		h[j] = h[last]
		q.entries[h[j].i].waitIdx = int32(j)
	}
	q.waiting = h[:last]
	if j != last {
		moved := h[j].i
		q.waitDown(j)
		q.waitUp(int(q.entries[moved].waitIdx))
	}
	q.entries[i].waitIdx = -1
	return i
}
