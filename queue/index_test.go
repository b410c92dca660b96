package queue_test

import (
	"fmt"
	"testing"

	"github.com/skiffkit/skiff/queue"
)

// TestIdleKeysAreBounded: keys that leave the queue are remembered for reuse,
// but no more than max(1024, peak tracked) of them, and forgotten keys work
// like new ones.
func TestIdleKeysAreBounded(t *testing.T) {
	q, _ := newFake(t, queue.Options[string]{})
	cycle := func(k string) {
		t.Helper()
		q.Add(k)
		got, ok := q.TryGet()
		if !ok || got != k {
			t.Fatalf("TryGet = %q,%v; want %q", got, ok, k)
		}
		q.Done(k)
	}
	for i := range 5000 {
		cycle(fmt.Sprintf("k%d", i))
	}
	if n := q.Remembered(); n != 1024 {
		t.Fatalf("remembered %d keys after 5000 one at a time, want 1024", n)
	}
	cycle("k0") // forgotten long ago
	cycle("k4999")
	if err := q.CheckInvariants(); err != nil {
		t.Fatal(err)
	}

	// A peak of 3000 tracked keys raises the bound to 3000.
	for i := range 3000 {
		q.Add(fmt.Sprintf("p%d", i))
	}
	if got := len(drain(t, q)); got != 3000 {
		t.Fatalf("drained %d, want 3000", got)
	}
	if n := q.Remembered(); n != 3000 {
		t.Fatalf("remembered %d keys after a peak of 3000, want 3000", n)
	}
}
