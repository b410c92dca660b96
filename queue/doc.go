// Package queue is Skiff's work queue: one generic Queue[K] that controllers
// feed with keys and drain with workers.
//
// Features:
//
//   - Fair and stingy: a key is in the queue at most once (adds are
//     deduplicated) and is never handed to two workers at once; a key added
//     while it is processed is requeued when the worker calls Done.
//   - Delays: AddAfter(k, d); for a key waiting, the earliest deadline wins.
//     No timer goroutine: a blocked Get waits on the clock's timer for the
//     earliest deadline.
//   - Rate limiting: AddRateLimited(k) and Fail(k, err) wait for a
//     RateLimiter[K] (When, Forget, Retries) with time passed in: per-key
//     Exponential, global TokenBucket, MaxOf, and FailureAware, whose backoff
//     grows only with failures that happen after the previous backoff ended.
//     A plain Add does not pull a key out of its backoff unless the caller
//     asks (AddOptions.BypassBackoff), so unrelated events neither make a
//     failing key run early nor inflate its backoff
//     (kubernetes/kubernetes#132805).
//   - Priorities without starvation: AddWithPriority(k, p), higher first; a
//     ready key's effective priority grows by one every
//     Options.AgingInterval it waits, which bounds how long a low-priority
//     key can be overtaken (see Options.AgingInterval).
//   - Retry budget and dead letters: with Options.MaxFailures = N, the N-th
//     failure moves a key to a dead-letter set that can be listed
//     (DeadLetters: attempts, last error, first and last failure time) and
//     replayed (Replay, ReplayAll); DeadLetterChanges signals every
//     change of the set, and Restore puts a key back into it (dead letters
//     reloaded from a persisted store, see package deadletter).
//   - Cancellation and shutdown: Get(ctx) honours ctx; ShutDown and
//     ShutDownWithDrain are idempotent. A drain loses nothing that was
//     ready or pending a requeue when it began: Get hands it all out,
//     including keys requeued by Done during the drain, and returns
//     ErrShutDown only when no key can become ready again; ShutDown ends a
//     drain early (shutdown.go lists the rules). The queue starts no
//     goroutine, so there is nothing to join.
//   - Injected time: Options.Clock (RealClock, or clocktest.Fake in tests).
//   - Metrics: optional Prometheus metrics with client-go's workqueue_* names
//     plus workqueue_depth_by_priority and workqueue_dead_letters.
//
// Performance: one mutex; keys live in a slice of entries recycled through a
// free list, so steady-state adds and gets allocate nothing. Ready keys are
// kept in one FIFO list per priority, linked through the entries, with only
// the list heads in a heap: with a single priority in use, Add and Get make no
// comparisons. Waiting keys are in a binary heap by deadline whose slots hold
// copies of the deadlines. With RealClock the queue reads only the monotonic
// clock. Blocked Gets are woken one at a
// time through per-waiter channels, and only when one is blocked.
//
// Typical worker loop; DoneAndGet marks a key done and takes the next one
// with one lock acquisition instead of two (Done, then Get):
//
//	key, err := q.Get(ctx)
//	for err == nil {
//		if err := reconcile(key); err != nil {
//			q.Fail(key, err)
//		} else {
//			q.Forget(key)
//		}
//		key, err = q.DoneAndGet(ctx, key)
//	}
//	// err: ctx done or queue shut down; the last key was marked done.
package queue
