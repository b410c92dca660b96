package controller

import "time"

// Sample is what a worker pool observed over one sizing interval.
type Sample struct {
	Workers   int           // workers running during the interval
	Busy      float64       // average number of workers reconciling (0..Workers)
	Depth     int           // keys ready and waiting for a worker at the end
	Completed int           // reconciles finished during the interval
	Interval  time.Duration // length of the interval (> 0)
}

// Sizer decides a worker pool's size from samples. It is pure: no clock, no
// goroutines; the pool calls Next once per interval.
//
// Policy (hill climbing on throughput, bounded by Min and Max):
//   - Grow when work is waiting (Depth > 0) and the workers are saturated
//     (Busy ≥ 80% of Workers): to enough workers for the whole backlog
//     (Workers + Depth), and at least double, within Max. A burst of events
//     is met at once rather than over several intervals; I/O-bound
//     reconciles (latency dominated by API calls) are served by as many
//     workers as there are keys to work on.
//   - After a growth step, if the larger pool was saturated with work still
//     waiting and yet throughput (Completed/Interval) did not rise by at
//     least 5%, the extra workers were not helping (CPU- or server-bound
//     work): step back and hold for HoldIntervals intervals before trying
//     to grow again. A doubling steps back to the previous size; a larger
//     jump (one worker to a backlog of hundreds) steps back only halfway,
//     so one noisy interval while the API server is busy with someone
//     else's load does not drop a pool to a single worker with the backlog
//     still queued (seen in skiff demo: ~2 s at one worker, ~1900 queued). A pool that was not saturated
//     after growing says nothing about the growth, so it is not judged.
//   - Shrink when nothing is waiting and fewer than half the workers are
//     busy: to 125% of the busy count (rounded up), never below Min.
type Sizer struct {
	Min, Max int
	// HoldIntervals is how long to wait after an unhelpful growth step.
	// Default 5.
	HoldIntervals int

	lastGrowFrom   int     // size before the last growth step; 0 if none pending
	lastThroughput float64 // throughput measured at lastGrowFrom
	hold           int
}

// Next returns the pool size for the next interval.
func (s *Sizer) Next(x Sample) int {
	lo, hi := max(s.Min, 1), max(s.Max, max(s.Min, 1))
	clamp := func(n int) int { return min(max(n, lo), hi) }
	w := max(x.Workers, 1)
	tput := 0.0
	if x.Interval > 0 {
		tput = float64(x.Completed) / x.Interval.Seconds()
	}
	if s.hold > 0 {
		s.hold--
	}
	if s.lastGrowFrom > 0 {
		from, before := s.lastGrowFrom, s.lastThroughput
		s.lastGrowFrom = 0
		if x.Depth > 0 && x.Busy >= 0.8*float64(w) && tput < before*1.05 {
			holdFor := s.HoldIntervals
			if holdFor <= 0 {
				holdFor = 5
			}
			s.hold = holdFor
			if back := (from + w) / 2; w > 2*from {
				return clamp(back)
			}
			return clamp(from)
		}
	}
	switch {
	case x.Depth > 0 && x.Busy >= 0.8*float64(w) && s.hold == 0 && w < hi:
		next := clamp(max(2*w, w+x.Depth))
		s.lastGrowFrom, s.lastThroughput = w, tput
		return next
	case x.Depth == 0 && x.Busy < 0.5*float64(w):
		busy := int(x.Busy*1.25 + 0.999)
		return clamp(busy)
	}
	return clamp(w)
}
