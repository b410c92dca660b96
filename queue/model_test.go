package queue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/queue/clocktest"
)

// model is a naive reference queue: a map of key states and linear scans.
// It states the documented semantics as plainly as possible; the property
// and fuzz tests check that Queue behaves the same.
type model struct {
	now   int64
	seq   uint64
	aging int64
	keys  map[string]*mkey
}

type mkey struct {
	ready            bool
	prio             int
	readyAt          int64
	seq              uint64
	waiting, backoff bool
	deadline         int64
	waitPrio         int
	wseq             uint64
	proc, dirty      bool
	dirtyPrio        int
}

func (m *model) key(k string) *mkey {
	e := m.keys[k]
	if e == nil {
		e = &mkey{}
		m.keys[k] = e
	}
	return e
}

func (m *model) makeReady(e *mkey, prio int, at int64) {
	e.ready, e.prio, e.readyAt, e.seq = true, prio, at, m.seq
	m.seq++
}

func (m *model) add(k string, prio int, after int64, bypass, backoff bool) {
	e := m.key(k)
	if e.backoff && !backoff {
		if !bypass {
			e.waitPrio = max(e.waitPrio, prio)
			return
		}
		e.backoff, e.waiting = false, false
		prio = max(prio, e.waitPrio)
	}
	if backoff && e.dirty && after > 0 {
		prio = max(prio, e.dirtyPrio)
		e.dirty = false
	}
	if after > 0 {
		switch {
		case e.ready:
			e.prio = max(e.prio, prio)
		case e.dirty:
			e.dirtyPrio = max(e.dirtyPrio, prio)
		case e.waiting:
			e.waitPrio = max(e.waitPrio, prio)
			e.backoff = e.backoff || backoff
			e.deadline = min(e.deadline, m.now+after)
		default:
			e.waiting, e.waitPrio, e.deadline, e.backoff, e.wseq = true, prio, m.now+after, backoff, m.seq
			m.seq++
		}
		return
	}
	if e.waiting {
		prio = max(prio, e.waitPrio)
		e.waiting, e.backoff = false, false
	}
	switch {
	case e.proc:
		if !e.dirty {
			e.dirty, e.dirtyPrio = true, prio
		} else {
			e.dirtyPrio = max(e.dirtyPrio, prio)
		}
	case e.ready:
		e.prio = max(e.prio, prio)
	default:
		m.makeReady(e, prio, m.now)
	}
}

func (m *model) fail(k string, delay int64) {
	prio := 0
	if e := m.keys[k]; e != nil {
		switch {
		case e.proc || e.ready:
			prio = e.prio
		case e.waiting:
			prio = e.waitPrio
		}
	}
	m.add(k, prio, delay, false, true)
}

func (m *model) promote() {
	for {
		var best string
		var b *mkey
		for k, e := range m.keys {
			if e.waiting && e.deadline <= m.now && (b == nil || e.deadline < b.deadline || e.deadline == b.deadline && e.wseq < b.wseq) {
				best, b = k, e
			}
		}
		if b == nil {
			return
		}
		_ = best
		b.waiting, b.backoff = false, false
		if b.proc {
			b.dirty, b.dirtyPrio = true, b.waitPrio
			continue
		}
		m.makeReady(b, b.waitPrio, b.deadline)
	}
}

func (m *model) get() (string, bool) {
	m.promote()
	var best string
	var b *mkey
	for k, e := range m.keys {
		if !e.ready {
			continue
		}
		s, bs := e.readyAt-int64(e.prio)*m.aging, int64(0)
		if b != nil {
			bs = b.readyAt - int64(b.prio)*m.aging
		}
		if b == nil || s < bs || s == bs && e.seq < b.seq {
			best, b = k, e
		}
	}
	if b == nil {
		return "", false
	}
	b.ready, b.proc = false, true
	return best, true
}

func (m *model) done(k string) {
	e := m.keys[k]
	if e == nil || !e.proc {
		return
	}
	e.proc = false
	if e.dirty {
		e.dirty = false
		m.makeReady(e, e.dirtyPrio, m.now)
	}
}

func (m *model) len() int {
	m.promote()
	n := 0
	for _, e := range m.keys {
		if e.ready {
			n++
		}
	}
	return n
}

// fixedLimiter always waits the same delay.
type fixedLimiter struct{ d time.Duration }

func (f fixedLimiter) When(string, time.Time) time.Duration { return f.d }
func (fixedLimiter) Forget(string)                          {}
func (fixedLimiter) Retries(string) int                     { return 0 }

const (
	modelTick  = time.Millisecond
	modelAging = 2 * time.Millisecond
	modelRetry = 2 * time.Millisecond
)

// runOps drives a Queue and the model with operations decoded from data and
// reports the first divergence or broken invariant.
func runOps(data []byte) error {
	clk := clocktest.NewFake(t0)
	q := queue.New(queue.Options[string]{Clock: clk, AgingInterval: modelAging, RateLimiter: fixedLimiter{modelRetry}})
	m := &model{aging: int64(modelAging), keys: map[string]*mkey{}}
	var processing []string
	for n := 0; n+1 < len(data); n += 2 {
		op, arg := data[n]%10, data[n+1]
		k := "k" + strconv.Itoa(int(arg%5))
		var desc string
		switch op {
		case 0:
			desc = "Add " + k
			q.Add(k)
			m.add(k, 0, 0, false, false)
		case 1:
			p := int(arg/5%7) - 3
			desc = fmt.Sprintf("AddWithPriority %s %d", k, p)
			q.AddWithPriority(k, p)
			m.add(k, p, 0, false, false)
		case 2:
			d := time.Duration(int(arg/5%10)-2) * modelTick
			desc = fmt.Sprintf("AddAfter %s %v", k, d)
			q.AddAfter(k, d)
			m.add(k, 0, int64(d), false, false)
		case 3:
			desc = "TryGet"
			got, ok := q.TryGet()
			want, wok := m.get()
			if got != want || ok != wok {
				return fmt.Errorf("op %d TryGet = %q,%v; model %q,%v", n/2, got, ok, want, wok)
			}
			if ok {
				processing = append(processing, got)
			}
		case 4:
			if len(processing) == 0 {
				continue
			}
			j := int(arg) % len(processing)
			k = processing[j]
			processing = append(processing[:j], processing[j+1:]...)
			desc = "Done " + k
			q.Done(k)
			m.done(k)
		case 5:
			d := time.Duration(arg%4) * modelTick
			desc = fmt.Sprintf("Advance %v", d)
			clk.Advance(d)
			m.now += int64(d)
		case 6:
			if len(processing) > 0 && arg%2 == 0 {
				k = processing[int(arg/2)%len(processing)]
			}
			desc = "AddRateLimited " + k
			q.AddRateLimited(k)
			m.fail(k, int64(modelRetry))
		case 7:
			desc = "Add bypass " + k
			q.AddWith(k, queue.AddOptions{BypassBackoff: true})
			m.add(k, 0, 0, true, false)
		case 8:
			desc = "Len"
			if got, want := q.Len(), m.len(); got != want {
				return fmt.Errorf("op %d Len = %d, model %d", n/2, got, want)
			}
		case 9:
			// DoneAndGet is Done then Get. With nothing ready it would block
			// (the fake clock does not move), so then it runs on a cancelled
			// context and must still do the Done.
			if len(processing) > 0 {
				j := int(arg) % len(processing)
				k = processing[j]
				processing = append(processing[:j], processing[j+1:]...)
			}
			desc = "DoneAndGet " + k
			m.done(k)
			want, wok := m.get()
			ctx := context.Background()
			if !wok {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			got, err := q.DoneAndGet(ctx, k)
			if ok := err == nil; got != want || ok != wok || !ok && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("op %d DoneAndGet %s = %q,%v; model %q,%v", n/2, k, got, err, want, wok)
			}
			if wok {
				processing = append(processing, got)
			} else {
				q.Len() // m.get promoted due keys; the cancelled call did not
			}
		}
		if err := q.CheckInvariants(); err != nil {
			return fmt.Errorf("op %d (%s): %w", n/2, desc, err)
		}
	}
	// Everything left must come out, in the model's order.
	for _, k := range processing {
		q.Done(k)
		m.done(k)
	}
	clk.Advance(time.Hour)
	m.now += int64(time.Hour)
	for {
		got, ok := q.TryGet()
		want, wok := m.get()
		if got != want || ok != wok {
			return fmt.Errorf("final drain: TryGet = %q,%v; model %q,%v", got, ok, want, wok)
		}
		if !ok {
			return q.CheckInvariants()
		}
		q.Done(got)
		m.done(got)
	}
}

// seed returns the seed for randomized tests: SKIFF_TEST_SEED if set, else a
// fresh one. It is logged so a failure can be replayed.
func seed(t *testing.T) uint64 {
	t.Helper()
	s := rand.Uint64()
	if v := os.Getenv("SKIFF_TEST_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SKIFF_TEST_SEED: %v", err)
		}
	}
	t.Logf("seed %d (set SKIFF_TEST_SEED to replay)", s)
	return s
}

func TestQueueMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(seed(t), 0))
	for run := range 500 {
		data := make([]byte, 2*(1+r.IntN(200)))
		for i := range data {
			data[i] = byte(r.UintN(256))
		}
		if err := runOps(data); err != nil {
			t.Fatalf("run %d: %v\nops: %v", run, err, data)
		}
	}
}

func FuzzQueue(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 3, 0, 4, 0, 3, 0})
	f.Add([]byte{1, 7, 1, 33, 2, 4, 5, 3, 8, 0, 3, 0, 3, 0})
	f.Add([]byte{0, 0, 3, 0, 6, 0, 0, 0, 7, 0, 4, 0, 5, 2, 3, 0})
	f.Add([]byte{2, 49, 2, 24, 3, 0, 5, 3, 5, 3, 5, 3, 3, 0, 3, 0})
	f.Add([]byte{0, 2, 3, 0, 6, 0, 6, 1, 0, 2, 4, 0, 8, 0, 5, 2, 3, 0})
	f.Add([]byte{0, 1, 0, 2, 3, 0, 0, 1, 9, 0, 9, 1, 9, 0, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := runOps(data); err != nil {
			t.Fatal(err)
		}
	})
}
