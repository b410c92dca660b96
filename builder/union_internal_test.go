package builder

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/skiffkit/skiff/shard"
)

// union against the naive reference (a hash is in the union iff it is in
// a range of either side), at every boundary of the inputs and around
// them; and its output is sorted, non-empty, neither overlapping nor
// touching, so it is the shortest selector.
func TestUnionProperty(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	// Few distinct bounds, so ranges touch and overlap often; 0 as an End
	// means 2^64.
	bounds := []uint64{0, 1, 1 << 32, 1 << 62, 1 << 63, 1<<63 + 1, math.MaxUint64 - 1, math.MaxUint64}
	gen := func() []shard.Range {
		var out []shard.Range
		for range rng.IntN(5) {
			s, e := bounds[rng.IntN(len(bounds))], bounds[rng.IntN(len(bounds))]
			if rng.IntN(4) == 0 {
				e = 0
			}
			r := shard.Range{Start: s, End: e}
			if r.Empty() || (e != 0 && s == e) {
				continue
			}
			out = append(out, r)
		}
		return out
	}
	in := func(h uint64, rs []shard.Range) bool {
		for _, r := range rs {
			if r.Contains(h) {
				return true
			}
		}
		return false
	}
	for i := range 20000 {
		a, b := gen(), gen()
		got := union(a, b)
		var probes []uint64
		for _, r := range append(append([]shard.Range{}, a...), b...) {
			probes = append(probes, r.Start, r.Start-1, r.Start+1, r.End, r.End-1, r.End+1)
		}
		probes = append(probes, 0, math.MaxUint64)
		for _, h := range probes {
			if want := in(h, a) || in(h, b); in(h, got) != want {
				t.Fatalf("case %d: union(%v, %v) = %v: contains(%#x) = %v, want %v", i, a, b, got, h, !want, want)
			}
		}
		for j, r := range got {
			if r.Empty() || (r.End != 0 && r.Start == r.End) {
				t.Fatalf("case %d: union(%v, %v) = %v has an empty range", i, a, b, got)
			}
			if j > 0 {
				prev := got[j-1]
				if prev.End == 0 || prev.End >= r.Start {
					t.Fatalf("case %d: union(%v, %v) = %v: %v and %v overlap or touch", i, a, b, got, prev, r)
				}
			}
		}
	}
}
