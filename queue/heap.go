package queue

// The waiting set is a binary heap ordered by deadline, then seq. The sort
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
