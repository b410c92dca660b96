package queue

// The waiting set is a binary heap of indexes into q.entries, ordered by
// deadline, then seq. Each entry records its position (waitIdx) so updates
// and removals are O(log n) without searching. Written out rather than
// through container/heap to keep the comparisons inlined.

func (q *Queue[K]) waitLess(a, b int32) bool {
	ea, eb := &q.entries[a], &q.entries[b]
	if ea.deadline != eb.deadline {
		return ea.deadline < eb.deadline
	}
	return ea.seq < eb.seq
}

func (q *Queue[K]) waitUp(j int) {
	h := q.waiting
	x := h[j]
	for j > 0 {
		p := (j - 1) / 2
		if !q.waitLess(x, h[p]) {
			break
		}
		h[j] = h[p]
		q.entries[h[j]].waitIdx = int32(j)
		j = p
	}
	h[j] = x
	q.entries[x].waitIdx = int32(j)
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
		if r := c + 1; r < n && q.waitLess(h[r], h[c]) {
			c = r
		}
		if !q.waitLess(h[c], x) {
			break
		}
		h[j] = h[c]
		q.entries[h[j]].waitIdx = int32(j)
		j = c
	}
	h[j] = x
	q.entries[x].waitIdx = int32(j)
}

func (q *Queue[K]) waitPush(i int32) {
	q.waiting = append(q.waiting, i)
	q.waitUp(len(q.waiting) - 1)
}

func (q *Queue[K]) waitRemove(j int) int32 {
	h := q.waiting
	i := h[j]
	last := len(h) - 1
	if j != last {
		h[j] = h[last]
		q.entries[h[j]].waitIdx = int32(j)
	}
	q.waiting = h[:last]
	if j != last {
		moved := h[j]
		q.waitDown(j)
		q.waitUp(int(q.entries[moved].waitIdx))
	}
	q.entries[i].waitIdx = -1
	return i
}
