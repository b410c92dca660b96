package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
)

func TestDeadLetters(t *testing.T) {
	q, clk := newFake(t, queue.Options[string]{
		MaxFailures: 3,
		RateLimiter: queue.NewExponential[string](time.Second, time.Hour),
	})
	boom := errors.New("boom")
	q.Add("k")
	q.Add("ok")
	var failedAt []time.Time
	for attempt := 1; attempt <= 3; attempt++ {
		clk.Advance(time.Hour)
		got := drainUntil(t, q, "k")
		failedAt = append(failedAt, clk.Now())
		q.Add("k") // an event during the attempt
		q.Fail(got, boom)
		q.Done(got)
	}
	dl := q.DeadLetters()
	if len(dl) != 1 {
		t.Fatalf("DeadLetters = %+v, want one", dl)
	}
	d := dl[0]
	if d.Key != "k" || d.Attempts != 3 || !errors.Is(d.LastError, boom) ||
		!d.FirstFailure.Equal(failedAt[0]) || !d.LastFailure.Equal(failedAt[2]) {
		t.Fatalf("dead letter = %+v, failures at %v", d, failedAt)
	}
	// Dead keys are not scheduled, and adds are counted but ignored.
	q.Add("k")
	q.AddAfter("k", time.Second)
	clk.Advance(time.Hour)
	if got := drain(t, q); len(got) != 0 {
		t.Fatalf("dead key came back: %v", got)
	}
	if q.DeadLetters()[0].DroppedAdds != 2 {
		t.Fatalf("DroppedAdds = %d, want 2", q.DeadLetters()[0].DroppedAdds)
	}
	if q.Retries("k") != 0 {
		t.Fatalf("limiter still remembers dead key: %d", q.Retries("k"))
	}
	// Replay gives a fresh budget.
	if !q.Replay("k") || q.Replay("k") || q.Replay("never-dead") {
		t.Fatal("Replay should succeed once for a dead key only")
	}
	for attempt := 1; attempt <= 2; attempt++ {
		clk.Advance(time.Hour)
		got := drainUntil(t, q, "k")
		q.Fail(got, boom)
		q.Done(got)
	}
	if len(q.DeadLetters()) != 0 {
		t.Fatal("replayed key dead again before using its new budget")
	}
	// Forget resets the budget too.
	q.Forget("k")
	clk.Advance(time.Hour)
	got := drainUntil(t, q, "k")
	q.Fail(got, boom)
	q.Done(got)
	if len(q.DeadLetters()) != 0 {
		t.Fatal("Forget did not reset the budget")
	}
	// ReplayAll.
	for _, k := range []string{"a", "b"} {
		for range 3 {
			q.AddRateLimited(k)
		}
	}
	if n := len(q.DeadLetters()); n != 2 {
		t.Fatalf("want a and b dead, got %d", n)
	}
	if n := q.ReplayAll(); n != 2 || len(q.DeadLetters()) != 0 {
		t.Fatalf("ReplayAll = %d, left %v", n, q.DeadLetters())
	}
	q.ShutDown()
	if q.Replay("a") || q.ReplayAll() != 0 {
		t.Fatal("replay after shutdown should do nothing")
	}
}

// drainUntil takes ready keys (finishing the others) until it gets want,
// which it returns still processing.
func drainUntil(t *testing.T, q *queue.Queue[string], want string) string {
	t.Helper()
	for {
		k, ok := q.TryGet()
		if !ok {
			t.Fatalf("%q never became ready", want)
		}
		if k == want {
			return k
		}
		q.Done(k)
	}
}
