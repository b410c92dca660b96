package queue

import "fmt"

// CheckInvariants verifies the queue's internal invariants, for tests.
func (q *Queue[K]) CheckInvariants() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if got, want := len(q.index), len(q.entries)-len(q.free); got != want {
		return fmt.Errorf("index has %d keys, %d entries in use", got, want)
	}
	if err := q.checkReadyLocked(); err != nil {
		return err
	}
	for j := range q.waiting {
		w := &q.waiting[j]
		if e := &q.entries[w.i]; int(e.waitIdx) != j || e.deadline != w.deadline || e.seq != w.seq {
			return fmt.Errorf("waiting[%d] = %+v, entry has waitIdx %d deadline %d seq %d", j, *w, e.waitIdx, e.deadline, e.seq)
		}
		if j > 0 && waitLess(w, &q.waiting[(j-1)/2]) {
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
		ready, waiting, proc := e.bucket != noBucket, e.waitIdx >= 0, e.procIdx >= 0
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

// checkReadyLocked verifies the ready set: every bucket is a well-linked list
// in (readyAt, seq) order whose head, and nothing else of it, is in heads;
// loose keys are in heads; heads is a heap; the counts agree.
func (q *Queue[K]) checkReadyLocked() error {
	inHeads := 0
	for j, i := range q.heads {
		e := &q.entries[i]
		if int(e.hpos) != j {
			return fmt.Errorf("heads[%d] says hpos %d", j, e.hpos)
		}
		if j > 0 && q.readyLess(i, q.heads[(j-1)/2]) {
			return fmt.Errorf("heads heap order broken at %d", j)
		}
		switch {
		case e.bucket == looseBucket:
		case e.bucket >= 0 && q.buckets[e.bucket].head == i:
		default:
			return fmt.Errorf("heads[%d] is neither loose nor a bucket head (bucket %d)", j, e.bucket)
		}
		inHeads++
	}
	ready, loose, live := 0, 0, 0
	for i := range q.entries {
		e := &q.entries[i]
		if e.bucket == noBucket {
			if e.hpos != -1 {
				return fmt.Errorf("entry %d not ready but hpos %d", i, e.hpos)
			}
			continue
		}
		ready++
		if e.bucket == looseBucket {
			loose++
		} else if q.buckets[e.bucket].prio != e.readyPrio {
			return fmt.Errorf("entry %d of priority %d in bucket of %d", i, e.readyPrio, q.buckets[e.bucket].prio)
		}
	}
	for prio, b := range q.bucketOf {
		bk := &q.buckets[b]
		if bk.prio != prio {
			return fmt.Errorf("bucketOf[%d] is bucket of %d", prio, bk.prio)
		}
		n, prev := int32(0), int32(-1)
		for i := bk.head; i >= 0; i = q.entries[i].next {
			e := &q.entries[i]
			if e.bucket != b || e.prev != prev {
				return fmt.Errorf("bucket %d: entry %d has bucket %d prev %d, want %d", prio, i, e.bucket, e.prev, prev)
			}
			if prev >= 0 {
				if p := &q.entries[prev]; p.readyAt > e.readyAt || p.readyAt == e.readyAt && p.seq >= e.seq {
					return fmt.Errorf("bucket %d out of order at entry %d", prio, i)
				}
			}
			if (prev < 0) != (e.hpos >= 0) {
				return fmt.Errorf("bucket %d: entry %d head=%v hpos=%d", prio, i, prev < 0, e.hpos)
			}
			prev = i
			n++
		}
		if bk.tail != prev || bk.n != n {
			return fmt.Errorf("bucket %d: tail %d n %d, walked tail %d n %d", prio, bk.tail, bk.n, prev, n)
		}
		if n > 0 {
			live++
		}
		ready -= int(n)
	}
	if ready != loose || q.liveBuckets != live || inHeads != live+loose {
		return fmt.Errorf("ready set counts: %d linked-or-loose mismatch, loose %d, live buckets %d (field %d), heads %d", ready, loose, live, q.liveBuckets, inHeads)
	}
	if n := countReady(q); n != q.nready {
		return fmt.Errorf("nready %d, %d entries ready", q.nready, n)
	}
	return nil
}

func countReady[K comparable](q *Queue[K]) int {
	n := 0
	for i := range q.entries {
		if q.entries[i].bucket != noBucket {
			n++
		}
	}
	return n
}

// Buckets returns the number of priority buckets allocated, for tests.
func (q *Queue[K]) Buckets() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.bucketOf)
}
