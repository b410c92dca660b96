package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/queue"
)

// ErrCoalescerStopped is returned by MergePatch once the Coalescer's Run has
// returned.
var ErrCoalescerStopped = errors.New("client: coalescer stopped")

// CoalesceOptions configure a Coalescer. The zero value is valid; every field
// states its default.
type CoalesceOptions struct {
	// Window is how long a change waits for others to the same object
	// before they are sent together, counted from the first change of a
	// batch. Default (≤ 0): 10ms.
	Window time.Duration
	// MaxBatch is the most changes one request carries; an object with
	// MaxBatch changes waiting is sent at once. Default (≤ 0): 100.
	MaxBatch int
	// FieldManager names the field manager of the requests. Default: none
	// (the server's default for the client's user agent).
	FieldManager string
	// Clock is the source of time. Default: queue.RealClock{}.
	Clock queue.Clock
}

// Coalescer merges JSON merge patches to the same object made within a
// window (status patches from many goroutines, say) into one PATCH request:
//
//	co := client.NewCoalescer(c, client.CoalesceOptions{Window: 20 * time.Millisecond})
//	go co.Run(ctx)                                  // the owner runs it and waits for it
//	err := co.MergePatch(ctx, cm, []byte(`{"data":{"a":"1"}}`))
//
// Guarantees:
//
//   - Order per object: changes to one object (one Go type, namespace,
//     name and subresource) are applied in the order their MergePatch calls
//     entered the Coalescer; at most one request per object is in flight,
//     and changes made while it is in flight go in the next one. Different
//     objects are sent concurrently.
//   - Composition: a request carries the composition of its changes
//     (ComposeMergePatches, later keys override earlier ones); a change that
//     does not compose with the ones before it starts the next request.
//   - Results: every MergePatch returns the result of the request that
//     carried its change (the server's error, if any, reaches every waiter
//     of that request), and on success updates obj with the server's answer.
//   - Flushing: a batch is sent when its window ends, when it reaches
//     MaxBatch changes, or when Run's context ends (Run then sends every
//     waiting batch at once and returns after the requests in flight end).
//   - Cancellation: a caller whose ctx ends before its change was sent
//     withdraws the change and gets ctx.Err(); once sent, it gets ctx.Err()
//     and the request continues while any other waiter of it still waits
//     (it is cancelled when all of them have given up).
//
// Writes go through the Client, so read-your-own-writes and metrics apply.
// MergePatch is safe for concurrent use; it blocks until Run sends its
// change, so Run must be running (it may start after the first calls).
type Coalescer struct {
	send     func(ctx context.Context, obj Object, sub string, patch []byte) error
	window   time.Duration
	maxBatch int
	clock    queue.Clock
	wake     chan struct{} // capacity 1: a batch may have become due or ready
	inflight sync.WaitGroup

	mu      sync.Mutex
	state   runState
	objects map[coalesceKey]*objectBatch
}

type runState uint8

const (
	notStarted runState = iota
	running
	stopped
)

// coalesceKey names one object's patch target.
type coalesceKey struct {
	typ reflect.Type
	key cache.ObjectKey
	sub string
}

// objectBatch holds the changes to one object not yet sent, and whether a
// request for it is in flight. Invariant: an objectBatch is in
// Coalescer.objects iff it has changes or a request in flight.
type objectBatch struct {
	changes  []*change // in arrival order
	due      time.Time // when changes[0]'s window ends
	inFlight bool
}

type change struct {
	ctx    context.Context
	patch  map[string]any
	sent   bool         // under Coalescer.mu: carried by a request
	result chan outcome // capacity 1
}

type outcome struct {
	obj Object // the server's answer, shared read-only by the waiters
	err error
}

// NewCoalescer returns a Coalescer writing through c. It starts nothing:
// the owner calls Run.
func NewCoalescer(c *Client, o CoalesceOptions) *Coalescer {
	if c == nil {
		panic("client: NewCoalescer with a nil Client")
	}
	wo := writeOptions{fieldManager: o.FieldManager}
	return newCoalescer(func(ctx context.Context, obj Object, sub string, patch []byte) error {
		return c.sendPatch(ctx, obj, sub, types.MergePatchType, patch, wo)
	}, o)
}

// newCoalescer takes the request as a function so unit tests can run
// without a server.
func newCoalescer(send func(ctx context.Context, obj Object, sub string, patch []byte) error, o CoalesceOptions) *Coalescer {
	co := &Coalescer{send: send, window: o.Window, maxBatch: o.MaxBatch, clock: o.Clock,
		wake: make(chan struct{}, 1), objects: map[coalesceKey]*objectBatch{}}
	if co.window <= 0 {
		co.window = 10 * time.Millisecond
	}
	if co.maxBatch <= 0 {
		co.maxBatch = 100
	}
	if co.clock == nil {
		co.clock = queue.RealClock{}
	}
	return co
}

// MergePatch applies patch, a JSON merge patch (a JSON object), to obj,
// together with the other changes to the same object made within the
// window, and returns the result of the request that carried it. Only obj's
// Go type, namespace and name are read during the call; on success obj is
// set to the server's answer. The caller must not use obj concurrently.
func (co *Coalescer) MergePatch(ctx context.Context, obj Object, patch []byte) error {
	return co.mergePatch(ctx, obj, "", patch)
}

// MergePatchStatus is MergePatch on obj's status subresource.
func (co *Coalescer) MergePatchStatus(ctx context.Context, obj Object, patch []byte) error {
	return co.mergePatch(ctx, obj, "status", patch)
}

func (co *Coalescer) mergePatch(ctx context.Context, obj Object, sub string, patch []byte) error {
	k := coalesceKey{typ: reflect.TypeOf(obj), key: cache.KeyOf(obj), sub: sub}
	p, err := decodePatchObject(patch)
	if err != nil {
		return fmt.Errorf("client: coalesce merge patch of %s: %w", k.key, err)
	}
	ch := &change{ctx: ctx, patch: p, result: make(chan outcome, 1)}
	co.mu.Lock()
	if co.state == stopped {
		co.mu.Unlock()
		return ErrCoalescerStopped
	}
	b := co.objects[k]
	if b == nil {
		b = &objectBatch{}
		co.objects[k] = b
	}
	now := co.clock.Now()
	if len(b.changes) == 0 {
		b.due = now.Add(co.window)
	}
	b.changes = append(b.changes, ch)
	if len(b.changes) >= co.maxBatch {
		b.due = now
	}
	co.mu.Unlock()
	co.poke()

	select {
	case r := <-ch.result:
		if r.err != nil {
			return r.err
		}
		reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(r.obj.DeepCopyObject()).Elem())
		return nil
	case <-ctx.Done():
		co.mu.Lock()
		withdrawn := !ch.sent
		if withdrawn {
			co.withdrawLocked(k, ch)
		}
		co.mu.Unlock()
		if withdrawn {
			co.poke() // a stopping Run may be waiting for this object to empty
		}
		return ctx.Err()
	}
}

// withdrawLocked removes a change not yet sent.
func (co *Coalescer) withdrawLocked(k coalesceKey, ch *change) {
	b := co.objects[k]
	for i, c := range b.changes {
		if c == ch {
			b.changes = append(b.changes[:i], b.changes[i+1:]...)
			break
		}
	}
	if len(b.changes) == 0 && !b.inFlight {
		delete(co.objects, k)
	}
}

func (co *Coalescer) poke() {
	select {
	case co.wake <- struct{}{}:
	default:
	}
}

// Run sends batches until ctx ends, then sends every batch still waiting,
// waits for all requests in flight, and returns nil. Requests are not
// cancelled by ctx (see the Coalescer's cancellation rule). Run may be
// called once; a second call returns an error.
func (co *Coalescer) Run(ctx context.Context) error {
	co.mu.Lock()
	if co.state != notStarted {
		co.mu.Unlock()
		return errors.New("client: Coalescer.Run called twice")
	}
	co.state = running
	co.mu.Unlock()
	reqCtx := context.WithoutCancel(ctx)
	timer := co.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		now := co.clock.Now()
		if next, ok := co.flush(reqCtx, now, false); ok {
			timer.Reset(next.Sub(now))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
		case <-timer.C():
		case <-co.wake:
		}
	}
	co.mu.Lock()
	co.state = stopped
	co.mu.Unlock()
	for {
		co.flush(reqCtx, co.clock.Now(), true)
		co.mu.Lock()
		left := len(co.objects)
		co.mu.Unlock()
		if left == 0 {
			break
		}
		<-co.wake // a request ended (its object may have more to send) or a waiter withdrew
	}
	co.inflight.Wait()
	return nil
}

// flush starts a request for every object whose batch is due (every one if
// all) and has none in flight, and returns the earliest due time of the
// batches left waiting.
func (co *Coalescer) flush(ctx context.Context, now time.Time, all bool) (next time.Time, ok bool) {
	co.mu.Lock()
	defer co.mu.Unlock()
	for k, b := range co.objects {
		if b.inFlight || len(b.changes) == 0 {
			continue
		}
		if !all && now.Before(b.due) {
			if !ok || b.due.Before(next) {
				next, ok = b.due, true
			}
			continue
		}
		take, patch := co.takeLocked(b)
		b.inFlight = true
		co.inflight.Go(func() { co.request(ctx, k, take, patch) })
	}
	return next, ok
}

// takeLocked removes from b the longest prefix of its changes (at most
// MaxBatch) that composes into one merge patch, and marks them sent.
func (co *Coalescer) takeLocked(b *objectBatch) ([]*change, map[string]any) {
	patch := b.changes[0].patch
	n := 1
	for ; n < len(b.changes) && n < co.maxBatch; n++ {
		c, err := composeObjects(patch, b.changes[n].patch)
		if err != nil {
			break
		}
		patch = c
	}
	take := b.changes[:n:n]
	for _, c := range take {
		c.sent = true
	}
	b.changes = append([]*change(nil), b.changes[n:]...)
	// What is left has waited its window already (or did not compose):
	// it goes as soon as this request ends.
	b.due = co.clock.Now()
	return take, patch
}

// request sends one batch and hands its outcome to every waiter.
func (co *Coalescer) request(ctx context.Context, k coalesceKey, waiters []*change, patch map[string]any) {
	reqCtx, cancel := context.WithCancel(ctx)
	var left atomic.Int64
	left.Store(int64(len(waiters)))
	stops := make([]func() bool, len(waiters))
	for i, w := range waiters {
		stops[i] = context.AfterFunc(w.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	obj := reflect.New(k.typ.Elem()).Interface().(Object)
	obj.SetNamespace(k.key.Namespace)
	obj.SetName(k.key.Name)
	var err error
	if data, merr := json.Marshal(patch); merr != nil {
		err = fmt.Errorf("client: encode coalesced patch of %s: %w", k.key, merr)
	} else {
		err = co.send(reqCtx, obj, k.sub, data)
	}
	for _, stop := range stops {
		stop()
	}
	cancel()
	for _, w := range waiters {
		w.result <- outcome{obj: obj, err: err}
	}
	co.mu.Lock()
	b := co.objects[k]
	b.inFlight = false
	if len(b.changes) == 0 {
		delete(co.objects, k)
	}
	co.mu.Unlock()
	co.poke()
}
