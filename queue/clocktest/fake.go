// Package clocktest provides a manually driven queue.Clock for tests.
//
// Use Fake when a test drives the queue from one goroutine and wants to move
// time explicitly (Advance). For tests where goroutines block in Get waiting
// for a deadline, testing/synctest with queue.RealClock is usually simpler:
// synctest.Wait reports when every goroutine is durably blocked.
package clocktest

import (
	"sync"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// Fake is a clock that only moves when Advance or Set is called. Timers fire
// (deliver on their channel, capacity 1) when time reaches their deadline.
// It is safe for concurrent use. Its zero value starts at the zero time.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
}

// NewFake returns a Fake clock reading start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires once the fake time reaches Now()+d.
// A timer with d <= 0 fires at once.
func (f *Fake) NewTimer(d time.Duration) queue.Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves time forward by d and fires every timer that is due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.setLocked(f.now.Add(d))
	f.mu.Unlock()
}

// Set moves time to t (which may not be before the current time) and fires
// every timer that is due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.After(f.now) {
		f.setLocked(t)
	}
	f.mu.Unlock()
}

// Armed returns how many timers are armed and not yet fired.
func (f *Fake) Armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDeadline returns the earliest armed timer deadline, or false if none.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best time.Time
	found := false
	for t := range f.timers {
		if !found || t.when.Before(best) {
			best, found = t.when, true
		}
	}
	return best, found
}

func (f *Fake) setLocked(now time.Time) {
	f.now = now
	for t := range f.timers {
		if !t.when.After(now) {
			delete(f.timers, t)
			select {
			case t.c <- now:
			default:
			}
		}
	}
}

type fakeTimer struct {
	f    *Fake
	c    chan time.Time
	when time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, armed := t.f.timers[t]
	delete(t.f.timers, t)
	t.drain()
	return armed
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, armed := t.f.timers[t]
	t.drain()
	t.when = t.f.now.Add(d)
	if d <= 0 {
		delete(t.f.timers, t)
		t.c <- t.f.now
		return armed
	}
	if t.f.timers == nil {
		t.f.timers = make(map[*fakeTimer]struct{})
	}
	t.f.timers[t] = struct{}{}
	return armed
}

func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}
