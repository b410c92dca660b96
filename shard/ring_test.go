package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func ids(r *rand.Rand, prefix string, n int) []Member {
	var ms []Member
	for i := range n {
		ms = append(ms, Member{ID: fmt.Sprintf("%s%d-%08x", prefix, i, r.Uint32())})
	}
	return ms
}

// moved is the fraction of slots whose owner differs between a and b.
func moved(a, b *Ring) float64 {
	n := 0
	for s := range Slots {
		h := uint64(s) << 56
		oa, _ := a.Owner(Item{Hash: h})
		ob, _ := b.Owner(Item{Hash: h})
		if oa != ob {
			n++
		}
	}
	return float64(n) / Slots
}

func mustRing(t *testing.T, ms []Member) *Ring {
	t.Helper()
	r, err := NewRing(ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Every slot has exactly one owner, Ranges partition the space, and each
// share is the requested one to within one slot.
func TestRingPartitionsAndShares(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		ms := ids(r, "m", 1+r.IntN(12))
		if r.IntN(2) == 0 {
			ms[0].Weight = []float64{0.05, 0.2, 0.5}[r.IntN(3)]
		}
		ring := mustRing(t, ms)
		covered := make([]int, Slots)
		for _, m := range ms {
			for _, rg := range ring.Ranges(m.ID) {
				for s := range Slots {
					if rg.Contains(uint64(s) << 56) {
						covered[s]++
						if o, _ := ring.Owner(Item{Hash: uint64(s)<<56 | 12345}); o != m.ID {
							t.Fatalf("seed %d: slot %d in %s's range %v but owned by %s", seed, s, m.ID, rg, o)
						}
					}
				}
			}
		}
		for s, c := range covered {
			if c != 1 {
				t.Fatalf("seed %d: slot %d covered %d times", seed, s, c)
			}
		}
		want := shares(ring.members)
		for i, m := range ring.members {
			if got := ring.Share(m.ID); math.Abs(got-want[i]) > 1.0/Slots {
				t.Fatalf("seed %d: %s share %.4f, want %.4f ± 1/%d", seed, m.ID, got, want[i], Slots)
			}
		}
	}
}

// Adding a fourth member to three equal ones moves about a quarter of the
// space (the minimum is exactly 1/4), almost all of it to the newcomer;
// removing one of four moves about a quarter back.
func TestRingMovesNearMinimum(t *testing.T) {
	const seeds = 300
	var sumAdd, worstAdd, sumRemove, worstRemove float64
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 2))
		three := ids(r, "m", 3)
		four := append(three[:3:3], Member{ID: fmt.Sprintf("new-%08x", r.Uint32())})
		a, b := mustRing(t, three), mustRing(t, four)
		f := moved(a, b)
		sumAdd += f
		worstAdd = max(worstAdd, f)
		if got := b.Share(four[3].ID); got != 0.25 {
			t.Fatalf("seed %d: newcomer share %v", seed, got)
		}
		gone := r.IntN(4)
		rest := append(append([]Member{}, four[:gone]...), four[gone+1:]...)
		f = moved(b, mustRing(t, rest))
		sumRemove += f
		worstRemove = max(worstRemove, f)
	}
	t.Logf("add a 4th: mean moved %.3f worst %.3f; remove one of 4: mean %.3f worst %.3f (minimum 0.25)",
		sumAdd/seeds, worstAdd, sumRemove/seeds, worstRemove)
	if m := sumAdd / seeds; m > 0.29 {
		t.Errorf("adding a member moves %.3f of the space on average, want ≤ 0.29 (minimum 0.25)", m)
	}
	if worstAdd > 0.34 {
		t.Errorf("adding a member moved %.3f of the space in the worst seed, want ≤ 0.34", worstAdd)
	}
	if m := sumRemove / seeds; m > 0.29 {
		t.Errorf("removing a member moves %.3f on average, want ≤ 0.29", m)
	}
	if worstRemove > 0.34 {
		t.Errorf("removing a member moved %.3f in the worst seed, want ≤ 0.34", worstRemove)
	}
}

// A canary with weight 0.05 among three equal members gets 5% ± 2% of
// 3000 random UIDs; widening it to an equal share and removing it moves
// only what must move.
func TestRingCanary(t *testing.T) {
	for seed := range uint64(100) {
		r := rand.New(rand.NewPCG(seed, 3))
		ms := ids(r, "m", 3)
		can := Member{ID: fmt.Sprintf("canary-%08x", r.Uint32()), Weight: 0.05}
		ring := mustRing(t, append(ms, can))
		n := 0
		for range 3000 {
			uid := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
			if o, _ := ring.Owner(Item{Hash: Hash(uid)}); o == can.ID {
				n++
			}
		}
		if f := float64(n) / 3000; f < 0.03 || f > 0.07 {
			t.Fatalf("seed %d: canary got %.4f of 3000 UIDs, want 0.05 ± 0.02", seed, f)
		}
		wide := Member{ID: can.ID}
		f := moved(ring, mustRing(t, append(ms[:3:3], wide)))
		if f > 0.25-0.05+0.06 {
			t.Fatalf("seed %d: widening 5%% → 25%% moved %.3f, minimum 0.20", seed, f)
		}
		if f := moved(ring, mustRing(t, ms)); f > 0.05+0.04 {
			t.Fatalf("seed %d: removing the canary moved %.3f, minimum 0.05", seed, f)
		}
	}
}

func TestRingSelectorMember(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"track": "canary"})
	ring := mustRing(t, []Member{{ID: "a"}, {ID: "b"}, {ID: "c", Selector: sel}})
	if ring.Share("c") != 0 || len(ring.Ranges("c")) != 0 {
		t.Fatalf("selector-only member has hash share %v", ring.Share("c"))
	}
	for h := uint64(0); h < 1<<63; h += 1 << 58 {
		if o, _ := ring.Owner(Item{Hash: h, Labels: labels.Set{"track": "canary"}}); o != "c" {
			t.Fatalf("labelled item at %x owned by %s, want c", h, o)
		}
		if o, _ := ring.Owner(Item{Hash: h}); o == "c" {
			t.Fatalf("unlabelled item at %x owned by the selector member", h)
		}
	}
	only := mustRing(t, []Member{{ID: "c", Selector: sel}})
	if _, ok := only.Owner(Item{Hash: 1}); ok {
		t.Fatal("a ring of selector-only members owns unlabelled items")
	}
}

func TestRingVersion(t *testing.T) {
	a := mustRing(t, []Member{{ID: "x"}, {ID: "y"}})
	b := mustRing(t, []Member{{ID: "y"}, {ID: "x"}})
	c := mustRing(t, []Member{{ID: "x"}, {ID: "y", Weight: 0.5}})
	d := mustRing(t, []Member{{ID: "x"}, {ID: "y", Selector: labels.Everything()}})
	if a.Version() != b.Version() {
		t.Errorf("member order changes the version: %s vs %s", a.Version(), b.Version())
	}
	if a.Version() == c.Version() || a.Version() == d.Version() {
		t.Errorf("weight or selector does not change the version")
	}
	if a.owner != b.owner {
		t.Errorf("member order changes the assignment")
	}
}

func TestNewRingRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ms   []Member
	}{
		{"empty", nil},
		{"empty ID", []Member{{ID: ""}}},
		{"duplicate", []Member{{ID: "a"}, {ID: "a"}}},
		{"negative weight", []Member{{ID: "a", Weight: -0.1}}},
		{"weight above 1", []Member{{ID: "a", Weight: 1.5}}},
		{"NaN weight", []Member{{ID: "a", Weight: math.NaN()}}},
	} {
		if _, err := NewRing(tc.ms); err == nil {
			t.Errorf("%s: NewRing(%v) succeeded", tc.name, tc.ms)
		}
	}
}

func TestShares(t *testing.T) {
	sel := labels.Everything()
	for _, tc := range []struct {
		name string
		ms   []Member
		want []float64
	}{
		{"equal", []Member{{ID: "a"}, {ID: "b"}}, []float64{0.5, 0.5}},
		{"canary", []Member{{ID: "a", Weight: 0.05}, {ID: "b"}, {ID: "c"}, {ID: "d"}}, []float64{0.05, 0.95 / 3, 0.95 / 3, 0.95 / 3}},
		{"weights only scale up", []Member{{ID: "a", Weight: 0.1}, {ID: "b", Weight: 0.3}}, []float64{0.25, 0.75}},
		// Weights summing to 1 would starve b: it gets 1/3 before normalising.
		{"floor", []Member{{ID: "a", Weight: 0.5}, {ID: "b"}, {ID: "c", Weight: 0.5}}, []float64{0.5 / (4.0 / 3), (1.0 / 3) / (4.0 / 3), 0.5 / (4.0 / 3)}},
		{"selector only", []Member{{ID: "a"}, {ID: "b", Selector: sel}}, []float64{1, 0}},
	} {
		got := shares(tc.ms)
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-9 {
				t.Errorf("%s: shares %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}
