package queue_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/queue/clocktest"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newFake(t *testing.T, o queue.Options[string]) (*queue.Queue[string], *clocktest.Fake) {
	t.Helper()
	clk := clocktest.NewFake(t0)
	o.Clock = clk
	q := queue.New(o)
	t.Cleanup(func() {
		if err := q.CheckInvariants(); err != nil {
			t.Errorf("invariants at end: %v", err)
		}
	})
	return q, clk
}

// drain takes every ready key without blocking, calling Done on each.
func drain(t *testing.T, q *queue.Queue[string]) []string {
	t.Helper()
	var out []string
	for {
		k, ok := q.TryGet()
		if !ok {
			return out
		}
		out = append(out, k)
		q.Done(k)
		if err := q.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// step is one operation of a table test; the queue runs on a fake clock.
type step struct {
	op   string // add, prio, after, bypass, fail, get, done, advance, expect, len, shutdown
	key  string
	n    int           // priority or expected length
	d    time.Duration // delay or advance
	want []string      // for expect: the keys drained, in order
}

func TestQueueTable(t *testing.T) {
	tests := []struct {
		name  string
		opts  queue.Options[string]
		steps []step
	}{
		{name: "dedup", steps: []step{
			{op: "add", key: "a"}, {op: "add", key: "b"}, {op: "add", key: "a"},
			{op: "len", n: 2}, {op: "expect", want: []string{"a", "b"}},
		}},
		{name: "add while processing requeues on Done", steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "a"}, {op: "add", key: "a"},
			{op: "len", n: 0}, {op: "done", key: "a"}, {op: "len", n: 1}, {op: "expect", want: []string{"a"}},
		}},
		{name: "never two workers on one key", steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "a"},
			{op: "expect", want: nil}, {op: "done", key: "a"}, {op: "expect", want: []string{"a"}},
		}},
		{name: "fifo within a priority", steps: []step{
			{op: "add", key: "c"}, {op: "add", key: "a"}, {op: "add", key: "b"},
			{op: "expect", want: []string{"c", "a", "b"}},
		}},
		{name: "higher priority first", opts: queue.Options[string]{AgingInterval: -1}, steps: []step{
			{op: "prio", key: "low", n: -1}, {op: "add", key: "mid"}, {op: "prio", key: "high", n: 5},
			{op: "expect", want: []string{"high", "mid", "low"}},
		}},
		{name: "re-add with higher priority takes it", opts: queue.Options[string]{AgingInterval: -1}, steps: []step{
			{op: "add", key: "a"}, {op: "add", key: "b"}, {op: "prio", key: "b", n: 3}, {op: "prio", key: "b", n: 1},
			{op: "expect", want: []string{"b", "a"}},
		}},
		{name: "aging lets an old low-priority key win", opts: queue.Options[string]{AgingInterval: time.Second}, steps: []step{
			{op: "prio", key: "old", n: 0}, {op: "advance", d: 3 * time.Second},
			{op: "prio", key: "new2", n: 2}, {op: "prio", key: "new4", n: 4},
			{op: "expect", want: []string{"new4", "old", "new2"}},
		}},
		{name: "after waits for its deadline", steps: []step{
			{op: "after", key: "a", d: time.Second}, {op: "len", n: 0},
			{op: "advance", d: 999 * time.Millisecond}, {op: "expect", want: nil},
			{op: "advance", d: time.Millisecond}, {op: "expect", want: []string{"a"}},
		}},
		{name: "earliest deadline wins", steps: []step{
			{op: "after", key: "a", d: 5 * time.Second}, {op: "after", key: "a", d: time.Second},
			{op: "after", key: "a", d: 3 * time.Second},
			{op: "advance", d: time.Second}, {op: "expect", want: []string{"a"}},
			{op: "advance", d: 10 * time.Second}, {op: "expect", want: nil},
		}},
		{name: "add cancels a delay", steps: []step{
			{op: "after", key: "a", d: time.Hour}, {op: "add", key: "a"}, {op: "expect", want: []string{"a"}},
			{op: "advance", d: 2 * time.Hour}, {op: "expect", want: nil},
		}},
		{name: "negative delay is immediate", steps: []step{
			{op: "after", key: "a", d: -time.Second}, {op: "len", n: 1}, {op: "expect", want: []string{"a"}},
		}},
		{name: "delays come out in deadline order", steps: []step{
			{op: "after", key: "c", d: 3 * time.Second}, {op: "after", key: "a", d: time.Second},
			{op: "after", key: "b", d: 2 * time.Second},
			{op: "advance", d: 5 * time.Second}, {op: "expect", want: []string{"a", "b", "c"}},
		}},
		{name: "delay while processing requeues after deadline", steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "after", key: "a", d: time.Second},
			{op: "done", key: "a"}, {op: "expect", want: nil},
			{op: "advance", d: time.Second}, {op: "expect", want: []string{"a"}},
		}},
		{name: "rate limited backs off exponentially", opts: queue.Options[string]{RateLimiter: queue.NewExponential[string](time.Second, time.Minute)}, steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "fail", key: "a"}, {op: "done", key: "a"},
			{op: "advance", d: 999 * time.Millisecond}, {op: "expect", want: nil},
			{op: "advance", d: time.Millisecond}, {op: "get", key: "a"}, {op: "fail", key: "a"}, {op: "done", key: "a"},
			{op: "advance", d: 1999 * time.Millisecond}, {op: "expect", want: nil},
			{op: "advance", d: time.Millisecond}, {op: "expect", want: []string{"a"}},
		}},
		{name: "plain add does not cut a backoff short", opts: queue.Options[string]{RateLimiter: queue.NewExponential[string](time.Second, time.Minute)}, steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "fail", key: "a"}, {op: "add", key: "a"}, {op: "done", key: "a"},
			{op: "add", key: "a"}, {op: "after", key: "a", d: time.Millisecond}, {op: "expect", want: nil},
			{op: "advance", d: time.Second}, {op: "expect", want: []string{"a"}},
		}},
		{name: "bypass ends a backoff", opts: queue.Options[string]{RateLimiter: queue.NewExponential[string](time.Second, time.Minute)}, steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "fail", key: "a"}, {op: "done", key: "a"},
			{op: "bypass", key: "a"}, {op: "expect", want: []string{"a"}},
			{op: "advance", d: time.Minute}, {op: "expect", want: nil},
		}},
		{name: "add during a failed attempt is folded into the retry", opts: queue.Options[string]{RateLimiter: queue.NewExponential[string](time.Second, time.Minute)}, steps: []step{
			{op: "add", key: "a"}, {op: "get", key: "a"}, {op: "add", key: "a"}, {op: "fail", key: "a"}, {op: "done", key: "a"},
			{op: "expect", want: nil}, {op: "advance", d: time.Second}, {op: "expect", want: []string{"a"}},
		}},
		{name: "shutdown drops and ignores", steps: []step{
			{op: "add", key: "a"}, {op: "shutdown"}, {op: "add", key: "b"}, {op: "len", n: 0}, {op: "expect", want: nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, clk := newFake(t, tt.opts)
			for n, s := range tt.steps {
				switch s.op {
				case "add":
					q.Add(s.key)
				case "prio":
					q.AddWithPriority(s.key, s.n)
				case "after":
					q.AddAfter(s.key, s.d)
				case "bypass":
					q.AddWith(s.key, queue.AddOptions{BypassBackoff: true})
				case "fail":
					q.AddRateLimited(s.key)
				case "get":
					k, ok := q.TryGet()
					if !ok || k != s.key {
						t.Fatalf("step %d: TryGet = %q, %v; want %q", n, k, ok, s.key)
					}
				case "done":
					q.Done(s.key)
				case "advance":
					clk.Advance(s.d)
				case "len":
					if got := q.Len(); got != s.n {
						t.Fatalf("step %d: Len = %d, want %d", n, got, s.n)
					}
				case "expect":
					if got := drain(t, q); !equal(got, s.want) {
						t.Fatalf("step %d: drained %q, want %q", n, got, s.want)
					}
				case "shutdown":
					q.ShutDown()
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

func TestGetHonoursContext(t *testing.T) {
	q, _ := newFake(t, queue.Options[string]{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Add("a")
	if _, err := q.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with cancelled ctx = %v, want context.Canceled", err)
	}
	if q.Len() != 1 {
		t.Fatalf("a cancelled Get must not take a key; Len = %d", q.Len())
	}

	q2, _ := newFake(t, queue.Options[string]{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := q2.Get(ctx2); errc <- err }()
	waitFor(t, func() bool { return q2.Waiters() == 1 })
	cancel2()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked Get after cancel = %v", err)
	}
	if q2.Waiters() != 0 {
		t.Fatalf("cancelled waiter still registered")
	}
}

func TestUseAfterShutDown(t *testing.T) {
	q, _ := newFake(t, queue.Options[string]{MaxFailures: 1})
	q.Add("busy")
	k, _ := q.TryGet()
	q.ShutDown()
	q.ShutDown() // idempotent
	q.Add("x")
	q.AddAfter("y", time.Second)
	q.AddRateLimited("z")
	q.Fail("busy", errors.New("late"))
	if got := q.DeadLetters(); len(got) != 0 {
		t.Fatalf("Fail after shutdown dead-lettered %v", got)
	}
	if q.Len() != 0 {
		t.Fatalf("adds after shutdown were kept")
	}
	if _, err := q.Get(context.Background()); !errors.Is(err, queue.ErrShutDown) {
		t.Fatalf("Get after ShutDown = %v, want ErrShutDown", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := q.ShutDownWithDrain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain with a key in flight = %v, want deadline exceeded", err)
	}
	q.Done(k)
	if err := q.ShutDownWithDrain(context.Background()); err != nil {
		t.Fatalf("drain after Done = %v", err)
	}
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown = false")
	}
}

func TestNilLimiterUsesDefault(t *testing.T) {
	q, clk := newFake(t, queue.Options[string]{})
	q.AddRateLimited("a")
	if q.Retries("a") != 1 {
		t.Fatalf("Retries = %d, want 1", q.Retries("a"))
	}
	clk.Advance(queue.DefaultBaseDelay - 1)
	if q.Len() != 0 {
		t.Fatal("default limiter retried before 5ms")
	}
	clk.Advance(1)
	if q.Len() != 1 {
		t.Fatal("default limiter did not retry after 5ms")
	}
	q.Forget("a")
	if q.Retries("a") != 0 {
		t.Fatal("Forget did not reset retries")
	}
}

// waitFor polls cond until it holds or a deadline passes; it waits on a
// condition, never for a fixed time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestLenByPriority(t *testing.T) {
	clk := clocktest.NewFake(time.Unix(0, 0))
	q := queue.New(queue.Options[string]{Clock: clk})
	q.AddWithPriority("a", 0)
	q.AddWithPriority("b", 0)
	q.AddWithPriority("c", -100)
	q.AddWithPriority("d", 10)
	q.AddWith("later", queue.AddOptions{Priority: 5, After: time.Second})
	got := q.LenByPriority()
	want := map[int]int{0: 2, -100: 1, 10: 1}
	if !maps.Equal(got, want) {
		t.Fatalf("LenByPriority = %v, want %v", got, want)
	}
	k, _ := q.TryGet() // "d", the highest priority
	clk.Advance(time.Second)
	got = q.LenByPriority()
	want = map[int]int{0: 2, -100: 1, 5: 1}
	if k != "d" || !maps.Equal(got, want) {
		t.Fatalf("after taking %q and the delay: LenByPriority = %v, want %v", k, got, want)
	}
	if q.Len() != 4 {
		t.Fatalf("Len = %d, want 4", q.Len())
	}
}
