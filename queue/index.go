package queue

// Keys that leave the queue (neither ready, waiting nor processing) are not
// deleted from the index at once: they stay as idle entries on a FIFO list,
// so a key that comes back, as controller keys do, costs one map lookup
// instead of a map insert now and a map delete later. The queue remembers at
// most max(minIdle, peak) idle keys, where peak is the most keys it has
// tracked at once, and forgets the oldest beyond that. Go maps and the
// entries slice never shrink, so this keeps no more slots than the queue
// already holds since its peak; what it retains beyond that is the idle keys'
// own values (for string keys, their bytes).
const minIdle = 1024

// alloc returns a new entry for key, which must not be in the index.
func (q *Queue[K]) alloc(key K) int32 {
	var i int32
	if n := len(q.free); n > 0 {
		i = q.free[n-1]
		q.free = q.free[:n-1]
	} else {
		q.entries = append(q.entries, entry[K]{})
		i = int32(len(q.entries) - 1)
	}
	q.entries[i] = entry[K]{key: key, bucket: noBucket, prev: -1, next: -1, hpos: -1, waitIdx: -1, procIdx: -1}
	q.index[key] = i
	q.peak = max(q.peak, len(q.index)-q.nidle)
	return i
}

// wake takes idle entry i off the idle list so it can be used again.
func (q *Queue[K]) wake(i int32) {
	q.unlinkIdle(i)
	q.peak = max(q.peak, len(q.index)-q.nidle)
}

func (q *Queue[K]) unlinkIdle(i int32) {
	e := &q.entries[i]
	if e.prev >= 0 {
		q.entries[e.prev].next = e.next
	} else {
		q.idleHead = e.next
	}
	if e.next >= 0 {
		q.entries[e.next].prev = e.prev
	} else {
		q.idleTail = e.prev
	}
	e.prev, e.next, e.idle = -1, -1, false
	q.nidle--
}

// release makes entry i idle if nothing refers to it any more.
func (q *Queue[K]) release(i int32) {
	e := &q.entries[i]
	if e.idle || e.bucket != noBucket || e.waitIdx >= 0 || e.procIdx >= 0 {
		return
	}
	e.idle, e.prev, e.next = true, q.idleTail, -1
	if q.idleTail >= 0 {
		q.entries[q.idleTail].next = i
	} else {
		q.idleHead = i
	}
	q.idleTail = i
	q.nidle++
	if q.nidle > max(minIdle, q.peak) {
		q.forget(q.idleHead)
	}
}

// forget deletes idle entry i from the index and frees it.
func (q *Queue[K]) forget(i int32) {
	q.unlinkIdle(i)
	e := &q.entries[i]
	delete(q.index, e.key)
	var zero K
	e.key = zero // drop references held by the key
	q.free = append(q.free, i)
}
