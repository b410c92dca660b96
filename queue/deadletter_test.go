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

func TestRestore(t *testing.T) {
	lim := queue.NewExponential[string](time.Second, time.Hour)
	q, clk := newFake(t, queue.Options[string]{RateLimiter: lim}) // no budget: Restore works anyway
	rec := queue.DeadLetter[string]{Attempts: 5, LastError: errors.New("from the store"), FirstFailure: t0, LastFailure: t0.Add(time.Minute)}
	restore := func(k string) bool { d := rec; d.Key = k; return q.Restore(d) }

	q.Add("ready")
	q.AddAfter("waiting", time.Second)
	q.AddRateLimited("backoff")
	q.Add("busy")
	busy := drainUntil(t, q, "busy")
	q.Add("ready") // still one ready key
	drainSignal(q) // the AddRateLimited above changed nothing dead; start clean anyway

	for _, k := range []string{"ready", "waiting", "backoff", "idle"} {
		if !restore(k) {
			t.Fatalf("Restore(%s) = false", k)
		}
		select {
		case <-q.DeadLetterChanges():
		default:
			t.Fatalf("Restore(%s): no DeadLetterChanges signal", k)
		}
	}
	if restore("busy") {
		t.Fatal("Restore of a key being processed succeeded")
	}
	if restore("ready") {
		t.Fatal("Restore of a dead key succeeded")
	}
	select {
	case <-q.DeadLetterChanges():
		t.Fatal("a refused Restore signalled a change")
	default:
	}
	if q.Retries("backoff") != 0 {
		t.Fatalf("limiter still counts restored key: %d", q.Retries("backoff"))
	}
	if err := q.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if got := drain(t, q); len(got) != 0 {
		t.Fatalf("restored keys were handed out: %v", got)
	}
	dl := q.DeadLetters()
	if len(dl) != 4 || dl[0].Key != "ready" || dl[3].Key != "idle" || dl[1].Attempts != 5 || dl[2].LastError.Error() != "from the store" {
		t.Fatalf("DeadLetters = %+v", dl)
	}
	// After Done, the busy key can be restored; Replay brings keys back.
	q.Done(busy)
	if !restore("busy") || !q.Replay("waiting") {
		t.Fatal("Restore after Done or Replay of a restored key failed")
	}
	if got := drain(t, q); len(got) != 1 || got[0] != "waiting" {
		t.Fatalf("after Replay got %v, want [waiting]", got)
	}
	q.ShutDown()
	if restore("late") {
		t.Fatal("Restore after ShutDown succeeded")
	}
}

// drainSignal takes a pending DeadLetterChanges signal, if any.
func drainSignal(q *queue.Queue[string]) {
	select {
	case <-q.DeadLetterChanges():
	default:
	}
}

func TestDiscard(t *testing.T) {
	q, clk := newFake(t, queue.Options[string]{
		MaxFailures: 1,
		RateLimiter: queue.NewExponential[string](time.Second, time.Hour),
	})
	if q.Discard("k") {
		t.Fatal("Discard of a key that is not dead reported true")
	}
	q.Add("k")
	got := drainUntil(t, q, "k")
	q.Fail(got, errors.New("boom"))
	q.Done(got)
	if n := len(q.DeadLetters()); n != 1 {
		t.Fatalf("DeadLetters = %d, want 1", n)
	}
	select { // drain the signal of the dead-lettering
	case <-q.DeadLetterChanges():
	default:
		t.Fatal("no DeadLetterChanges signal after the key died")
	}
	if !q.Discard("k") {
		t.Fatal("Discard of a dead key reported false")
	}
	select {
	case <-q.DeadLetterChanges():
	default:
		t.Fatal("no DeadLetterChanges signal after Discard")
	}
	if n := len(q.DeadLetters()); n != 0 || q.Len() != 0 {
		t.Fatalf("after Discard: %d dead letters, Len %d; want 0, 0 (not added again)", n, q.Len())
	}
	if r := q.Retries("k"); r != 0 {
		t.Fatalf("Retries after Discard = %d, want 0 (forgotten)", r)
	}
	// The key is an ordinary key again: an add is processed.
	clk.Advance(time.Hour)
	q.Add("k")
	if got := drainUntil(t, q, "k"); got != "k" {
		t.Fatalf("got %q after re-adding", got)
	}
}
