package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// TestDoneAndGetTable checks DoneAndGet against the Done-then-Get contract.
// Steps use TryGet/Add/AddWithPriority to set up; "next" calls DoneAndGet on
// a live context and expects a key (the call would block otherwise, so it has
// a generous timeout), "cancelled" and "shutdown" expect the error results.
func TestDoneAndGetTable(t *testing.T) {
	type dstep struct {
		op   string // add, prio, get, next, cancelled, shutdown, drain, len
		key  string // the key added, taken, or passed as done
		n    int    // priority or expected length
		want string // next: the key expected back
		err  error  // cancelled, shutdown: the error expected
	}
	tests := []struct {
		name   string
		strict bool
		steps  []dstep
	}{
		{name: "hands out the next key", steps: []dstep{
			{op: "add", key: "a"}, {op: "add", key: "b"}, {op: "get", key: "a"},
			{op: "next", key: "a", want: "b"}, {op: "len", n: 0}, {op: "next", key: "b", want: "", err: context.DeadlineExceeded},
		}},
		{name: "requeues a key added while processing and may return it", steps: []dstep{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "a"},
			{op: "next", key: "a", want: "a"}, {op: "len", n: 0},
		}},
		{name: "a requeued key takes its place in order", steps: []dstep{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "b"}, {op: "add", key: "a"},
			{op: "next", key: "a", want: "b"}, {op: "drain", want: "a"},
		}},
		{name: "a requeued key keeps its raised priority", strict: true, steps: []dstep{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "b"}, {op: "prio", key: "a", n: 5},
			{op: "next", key: "a", want: "a"}, {op: "next", key: "a", want: "b"},
		}},
		{name: "done of a key not processing is ignored", steps: []dstep{
			{op: "add", key: "a"}, {op: "next", key: "zzz", want: "a"}, {op: "len", n: 0},
		}},
		{name: "cancelled context still marks done", steps: []dstep{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "a"}, {op: "add", key: "b"},
			{op: "cancelled", key: "a", err: context.Canceled}, {op: "len", n: 2}, {op: "drain", want: "b,a"},
		}},
		{name: "after shutdown marks done and reports it", steps: []dstep{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "b"}, {op: "shutdown"},
			{op: "next", key: "a", err: queue.ErrShutDown}, {op: "len", n: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := queue.Options[string]{}
			if tt.strict {
				o.AgingInterval = -1
			}
			q, _ := newFake(t, o)
			for n, s := range tt.steps {
				switch s.op {
				case "add":
					q.Add(s.key)
				case "prio":
					q.AddWithPriority(s.key, s.n)
				case "get":
					if k, ok := q.TryGet(); !ok || k != s.key {
						t.Fatalf("step %d: TryGet = %q, %v; want %q", n, k, ok, s.key)
					}
				case "next":
					timeout := 10 * time.Second
					if s.err == context.DeadlineExceeded {
						timeout = time.Millisecond // nothing is ready: it must block until then
					}
					ctx, cancel := context.WithTimeout(context.Background(), timeout)
					k, err := q.DoneAndGet(ctx, s.key)
					cancel()
					if k != s.want || !errors.Is(err, s.err) {
						t.Fatalf("step %d: DoneAndGet(%q) = %q, %v; want %q, %v", n, s.key, k, err, s.want, s.err)
					}
				case "cancelled":
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					if k, err := q.DoneAndGet(ctx, s.key); k != "" || !errors.Is(err, s.err) {
						t.Fatalf("step %d: DoneAndGet(%q) = %q, %v; want %v", n, s.key, k, err, s.err)
					}
				case "shutdown":
					q.ShutDown()
				case "len":
					if got := q.Len(); got != s.n {
						t.Fatalf("step %d: Len = %d, want %d", n, got, s.n)
					}
				case "drain":
					got := drain(t, q)
					if g := joinKeys(got); g != s.want {
						t.Fatalf("step %d: drained %q, want %q", n, g, s.want)
					}
				default:
					t.Fatalf("unknown op %q", s.op)
				}
				if err := q.CheckInvariants(); err != nil {
					t.Fatalf("step %d (%s %s): %v", n, s.op, s.key, err)
				}
			}
		})
	}
}

func joinKeys(keys []string) string {
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ","
		}
		s += k
	}
	return s
}

// TestDoneAndGetBlocksAndWakes checks that a DoneAndGet with nothing ready
// blocks like Get, is woken by an Add, and that a key it requeues while
// another Get is blocked reaches one of them.
func TestDoneAndGetBlocksAndWakes(t *testing.T) {
	q, _ := newFake(t, queue.Options[string]{})
	q.Add("a")
	a, _ := q.TryGet()
	got := make(chan string, 1)
	go func() {
		k, err := q.DoneAndGet(context.Background(), a)
		if err != nil {
			t.Error(err)
		}
		got <- k
	}()
	waitFor(t, func() bool { return q.Waiters() == 1 })
	q.Add("b")
	if k := <-got; k != "b" {
		t.Fatalf("woken DoneAndGet = %q, want b", k)
	}

	// A blocked Get, and a DoneAndGet that requeues its own key: one of the
	// two gets it, and the other stays blocked until the next Add.
	q.Add("b") // dirty: b is processing
	blocked := make(chan string, 1)
	go func() {
		k, err := q.Get(context.Background())
		if err != nil {
			t.Error(err)
		}
		blocked <- k
	}()
	waitFor(t, func() bool { return q.Waiters() == 1 })
	k, err := q.DoneAndGet(context.Background(), "b")
	if err != nil || k != "b" {
		t.Fatalf("DoneAndGet = %q, %v; want b", k, err)
	}
	q.Add("c")
	if k := <-blocked; k != "c" {
		t.Fatalf("blocked Get = %q, want c", k)
	}
}
