package controller

import (
	"testing"
	"time"
)

func TestSizer(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name  string
		sizer Sizer
		steps []Sample
		want  []int
	}{
		{"grows to cover the backlog when saturated", Sizer{Min: 1, Max: 64},
			[]Sample{{Workers: 4, Busy: 4, Depth: 20, Completed: 40, Interval: sec}}, []int{24}},
		{"at least doubles", Sizer{Min: 1, Max: 32},
			[]Sample{{Workers: 4, Busy: 4, Depth: 1, Completed: 40, Interval: sec}}, []int{8}},
		{"grows from one to the backlog", Sizer{Min: 1, Max: 32},
			[]Sample{{Workers: 1, Busy: 1, Depth: 5, Completed: 10, Interval: sec}}, []int{6}},
		{"never above max", Sizer{Min: 1, Max: 5},
			[]Sample{{Workers: 4, Busy: 4, Depth: 100, Completed: 40, Interval: sec}}, []int{5}},
		{"keeps growing while throughput rises", Sizer{Min: 1, Max: 64},
			[]Sample{
				{Workers: 4, Busy: 4, Depth: 3, Completed: 40, Interval: sec},
				{Workers: 8, Busy: 8, Depth: 3, Completed: 80, Interval: sec},
				{Workers: 16, Busy: 16, Depth: 3, Completed: 160, Interval: sec},
			}, []int{8, 16, 32}},
		{"steps back and holds when growth did not help", Sizer{Min: 1, Max: 64, HoldIntervals: 2},
			[]Sample{
				{Workers: 4, Busy: 4, Depth: 2, Completed: 40, Interval: sec},
				{Workers: 8, Busy: 8, Depth: 2, Completed: 41, Interval: sec}, // saturated, +2.5%: not worth it
				{Workers: 4, Busy: 4, Depth: 2, Completed: 40, Interval: sec}, // holding
				{Workers: 4, Busy: 4, Depth: 2, Completed: 40, Interval: sec}, // hold over: grow again
			}, []int{8, 4, 4, 8}},
		{"steps back halfway after a jump larger than a doubling", Sizer{Min: 1, Max: 32, HoldIntervals: 2},
			[]Sample{
				{Workers: 1, Busy: 1, Depth: 1900, Completed: 10, Interval: sec},
				{Workers: 32, Busy: 32, Depth: 1800, Completed: 10, Interval: sec},  // the server was busy: no gain
				{Workers: 16, Busy: 16, Depth: 1700, Completed: 100, Interval: sec}, // holding
				{Workers: 16, Busy: 16, Depth: 1600, Completed: 100, Interval: sec}, // grow again
				{Workers: 32, Busy: 32, Depth: 1500, Completed: 101, Interval: sec}, // a doubling that did not help: back
			}, []int{32, 16, 16, 32, 16}},
		{"does not judge a growth step the pool could not use", Sizer{Min: 1, Max: 64},
			[]Sample{
				{Workers: 4, Busy: 4, Depth: 2, Completed: 40, Interval: sec},
				{Workers: 8, Busy: 5, Depth: 3, Completed: 40, Interval: sec}, // backlog ran low: not saturated
			}, []int{8, 8}},
		{"does not grow when workers are idle even with depth", Sizer{Min: 1, Max: 32},
			[]Sample{{Workers: 8, Busy: 2, Depth: 3, Completed: 40, Interval: sec}}, []int{8}},
		{"shrinks towards 125% of busy when nothing waits", Sizer{Min: 1, Max: 32},
			[]Sample{{Workers: 16, Busy: 4, Depth: 0, Completed: 40, Interval: sec}}, []int{5}},
		{"never below min", Sizer{Min: 3, Max: 32},
			[]Sample{{Workers: 16, Busy: 0, Depth: 0, Interval: sec}}, []int{3}},
		{"fixed pool when min == max", Sizer{Min: 4, Max: 4},
			[]Sample{
				{Workers: 4, Busy: 4, Depth: 100, Completed: 40, Interval: sec},
				{Workers: 4, Busy: 0, Depth: 0, Interval: sec},
			}, []int{4, 4}},
		{"zero bounds mean one worker", Sizer{},
			[]Sample{{Workers: 0, Busy: 0, Depth: 10, Interval: sec}}, []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sizer
			for i, x := range tc.steps {
				if got := s.Next(x); got != tc.want[i] {
					t.Fatalf("step %d: Next(%+v) = %d, want %d", i, x, got, tc.want[i])
				}
			}
		})
	}
}

// TestSizerStaysInBounds checks the bounds over many random samples.
func TestSizerStaysInBounds(t *testing.T) {
	s := Sizer{Min: 2, Max: 9}
	w := 2
	for i := range 10000 {
		x := Sample{Workers: w, Busy: float64((i * 7) % (w + 1)), Depth: (i * 13) % 5, Completed: (i * 31) % 100, Interval: time.Second}
		w = s.Next(x)
		if w < 2 || w > 9 {
			t.Fatalf("step %d: size %d outside [2, 9]", i, w)
		}
	}
}
