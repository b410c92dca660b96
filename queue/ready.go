package queue

// The ready set orders keys by (score, seq), lowest first, where
// score = readyAt − priority·aging (strict mode: priority first, then
// readyAt). Within one priority that order is (readyAt, seq), and keys almost
// always become ready in that order (readyAt is the time of the add, or the
// deadline of a key promoted in deadline order), so each priority level is a
// FIFO bucket: a doubly linked list through the entries, appended at the tail
// and popped at the head with no comparison at all.
//
// Only the head of each non-empty bucket is in a binary heap (heads), which
// picks the best key across levels; with one priority level in use the heap
// holds one element. A key that would break its bucket's order (a ready key
// whose priority is raised keeps its readyAt and seq, so it may belong before
// the tail) is not linked into a bucket but put into the heap on its own.
// The heap therefore holds bucket heads and such loose keys, and its top is
// always the best ready key.

// bucket is the FIFO list of ready keys of one priority, in (readyAt, seq)
// order. An empty bucket stays allocated (and indexed by its priority) for
// reuse until sweepBuckets recycles it.
type bucket struct {
	prio       int
	head, tail int32 // entry indexes, -1 when empty
	n          int32
}

const (
	noBucket       = -1 // entry.bucket of a key that is not ready
	looseBucket    = -2 // entry.bucket of a ready key held by the heap alone
	maxIdleBuckets = 64
)

// readyLess orders ready entries: lower score first, then FIFO by seq.
func (q *Queue[K]) readyLess(a, b int32) bool {
	ea, eb := &q.entries[a], &q.entries[b]
	if ea.readyPrio != eb.readyPrio {
		if q.strict {
			return ea.readyPrio > eb.readyPrio
		}
		sa, sb := ea.readyAt-q.agingOffset(ea.readyPrio), eb.readyAt-q.agingOffset(eb.readyPrio)
		if sa != sb {
			return sa < sb
		}
	} else if ea.readyAt != eb.readyAt {
		return ea.readyAt < eb.readyAt
	}
	return ea.seq < eb.seq
}

// bucketFor returns the index of the bucket of priority prio, creating it if
// needed.
func (q *Queue[K]) bucketFor(prio int) int32 {
	if b := q.lastBucket; b >= 0 && q.buckets[b].prio == prio {
		return b
	}
	b, ok := q.bucketOf[prio]
	if !ok {
		if n := len(q.freeBuckets); n > 0 {
			b = q.freeBuckets[n-1]
			q.freeBuckets = q.freeBuckets[:n-1]
		} else {
			q.buckets = append(q.buckets, bucket{})
			b = int32(len(q.buckets) - 1)
		}
		q.buckets[b] = bucket{prio: prio, head: -1, tail: -1}
		if q.bucketOf == nil {
			q.bucketOf = make(map[int]int32)
		}
		q.bucketOf[prio] = b
	}
	q.lastBucket = b
	return b
}

// sweepBuckets recycles empty buckets once there are too many of them, so a
// caller that uses ever new priorities does not grow the queue without bound.
func (q *Queue[K]) sweepBuckets() {
	if len(q.bucketOf)-q.liveBuckets <= maxIdleBuckets {
		return
	}
	for prio, b := range q.bucketOf {
		if q.buckets[b].n == 0 {
			delete(q.bucketOf, prio)
			q.freeBuckets = append(q.freeBuckets, b)
		}
	}
	q.lastBucket = -1
}

// insertReady puts ready entry i (readyPrio, readyAt and seq set) into the
// ready set.
func (q *Queue[K]) insertReady(i int32) {
	e := &q.entries[i]
	q.nready++
	bi := q.bucketFor(e.readyPrio)
	b := &q.buckets[bi]
	if b.n == 0 {
		b.head, b.tail, b.n = i, i, 1
		q.liveBuckets++
		e.bucket, e.prev, e.next = bi, -1, -1
		q.headsPush(i)
		return
	}
	t := &q.entries[b.tail]
	if t.readyAt < e.readyAt || t.readyAt == e.readyAt && t.seq < e.seq {
		e.bucket, e.prev, e.next = bi, b.tail, -1
		t.next = i
		b.tail = i
		b.n++
		return
	}
	e.bucket = looseBucket
	q.headsPush(i)
}

// removeReady takes ready entry i out of the ready set.
func (q *Queue[K]) removeReady(i int32) {
	e := &q.entries[i]
	q.nready--
	bi := e.bucket
	e.bucket = noBucket
	if bi == looseBucket {
		q.headsRemove(int(e.hpos))
		return
	}
	b := &q.buckets[bi]
	b.n--
	if e.next >= 0 {
		q.entries[e.next].prev = e.prev
	} else {
		b.tail = e.prev
	}
	if e.prev >= 0 {
		q.entries[e.prev].next = e.next
		return
	}
	// i was the head: its successor takes its place in the heap.
	b.head = e.next
	pos := int(e.hpos)
	e.hpos = -1
	if b.head < 0 {
		q.liveBuckets--
		q.headsRemoveAt(pos)
		q.sweepBuckets()
		return
	}
	q.heads[pos] = b.head
	q.entries[b.head].hpos = int32(pos)
	q.headsDown(pos) // the successor is never better than the head was
}

// popReady removes and returns the best ready entry; the set must not be empty.
func (q *Queue[K]) popReady() int32 {
	i := q.heads[0]
	q.removeReady(i)
	return i
}

func (q *Queue[K]) headsUp(j int) {
	h := q.heads
	x := h[j]
	for j > 0 {
		p := (j - 1) / 2
		if !q.readyLess(x, h[p]) {
			break
		}
		h[j] = h[p]
		q.entries[h[j]].hpos = int32(j)
		j = p
	}
	h[j] = x
	q.entries[x].hpos = int32(j)
}

func (q *Queue[K]) headsDown(j int) {
	h := q.heads
	n := len(h)
	x := h[j]
	for {
		c := 2*j + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && q.readyLess(h[r], h[c]) {
			c = r
		}
		if !q.readyLess(h[c], x) {
			break
		}
		h[j] = h[c]
		q.entries[h[j]].hpos = int32(j)
		j = c
	}
	h[j] = x
	q.entries[x].hpos = int32(j)
}

func (q *Queue[K]) headsPush(i int32) {
	q.heads = append(q.heads, i)
	q.headsUp(len(q.heads) - 1)
}

// headsRemove removes the entry at heap position j.
func (q *Queue[K]) headsRemove(j int) {
	q.entries[q.heads[j]].hpos = -1
	q.headsRemoveAt(j)
}

// headsRemoveAt closes the hole at heap position j.
func (q *Queue[K]) headsRemoveAt(j int) {
	h := q.heads
	last := len(h) - 1
	q.heads = h[:last]
	if j == last {
		return
	}
	moved := h[last]
	h[j] = moved
	q.entries[moved].hpos = int32(j)
	q.headsDown(j)
	q.headsUp(int(q.entries[moved].hpos))
}
