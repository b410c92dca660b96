package queue_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/queue/clocktest"
)

// deadModel adds the retry budget and the dead-letter set to model: the
// documented semantics of Fail, Forget, Replay, ReplayAll and Restore.
type deadModel struct {
	*model
	max   int
	fails map[string]int
	dead  map[string]int    // key -> attempts recorded
	order map[string]uint64 // key -> when it became dead
	seq   uint64
}

func (d *deadModel) kill(k string, attempts int) {
	d.dead[k] = attempts
	d.order[k] = d.seq
	d.seq++
}

func (d *deadModel) add(k string) {
	if _, ok := d.dead[k]; ok {
		return
	}
	d.model.add(k, 0, 0, false, false)
}

// unschedule takes k out of the ready and waiting sets and drops a pending
// requeue, as dead-lettering does.
func (d *deadModel) unschedule(k string) {
	if e := d.keys[k]; e != nil {
		e.ready, e.waiting, e.backoff, e.dirty = false, false, false, false
	}
}

func (d *deadModel) fail(k string) {
	if _, ok := d.dead[k]; ok {
		return
	}
	d.fails[k]++
	if d.fails[k] >= d.max {
		d.kill(k, d.fails[k])
		delete(d.fails, k)
		d.unschedule(k)
		return
	}
	d.model.fail(k, int64(modelRetry))
}

func (d *deadModel) restore(k string, attempts int) bool {
	if _, ok := d.dead[k]; ok {
		return false
	}
	if e := d.keys[k]; e != nil && e.proc {
		return false
	}
	d.unschedule(k)
	delete(d.fails, k)
	d.kill(k, attempts)
	return true
}

func (d *deadModel) replay(k string) bool {
	if _, ok := d.dead[k]; !ok {
		return false
	}
	delete(d.dead, k)
	d.model.add(k, 0, 0, false, false)
	return true
}

// runDeadOps drives a queue with a retry budget of 2 and deadModel with
// operations decoded from data, checking after each one the dead set, the
// invariants, and that DeadLetterChanges signalled exactly when the dead
// set changed.
func runDeadOps(data []byte) error {
	clk := clocktest.NewFake(t0)
	q := queue.New(queue.Options[string]{Clock: clk, AgingInterval: modelAging, RateLimiter: fixedLimiter{modelRetry}, MaxFailures: 2})
	m := &deadModel{model: &model{aging: int64(modelAging), keys: map[string]*mkey{}}, max: 2, fails: map[string]int{}, dead: map[string]int{}, order: map[string]uint64{}}
	var processing []string
	boom := errors.New("boom")
	for n := 0; n+1 < len(data); n += 2 {
		op, arg := data[n]%9, data[n+1]
		k := "k" + strconv.Itoa(int(arg%4))
		before := maps.Clone(m.dead)
		var desc string
		switch op {
		case 0:
			desc = "Add " + k
			q.Add(k)
			m.add(k)
		case 1:
			desc = "TryGet"
			got, ok := q.TryGet()
			want, wok := m.get()
			if got != want || ok != wok {
				return fmt.Errorf("op %d TryGet = %q,%v; model %q,%v", n/2, got, ok, want, wok)
			}
			if ok {
				processing = append(processing, got)
			}
		case 2:
			if len(processing) == 0 {
				continue
			}
			j := int(arg) % len(processing)
			k = processing[j]
			processing = slices.Delete(processing, j, j+1)
			desc = "Done " + k
			q.Done(k)
			m.done(k)
		case 3:
			if len(processing) > 0 && arg%2 == 0 {
				k = processing[int(arg/2)%len(processing)]
			}
			desc = "Fail " + k
			q.Fail(k, boom)
			m.fail(k)
		case 4:
			d := time.Duration(arg%4) * modelTick
			desc = fmt.Sprintf("Advance %v", d)
			clk.Advance(d)
			m.now += int64(d)
		case 5:
			attempts := int(arg/4%5) + 1
			desc = fmt.Sprintf("Restore %s %d", k, attempts)
			got := q.Restore(queue.DeadLetter[string]{Key: k, Attempts: attempts, LastError: boom})
			if want := m.restore(k, attempts); got != want {
				return fmt.Errorf("op %d %s = %v, model %v", n/2, desc, got, want)
			}
		case 6:
			desc = "Replay " + k
			if got, want := q.Replay(k), m.replay(k); got != want {
				return fmt.Errorf("op %d Replay %s = %v, model %v", n/2, k, got, want)
			}
		case 7:
			desc = "ReplayAll"
			want := 0
			order := slices.SortedFunc(maps.Keys(m.dead), func(a, b string) int { return cmp.Compare(m.order[a], m.order[b]) })
			for _, dk := range order {
				m.replay(dk)
				want++
			}
			if got := q.ReplayAll(); got != want {
				return fmt.Errorf("op %d ReplayAll = %d, model %d", n/2, got, want)
			}
		case 8:
			desc = "Forget " + k
			q.Forget(k)
			delete(m.fails, k)
		}
		if err := q.CheckInvariants(); err != nil {
			return fmt.Errorf("op %d (%s): %w", n/2, desc, err)
		}
		got := map[string]int{}
		for _, d := range q.DeadLetters() {
			got[d.Key] = d.Attempts
		}
		if !maps.Equal(got, m.dead) {
			return fmt.Errorf("op %d (%s): DeadLetters %v, model %v", n/2, desc, got, m.dead)
		}
		changed := !maps.Equal(before, m.dead)
		select {
		case <-q.DeadLetterChanges():
			if !changed {
				return fmt.Errorf("op %d (%s): DeadLetterChanges signalled, dead set unchanged", n/2, desc)
			}
		default:
			if changed {
				return fmt.Errorf("op %d (%s): dead set changed %v -> %v, no signal", n/2, desc, before, m.dead)
			}
		}
	}
	// What is not dead comes out, in the model's order; the dead never do.
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
		if _, dead := m.dead[got]; dead {
			return fmt.Errorf("final drain: dead key %q handed out", got)
		}
		q.Done(got)
		m.done(got)
	}
}

func TestDeadLettersMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(seed(t), 1))
	for run := range 500 {
		data := make([]byte, 2*(1+r.IntN(150)))
		for i := range data {
			data[i] = byte(r.UintN(256))
		}
		if err := runDeadOps(data); err != nil {
			t.Fatalf("run %d: %v\nops: %v", run, err, data)
		}
	}
}

func FuzzDeadLetters(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 3, 0, 2, 0, 4, 3, 1, 0, 3, 0, 2, 0})
	f.Add([]byte{0, 1, 5, 1, 1, 0, 6, 1, 1, 0, 5, 1, 2, 0, 5, 1})
	f.Add([]byte{0, 2, 3, 2, 3, 2, 7, 0, 1, 0, 8, 2, 3, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := runDeadOps(data); err != nil {
			t.Fatal(err)
		}
	})
}
