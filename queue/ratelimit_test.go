package queue_test

import (
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
)

func TestExponential(t *testing.T) {
	l := queue.NewExponential[string](time.Millisecond, 10*time.Millisecond)
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		if got := l.When("a", t0); got != w*time.Millisecond {
			t.Fatalf("failure %d: When = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := l.When("b", t0); got != time.Millisecond {
		t.Fatalf("keys are independent: When(b) = %v", got)
	}
	if l.Retries("a") != 6 {
		t.Fatalf("Retries = %d", l.Retries("a"))
	}
	l.Forget("a")
	if l.Retries("a") != 0 || l.When("a", t0) != time.Millisecond {
		t.Fatal("Forget did not reset")
	}
	def := queue.NewExponential[int](0, 0)
	if got := def.When(1, t0); got != queue.DefaultBaseDelay {
		t.Fatalf("default base = %v", got)
	}
	for range 100 {
		def.When(2, t0)
	}
	if got := def.When(2, t0); got != queue.DefaultMaxDelay {
		t.Fatalf("default cap = %v (no overflow expected)", got)
	}
}

func TestTokenBucket(t *testing.T) {
	l := queue.NewTokenBucket[string](10, 2) // 10/s, burst 2
	now := t0
	tests := []struct {
		advance time.Duration
		want    time.Duration
	}{
		{0, 0}, {0, 0}, // burst
		{0, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
		{time.Second, 0}, // refilled
	}
	for i, tt := range tests {
		now = now.Add(tt.advance)
		if got := l.When("k", now); got != tt.want {
			t.Fatalf("call %d: When = %v, want %v", i, got, tt.want)
		}
	}
	if l.Retries("k") != 0 {
		t.Fatal("token bucket keeps no per-key count")
	}
}

func TestMaxOf(t *testing.T) {
	l := queue.MaxOf[string](queue.NewExponential[string](time.Millisecond, time.Hour), queue.NewTokenBucket[string](1, 1))
	if got := l.When("a", t0); got != time.Millisecond {
		t.Fatalf("first = %v", got)
	}
	if got := l.When("a", t0); got != time.Second {
		t.Fatalf("second = %v, want bucket's 1s", got)
	}
	if l.Retries("a") != 2 {
		t.Fatalf("Retries = %d", l.Retries("a"))
	}
	l.Forget("a")
	if l.Retries("a") != 0 {
		t.Fatal("Forget not passed on")
	}
}

func TestFailureAware(t *testing.T) {
	l := queue.NewFailureAware[string](queue.NewExponential[string](time.Second, time.Hour))
	steps := []struct {
		at      time.Duration // since t0
		want    time.Duration
		retries int
	}{
		{0, time.Second, 1},
		{300 * time.Millisecond, 700 * time.Millisecond, 1}, // early failure: remaining window, not counted
		{900 * time.Millisecond, 100 * time.Millisecond, 1},
		{time.Second, 2 * time.Second, 2}, // window over: counted
		{2 * time.Second, time.Second, 2},
		{3 * time.Second, 4 * time.Second, 3},
	}
	for i, s := range steps {
		if got := l.When("a", t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: When = %v, want %v", i, got, s.want)
		}
		if got := l.Retries("a"); got != s.retries {
			t.Fatalf("step %d: Retries = %d, want %d", i, got, s.retries)
		}
	}
	l.Forget("a")
	if got := l.When("a", t0.Add(3*time.Second)); got != time.Second {
		t.Fatalf("after Forget: When = %v, want base", got)
	}
	if got := queue.NewFailureAware[string](nil).When("x", t0); got != queue.DefaultBaseDelay {
		t.Fatalf("nil inner: When = %v", got)
	}
}
