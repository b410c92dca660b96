package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// ErrAlreadyStarted is returned by a second call to Run.
var ErrAlreadyStarted = errors.New("controller: Run called twice")

// Run starts the workers and resizes the pool every SizingInterval until ctx
// ends. Then, in this order: workers stop taking keys; in-flight reconciles
// get ShutdownTimeout to finish, after which their contexts are cancelled;
// Run waits for every worker to return; a queue the controller created is
// shut down. Run returns nil after a clean shutdown, or an error saying how
// many reconciles had to be cancelled.
func (c *Controller[K]) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	// Reconciles outlive ctx by up to ShutdownTimeout, so they get their own
	// context, cancelled only when that time is up.
	recCtx, cancelReconciles := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReconciles()
	var wg sync.WaitGroup
	resize := func(n int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		for len(c.workers) < n {
			wctx, cancel := context.WithCancel(ctx)
			c.workers = append(c.workers, cancel)
			wg.Go(func() { c.work(wctx, recCtx) })
		}
		for len(c.workers) > n {
			last := len(c.workers) - 1
			c.workers[last]() // the worker exits after its current reconcile
			c.workers = c.workers[:last]
		}
		if c.m != nil {
			c.m.maxActive.WithLabelValues(c.name).Set(float64(len(c.workers)))
		}
	}
	// The dead-letter syncer outlives ctx until the workers are done, so
	// keys dead-lettered while draining are still persisted.
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	var syncWG sync.WaitGroup
	defer func() { stopSync(); syncWG.Wait() }()
	if c.dl != nil {
		syncWG.Go(func() { c.dl.Run(syncCtx) })
		c.waitDeadLettersLoaded(ctx)
	}

	c.mu.Lock()
	c.resize = resize
	c.lastBusy = c.clock.Now()
	initial := c.sizer.Min
	c.mu.Unlock()
	resize(initial)

	timer := c.clock.NewTimer(c.interval)
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-timer.C():
			c.mu.Lock()
			n := c.sizer.Next(c.sampleLocked())
			c.mu.Unlock()
			resize(n)
			timer.Reset(c.interval)
		}
	}
	timer.Stop()

	c.mu.Lock()
	c.resize = nil
	c.workers = nil // their contexts derive from ctx and are already done
	c.mu.Unlock()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var err error
	deadline := c.clock.NewTimer(c.shutdown)
	select {
	case <-done:
	case <-deadline.C():
		_, active := c.Workers()
		cancelReconciles()
		<-done
		err = fmt.Errorf("controller %s: %d reconciles still running after the %v shutdown timeout were cancelled", c.name, active, c.shutdown)
	}
	deadline.Stop()
	stopSync()
	syncWG.Wait()
	if c.ownsQueue {
		c.q.ShutDown()
	}
	return err
}

// deadLetterLoadWait bounds how long Run waits for the persisted dead
// letters before it starts the workers anyway.
const deadLetterLoadWait = 30 * time.Second

// waitDeadLettersLoaded waits until the syncer has loaded the persisted
// dead letters, so a worker never reconciles a key that is dead elsewhere.
func (c *Controller[K]) waitDeadLettersLoaded(ctx context.Context) {
	t := c.clock.NewTimer(deadLetterLoadWait)
	defer t.Stop()
	select {
	case <-c.dl.Loaded():
	case <-ctx.Done():
	case <-t.C():
		c.log.Error("persisted dead letters not loaded; starting the workers anyway", "waited", deadLetterLoadWait)
	}
}

// sampleLocked closes the current sizing interval.
func (c *Controller[K]) sampleLocked() Sample {
	now := c.clock.Now()
	c.busyInt += float64(c.active) * now.Sub(c.lastBusy).Seconds()
	interval := now.Sub(c.lastBusy)
	if interval <= 0 {
		interval = c.interval
	}
	s := Sample{
		Workers:   len(c.workers),
		Busy:      c.busyInt / interval.Seconds(),
		Depth:     c.q.Len(),
		Completed: c.completed,
		Interval:  interval,
	}
	c.busyInt, c.completed, c.lastBusy = 0, 0, now
	return s
}

// setActive records a worker starting (+1) or finishing (-1) a reconcile.
func (c *Controller[K]) setActive(delta int) {
	now := c.clock.Now()
	c.mu.Lock()
	c.busyInt += float64(c.active) * now.Sub(c.lastBusy).Seconds()
	c.lastBusy = now
	c.active += delta
	if delta < 0 {
		c.completed++
	}
	active := c.active
	c.mu.Unlock()
	if c.m != nil {
		c.m.active.WithLabelValues(c.name).Set(float64(active))
	}
}

// restoreRecheck is how soon a worker looks again at a key it did not
// reconcile because its persisted dead letter was about to be restored.
const restoreRecheck = 200 * time.Millisecond

// work takes keys until getCtx ends (the worker is retired or the
// controller stops); a key taken is always reconciled and marked done.
func (c *Controller[K]) work(getCtx, recCtx context.Context) {
	key, err := c.q.Get(getCtx)
	for err == nil {
		c.process(recCtx, key)
		if getCtx.Err() != nil {
			c.q.Done(key)
			return
		}
		key, err = c.q.DoneAndGet(getCtx, key) // one lock round trip instead of two
	}
}

// process reconciles key once and tells the queue what comes next. It runs
// before Done, so adds that arrived meanwhile fold into a retry.
func (c *Controller[K]) process(ctx context.Context, key K) {
	if c.gate != nil {
		gctx, release, ok := c.gate.Admit(ctx, key)
		if !ok {
			c.q.Forget(key)
			return
		}
		defer release() // after the result is applied, before the caller's Done
		ctx = gctx
	}
	if c.dl != nil && c.dl.Restorable(key) {
		// Its persisted dead letter (the previous owner's, or from before
		// a restart) is about to be restored: it used up its budget. Look
		// again shortly in case the store's pass ran while this worker held
		// the key (Restore refuses a key being processed).
		c.q.Forget(key)
		c.q.AddWith(key, queue.AddOptions{After: restoreRecheck, BypassBackoff: true})
		c.dl.Finished(key, false)
		return
	}
	c.setActive(1)
	start := c.clock.Now()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	res, err := c.reconcile(ctx, key)
	elapsed := c.clock.Now().Sub(start)
	c.setActive(-1)
	c.stats.reconciles.Add(1)

	class, after := classify(err)
	result := "success"
	switch class {
	case classNone:
		c.q.Forget(key)
		if res.RequeueAfter > 0 || res.Requeue {
			delay := res.RequeueAfter
			if c.requeueLim != nil {
				delay = max(delay, c.requeueLim.When(key, c.clock.Now()))
			}
			c.q.AddWith(key, queue.AddOptions{After: delay, Priority: res.Priority, BypassBackoff: true})
			c.stats.requeues.Add(1)
			result = "requeue"
			if res.RequeueAfter > 0 {
				result = "requeue_after"
			}
		}
	case classTransient:
		c.q.Fail(key, err)
		c.stats.errors.Add(1)
		result = "error"
		c.log.Error("reconcile failed; retrying with backoff", "key", key, "retries", c.q.Retries(key), "err", err)
	case classRetryAfter:
		c.q.AddWith(key, queue.AddOptions{After: after, Priority: res.Priority, BypassBackoff: true})
		c.stats.errors.Add(1)
		result = "error"
		c.log.Info("reconcile asked to retry later", "key", key, "after", after, "err", err)
	case classTerminal:
		c.q.Forget(key)
		c.stats.errors.Add(1)
		c.stats.terminal.Add(1)
		result = "error"
		c.log.Error("reconcile failed terminally; not retrying", "key", key, "err", err)
	}
	if c.dl != nil {
		c.dl.Finished(key, class == classNone)
	}
	if c.m != nil {
		c.m.total.WithLabelValues(c.name, result).Inc()
		c.m.duration.WithLabelValues(c.name).Observe(elapsed.Seconds())
		if class != classNone {
			c.m.errors.WithLabelValues(c.name).Inc()
		}
		if class == classTerminal {
			c.m.terminal.WithLabelValues(c.name).Inc()
		}
	}
}

// reconcile calls the Reconciler, turning a panic into a PanicError.
func (c *Controller[K]) reconcile(ctx context.Context, key K) (res Result, err error) {
	k, id := fmt.Sprint(key), newReconcileID()
	ctx, span := c.startReconcileSpan(ctx, k, id)
	defer func() { endReconcileSpan(span, res, err) }() // after the recover below
	defer func() {
		if v := recover(); v != nil {
			c.stats.panics.Add(1)
			if c.m != nil {
				c.m.panics.WithLabelValues(c.name).Inc()
			}
			err = &PanicError{Value: v, Stack: debug.Stack()}
			res = Result{}
		}
	}()
	return c.rec.Reconcile(WithLogger(ctx, c.log.With("key", k, "reconcileID", id)), key)
}

// Stats is a snapshot of a controller's counters since New.
type Stats struct {
	Reconciles, Errors, Terminal, Panics, Requeues int64
	Workers, Active                                int
	DeadLetters                                    int
}

// Stats returns the controller's counters, pool size and dead-letter count.
func (c *Controller[K]) Stats() Stats {
	size, active := c.Workers()
	return Stats{
		Reconciles: c.stats.reconciles.Load(), Errors: c.stats.errors.Load(), Terminal: c.stats.terminal.Load(),
		Panics: c.stats.panics.Load(), Requeues: c.stats.requeues.Load(),
		Workers: size, Active: active, DeadLetters: len(c.q.DeadLetters()),
	}
}
