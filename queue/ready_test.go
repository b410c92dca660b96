package queue_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// TestManyPriorities uses more distinct priorities than the queue keeps idle
// buckets for, in random order and with raises of ready keys, and checks the
// hand-out order against a sort by the documented score and that empty
// buckets are recycled.
func TestManyPriorities(t *testing.T) {
	const aging = time.Millisecond
	r := rand.New(rand.NewPCG(seed(t), 0))
	q, clk := newFake(t, queue.Options[string]{AgingInterval: aging})
	type want struct {
		key   string
		score int64
		seq   int
	}
	for round := range 5 {
		var keys []want
		prios := map[string]int{}
		for i := range 300 {
			k := fmt.Sprintf("r%d-k%d", round, i)
			p := r.IntN(1000) - 500 + round*10_000
			q.AddWithPriority(k, p)
			prios[k] = p
			keys = append(keys, want{key: k, seq: i, score: int64(i)*int64(time.Microsecond) - int64(p)*int64(aging)})
			if i%7 == 3 { // raise an earlier ready key
				j := r.IntN(len(keys))
				kk := keys[j].key
				p2 := prios[kk] + r.IntN(50)
				q.AddWithPriority(kk, p2)
				prios[kk] = p2
				keys[j].score = int64(keys[j].seq)*int64(time.Microsecond) - int64(p2)*int64(aging)
			}
			clk.Advance(time.Microsecond)
			if err := q.CheckInvariants(); err != nil {
				t.Fatal(err)
			}
		}
		slices.SortStableFunc(keys, func(a, b want) int {
			if a.score != b.score {
				return int(min(max(a.score-b.score, -1), 1))
			}
			return a.seq - b.seq
		})
		var exp []string
		for _, w := range keys {
			exp = append(exp, w.key)
		}
		if got := drain(t, q); !equal(got, exp) {
			t.Fatalf("round %d: order differs\n got %v\nwant %v", round, got, exp)
		}
		if n := q.Buckets(); n > 64+1 {
			t.Fatalf("round %d: %d buckets kept after drain", round, n)
		}
	}
}
