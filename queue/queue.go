package queue

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// ErrShutDown is returned by Get once the queue has been shut down and has
// nothing more to hand out.
var ErrShutDown = errors.New("queue: shut down")

// Queue is a deduplicating work queue of keys with delays, rate limiting,
// priorities with aging, and a retry budget. See the package documentation
// for the model. All methods are safe for concurrent use. Create it with New.
type Queue[K comparable] struct {
	mu sync.Mutex

	clock       Clock
	epoch       time.Time
	limiter     RateLimiter[K]
	realClock   bool  // clock is RealClock: read the monotonic clock only
	aging       int64 // nanoseconds per priority level; unused when strict
	agingLimit  int64 // largest |priority| whose aging offset is not clamped
	strict      bool
	maxFailures int
	m           *queueMetrics

	// index maps every key the queue tracks (ready, waiting, or processing)
	// to its entry in entries. Entries of keys that left are on free.
	index   map[K]int32
	entries []entry[K]
	free    []int32
	seq     uint64

	// The ready set (ready.go) holds keys that can be handed out now; none
	// of them is waiting, processing or dirty. It is one FIFO bucket per
	// priority plus a heap (heads) of the bucket heads and of loose keys.
	// waiting holds keys with a future deadline (they may also be
	// processing, never dirty). processing holds keys handed out by Get and
	// not yet Done.
	nready      int
	heads       []int32
	buckets     []bucket
	bucketOf    map[int]int32
	freeBuckets []int32
	lastBucket  int32 // bucket of the last lookup, -1 if none
	liveBuckets int   // non-empty buckets

	waiting    []waitSlot
	processing []int32

	// waiters are Gets blocked for lack of a ready key. A waiter is removed
	// from the slice by whoever signals it. At most one waiter (timerHolder)
	// sleeps on a timer for the earliest deadline, timerDeadline.
	waiters       []*waiter
	idleWaiters   []*waiter
	timers        []Timer
	timerHolder   *waiter
	timerDeadline int64

	shuttingDown bool
	draining     bool          // ShutDownWithDrain came first and no ShutDown since
	drained      chan struct{} // closed once shut down with nothing ready or processing
	drainStop    chan struct{} // closed by ShutDown to end the waiting ShutDownWithDrains

	fails map[K]*failure // only when maxFailures > 0
	dead  map[K]*deadLetter[K]
	// deadSeq orders dead letters by when they entered the set.
	deadSeq uint64
	// deadChanged receives a token (capacity 1, never blocks) whenever dead
	// changes; see DeadLetterChanges.
	deadChanged chan struct{}
}

// entry is one tracked key. Invariants (ready means bucket != noBucket):
// ready ⇒ ¬waiting ∧ ¬processing ∧ ¬dirty; dirty ⇒ processing ∧ ¬waiting;
// backoff ⇒ waiting; the entry is freed when ¬ready ∧ ¬waiting ∧ ¬processing.
type entry[K comparable] struct {
	key       K
	readyPrio int   // priority while ready, and as handed out while processing
	bucket    int32 // while ready: its bucket, or looseBucket; else noBucket
	prev      int32 // neighbours in the bucket, -1 at the ends
	next      int32
	hpos      int32 // position in heads, -1 if absent
	waitIdx   int32 // position in waiting, -1 if absent
	procIdx   int32 // position in processing, -1 if absent
	dirty     bool  // added while processing: requeue on Done
	backoff   bool  // waiting out a rate-limited retry
	waitPrio  int   // priority it will have when its deadline passes
	dirtyPrio int   // priority it will have when requeued on Done
	seq       uint64
	readyAt   int64 // when it became ready (ns since epoch)
	deadline  int64 // when it stops waiting (ns since epoch)
	startedAt int64 // when Get handed it out (ns since epoch)
}

type waiter struct {
	ch       chan struct{} // capacity 1; receives one token per signal
	signaled bool
}

// New returns an empty queue. It starts no goroutine: delays are served by
// the Get calls themselves, one of which waits on a timer for the earliest
// deadline.
func New[K comparable](o Options[K]) *Queue[K] {
	q := &Queue[K]{
		clock:       o.Clock,
		limiter:     o.RateLimiter,
		maxFailures: max(o.MaxFailures, 0),
		index:       make(map[K]int32),
		lastBucket:  -1,
		drained:     make(chan struct{}),
		deadChanged: make(chan struct{}, 1),
	}
	if q.clock == nil {
		q.clock = RealClock{}
	}
	_, q.realClock = q.clock.(RealClock)
	if q.limiter == nil {
		q.limiter = DefaultRateLimiter[K]()
	}
	switch {
	case o.AgingInterval < 0:
		q.strict = true
	case o.AgingInterval == 0:
		q.aging = int64(DefaultAgingInterval)
	default:
		q.aging = int64(o.AgingInterval)
	}
	if !q.strict {
		q.agingLimit = int64(math.MaxInt64/4) / q.aging
	}
	q.epoch = q.clock.Now()
	if o.Metrics != nil {
		q.m = o.Metrics.forQueue(o.Name, q.inflight)
	}
	return q
}

// now returns the time since epoch. For RealClock it reads only the
// monotonic clock (time.Since), which costs half of time.Now.
func (q *Queue[K]) now() int64 {
	if q.realClock {
		return int64(time.Since(q.epoch))
	}
	return int64(q.clock.Now().Sub(q.epoch))
}

// Add makes key ready now at priority 0. See AddWith.
func (q *Queue[K]) Add(key K) { q.AddWith(key, AddOptions{}) }

// AddWithPriority makes key ready now at priority p. See AddWith.
func (q *Queue[K]) AddWithPriority(key K, p int) { q.AddWith(key, AddOptions{Priority: p}) }

// AddAfter makes key ready after d (d <= 0: now). See AddWith.
func (q *Queue[K]) AddAfter(key K, d time.Duration) { q.AddWith(key, AddOptions{After: d}) }

// AddWith adds key:
//   - If key is ready, it stays ready once (dedup) and takes the higher
//     priority; a later deadline (o.After > 0) is absorbed.
//   - If key is being processed, it is marked to be requeued on Done (or,
//     with o.After > 0, to become ready after the delay).
//   - If key is waiting, the earliest deadline and the highest priority win;
//     but a key waiting out a backoff (AddRateLimited, Fail) only takes the
//     priority unless o.BypassBackoff is set.
//   - If key is dead-lettered, nothing happens except that the add is
//     counted in its DeadLetter.DroppedAdds; it stays dead until Replay.
//   - After ShutDown or ShutDownWithDrain, nothing happens.
func (q *Queue[K]) AddWith(key K, o AddOptions) {
	q.mu.Lock()
	q.addLocked(key, o.Priority, o.After, o.BypassBackoff, false, 0)
	q.mu.Unlock()
}

// addLocked implements AddWith. backoff marks a rate-limited retry; now is
// the current time if the caller already read it, else 0.
func (q *Queue[K]) addLocked(key K, prio int, after time.Duration, bypass, backoff bool, now int64) {
	if q.shuttingDown {
		return
	}
	if len(q.dead) > 0 {
		if d, ok := q.dead[key]; ok {
			d.DroppedAdds++
			return
		}
	}
	if q.m != nil {
		q.m.adds.Inc()
		if after > 0 {
			q.m.retries.Inc()
		}
	}
	i, ok := q.index[key]
	if !ok {
		i = q.alloc(key)
	}
	e := &q.entries[i]
	if after <= 0 && e.bucket != noBucket && prio <= e.readyPrio {
		return // the common duplicate: already ready at this priority or higher
	}
	if e.backoff && !backoff {
		if !bypass {
			e.waitPrio = max(e.waitPrio, prio)
			return
		}
		e.backoff = false
		prio = max(prio, e.waitPrio)
		q.waitRemove(int(e.waitIdx))
	}
	if backoff && e.dirty && after > 0 {
		// A failure folds the adds that arrived during the failed attempt
		// into the retry instead of running the key again at once.
		prio = max(prio, e.dirtyPrio)
		e.dirty = false
	}
	if after > 0 {
		if now == 0 {
			now = q.now()
		}
		q.addDelayedLocked(i, prio, now+int64(after), backoff)
		return
	}
	if e.waitIdx >= 0 { // now is earlier than any deadline
		prio = max(prio, e.waitPrio)
		e.backoff = false
		q.waitRemove(int(e.waitIdx))
	}
	switch {
	case e.procIdx >= 0:
		if !e.dirty {
			e.dirty, e.dirtyPrio = true, prio
		} else {
			e.dirtyPrio = max(e.dirtyPrio, prio)
		}
	case e.bucket != noBucket:
		if prio > e.readyPrio {
			q.setReadyPrio(i, prio)
		}
	default:
		if now == 0 { // read only here: a key marked dirty needs no time
			now = q.now()
		}
		q.pushReady(i, prio, now)
		q.signalOne()
	}
}

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
	return i
}

// release frees entry i if nothing refers to it any more.
func (q *Queue[K]) release(i int32) {
	e := &q.entries[i]
	if e.bucket != noBucket || e.waitIdx >= 0 || e.procIdx >= 0 {
		return
	}
	delete(q.index, e.key)
	var zero K
	e.key = zero // drop references held by the key
	q.free = append(q.free, i)
}

// agingOffset returns prio·aging, saturating instead of overflowing.
func (q *Queue[K]) agingOffset(prio int) int64 {
	if q.strict || prio == 0 {
		return 0
	}
	p := int64(prio)
	p = max(min(p, q.agingLimit), -q.agingLimit)
	return p * q.aging
}

func (q *Queue[K]) pushReady(i int32, prio int, at int64) {
	e := &q.entries[i]
	e.readyPrio, e.readyAt = prio, at
	e.seq = q.seq
	q.seq++
	q.insertReady(i)
	if q.m != nil {
		q.m.depthChange(prio, 1)
	}
}

func (q *Queue[K]) setReadyPrio(i int32, prio int) {
	e := &q.entries[i]
	if q.m != nil {
		q.m.depthChange(e.readyPrio, -1)
		q.m.depthChange(prio, 1)
	}
	q.removeReady(i)
	q.entries[i].readyPrio = prio
	q.insertReady(i) // readyAt and seq are kept
}

// TryGet is Get without blocking: it returns false if no key is ready now or
// the queue is shut down.
func (q *Queue[K]) TryGet() (K, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked()
}

// Get blocks until a key is ready, marks it as processing and returns it. The
// caller must call Done(key) when finished with it; until then no other Get
// returns the same key. Get returns ctx.Err() if ctx is done first (even if a
// key is ready), and ErrShutDown once the queue is shut down and has nothing
// more to hand out: after ShutDown at once; during ShutDownWithDrain once no
// key is ready and no key being processed was added again meanwhile (its
// Done would requeue it, so Get waits for that Done). See ShutDownWithDrain.
func (q *Queue[K]) Get(ctx context.Context) (K, error) {
	var zero K
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	q.mu.Lock()
	return q.getLocked(ctx)
}

// DoneAndGet is Done(done) followed by Get(ctx) under one lock acquisition:
// the worker loop's step from one key to the next, cheaper than the two
// calls. Done(done) always takes effect, even if ctx is done or the queue is
// shut down; the result is then that of Get(ctx): the next key, which the
// caller must pass to Done or DoneAndGet, or ctx.Err(), or ErrShutDown. The
// next key may be done itself, if it was added again while processing. It
// is safe for concurrent use, like every method.
func (q *Queue[K]) DoneAndGet(ctx context.Context, done K) (K, error) {
	q.mu.Lock()
	q.doneLocked(done, false)
	if err := ctx.Err(); err != nil {
		q.leaveLocked(nil) // pass on a key that done may have requeued
		q.mu.Unlock()
		var zero K
		return zero, err
	}
	return q.getLocked(ctx)
}

// getLocked implements Get with q.mu held; it returns with q.mu released.
func (q *Queue[K]) getLocked(ctx context.Context) (K, error) {
	var zero K
	var w *waiter
	for {
		if k, ok := q.takeLocked(); ok {
			q.leaveLocked(w)
			q.mu.Unlock()
			return k, nil
		}
		if q.exhaustedLocked() {
			q.leaveLocked(w)
			q.mu.Unlock()
			return zero, ErrShutDown
		}
		if w != nil {
			if err := ctx.Err(); err != nil {
				q.leaveLocked(w)
				q.mu.Unlock()
				return zero, err
			}
		}
		w = q.sleepLocked(ctx, w)
	}
}

// takeLocked hands out the best ready key, if any.
func (q *Queue[K]) takeLocked() (K, bool) {
	var zero K
	if q.shuttingDown && !q.draining {
		return zero, false
	}
	var now int64
	if len(q.waiting) > 0 {
		now = q.now()
		q.promoteDue(now)
	}
	if q.nready == 0 {
		return zero, false
	}
	i := q.popReady()
	e := &q.entries[i]
	e.procIdx = int32(len(q.processing))
	q.processing = append(q.processing, i)
	if q.draining && q.exhaustedLocked() {
		q.wakeAllLocked() // the last key of the drain: the other Gets end
	}
	if q.m != nil {
		if now == 0 {
			now = q.now()
		}
		e.startedAt = now
		q.m.depthChange(e.readyPrio, -1)
		q.m.latency.Observe(time.Duration(now - e.readyAt).Seconds())
	}
	return e.key, true
}

// sleepLocked parks the calling Get until it is signaled, the earliest
// deadline passes, or ctx is done. It returns the waiter to reuse.
func (q *Queue[K]) sleepLocked(ctx context.Context, w *waiter) *waiter {
	if w == nil {
		if n := len(q.idleWaiters); n > 0 {
			w = q.idleWaiters[n-1]
			q.idleWaiters = q.idleWaiters[:n-1]
		} else {
			w = &waiter{ch: make(chan struct{}, 1)}
		}
	}
	q.waiters = append(q.waiters, w)
	var t Timer
	var tc <-chan time.Time
	if len(q.waiting) > 0 {
		d := q.waiting[0].deadline
		if q.timerHolder == nil || d < q.timerDeadline {
			q.timerHolder, q.timerDeadline = w, d
			t = q.timer(time.Duration(d - q.now()))
			tc = t.C()
		}
	}
	q.mu.Unlock()
	select {
	case <-w.ch:
	case <-tc:
	case <-ctx.Done():
	}
	q.mu.Lock()
	if t != nil {
		t.Stop()
		q.timers = append(q.timers, t)
	}
	if q.timerHolder == w {
		q.timerHolder = nil
	}
	if w.signaled {
		select { // the token is there unless the select above took it
		case <-w.ch:
		default:
		}
		w.signaled = false
	} else {
		q.removeWaiter(w)
	}
	return w
}

func (q *Queue[K]) timer(d time.Duration) Timer {
	if n := len(q.timers); n > 0 {
		t := q.timers[n-1]
		q.timers = q.timers[:n-1]
		t.Reset(d)
		return t
	}
	return q.clock.NewTimer(d)
}

func (q *Queue[K]) removeWaiter(w *waiter) {
	for j, x := range q.waiters {
		if x == w {
			last := len(q.waiters) - 1
			q.waiters[j] = q.waiters[last]
			q.waiters[last] = nil
			q.waiters = q.waiters[:last]
			return
		}
	}
}

// leaveLocked recycles the waiter of a returning Get and passes on work it
// may leave behind: a ready key, or the duty to wait for the next deadline.
func (q *Queue[K]) leaveLocked(w *waiter) {
	if w != nil {
		q.idleWaiters = append(q.idleWaiters, w)
	}
	if len(q.waiters) > 0 && (q.nready > 0 || (len(q.waiting) > 0 && q.timerHolder == nil)) {
		q.signalOne()
	}
}

func (q *Queue[K]) signalOne() {
	n := len(q.waiters)
	if n == 0 {
		return
	}
	w := q.waiters[n-1]
	q.waiters[n-1] = nil
	q.waiters = q.waiters[:n-1]
	w.signaled = true
	w.ch <- struct{}{}
}

// Done marks key as no longer processing. If it was added while processing
// it becomes ready again. Done of a key that is not processing does nothing.
func (q *Queue[K]) Done(key K) {
	q.mu.Lock()
	q.doneLocked(key, true)
	q.mu.Unlock()
}

// doneLocked implements Done. signal says whether to wake a blocked Get for
// a key that Done requeues; DoneAndGet does not, as it takes a key itself
// and then passes on what is left (leaveLocked).
func (q *Queue[K]) doneLocked(key K, signal bool) {
	i, ok := q.index[key]
	if !ok || q.entries[i].procIdx < 0 {
		return
	}
	e := &q.entries[i]
	j, last := e.procIdx, int32(len(q.processing)-1)
	if j != last {
		q.processing[j] = q.processing[last]
		q.entries[q.processing[j]].procIdx = j
	}
	q.processing = q.processing[:last]
	e.procIdx = -1
	var now int64
	if q.m != nil {
		now = q.now()
		q.m.work.Observe(time.Duration(now - e.startedAt).Seconds())
	}
	if e.dirty { // never after ShutDown, which clears it; kept by a drain
		e.dirty = false
		if now == 0 {
			now = q.now()
		}
		q.pushReady(i, e.dirtyPrio, now)
		if signal {
			q.signalOne()
		}
	}
	q.release(i)
	q.checkDrainedLocked()
}

// Len returns the number of keys ready to be handed out now (keys whose delay
// has passed included; keys still waiting and keys being processed excluded).
func (q *Queue[K]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		q.promoteDue(q.now())
	}
	return q.nready
}

// LenByPriority returns how many keys are ready at each priority (the
// priority they were added with, before aging). It walks every tracked key,
// so it is meant for debug pages and tests, not hot paths.
func (q *Queue[K]) LenByPriority() map[int]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		q.promoteDue(q.now())
	}
	out := make(map[int]int)
	for _, i := range q.index {
		if e := &q.entries[i]; e.bucket != noBucket {
			out[e.readyPrio]++
		}
	}
	return out
}

// inflight reports the seconds of unfinished work and of the longest-running
// key, for the metrics collector.
func (q *Queue[K]) inflight() (total, longest float64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.processing) == 0 {
		return 0, 0
	}
	now := q.now()
	for _, i := range q.processing {
		s := time.Duration(now - q.entries[i].startedAt).Seconds()
		total += s
		longest = max(longest, s)
	}
	return total, longest
}
