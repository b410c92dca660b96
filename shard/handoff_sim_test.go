package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// The model check: N replicas run the hand-off protocol (Node, readGroup,
// ringFor — the code Replica runs) against a simulated Lease store with
// linearizable reads, under random joins, graceful leaves, crashes,
// partitions, weight and selector changes, and random reconciles. The
// invariant checker fails the moment a replica is admitted to an item that
// another replica is processing. After the churn the cluster heals and every
// item must have exactly one owner, the one the common ring names.

type simLease struct {
	holder string
	rv     int
	ann    map[string]string
}

type simReplica struct {
	id, name    string
	node        *Node
	live        liveness
	renewedAt   time.Time
	hasLease    bool
	connected   bool
	reconnectAt time.Time
	stopping    bool
	weight      float64
	selector    labels.Selector
	nextTick    time.Time
	inflight    map[uint64]int // token → item
}

type sim struct {
	t          *testing.T
	seed       uint64
	rng        *rand.Rand
	now        time.Time
	ld, rd, rp time.Duration
	leases     map[string]*simLease
	rv         int
	reps       map[string]*simReplica
	items      []Item
	processing map[int]string // item → replica processing it
	nextID     int
	changes    int
	admitted   int
	log        []string
	later      []delayed // changes scheduled to undo others quickly
}

type delayed struct {
	at time.Time
	do func()
}

type quiet struct{}

func (quiet) Warn(string, ...any) {}

var canary = labels.SelectorFromSet(labels.Set{"track": "canary"})

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5eed)), now: time.Unix(1_000_000, 0),
		ld: 10 * time.Second, rd: 7 * time.Second, rp: time.Second,
		leases: map[string]*simLease{}, reps: map[string]*simReplica{}, processing: map[int]string{}}
	for i := range 400 {
		it := Item{Hash: s.rng.Uint64()}
		if i%10 == 0 {
			it.Labels = labels.Set{"track": "canary"}
		}
		s.items = append(s.items, it)
	}
	return s
}

func (s *sim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("%8.3fs ", float64(s.now.UnixMilli()%1_000_000_000)/1000)+fmt.Sprintf(format, args...))
}

func (s *sim) fail(format string, args ...any) {
	s.t.Helper()
	tail := s.log[max(0, len(s.log)-40):]
	for _, l := range tail {
		s.t.Log(l)
	}
	s.t.Fatalf("seed %d: "+format, append([]any{s.seed}, args...)...)
}

func (s *sim) sorted() []*simReplica {
	var out []*simReplica
	for _, r := range s.reps {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *simReplica) int { return cmpString(a.id, b.id) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *sim) join(weight float64, sel labels.Selector) {
	s.nextID++
	id := "r" + strconv.Itoa(s.nextID)
	s.reps[id] = &simReplica{id: id, name: "g-" + id, node: NewNode(id), connected: true, weight: weight, selector: sel,
		nextTick: s.now, inflight: map[uint64]int{}}
	s.logf("join %s weight %g selector %v", id, weight, sel)
}

func (s *sim) fresh(r *simReplica) bool {
	return !r.renewedAt.IsZero() && s.now.Sub(r.renewedAt) < s.rd
}

// fence models Replica.fenceLocked plus the assumption the protocol rests
// on: cancelled work returns before LeaseDuration − RenewDeadline.
func (s *sim) fence(r *simReplica) {
	r.node.Fence()
	for tok, it := range r.inflight {
		s.done(r, tok, it)
	}
}

func (s *sim) done(r *simReplica, tok uint64, it int) {
	r.node.Done(tok)
	delete(r.inflight, tok)
	if s.processing[it] != r.id {
		s.fail("item %d done by %s but recorded for %q", it, r.id, s.processing[it])
	}
	delete(s.processing, it)
}

// tick is Replica.tick: renew (writing the drained version), list, observe,
// fence or prepare the next publication.
func (s *sim) tick(r *simReplica) {
	r.nextTick = s.now.Add(s.rp/2 + time.Duration(s.rng.Int64N(int64(s.rp/2))))
	if r.connected {
		ann := map[string]string{DrainedAnnotation: r.node.Written()}
		if r.weight != 0 {
			ann[WeightAnnotation] = strconv.FormatFloat(r.weight, 'g', -1, 64)
		}
		if r.selector != nil {
			ann[SelectorAnnotation] = r.selector.String()
		}
		l, exists := s.leases[r.name]
		switch {
		case !r.hasLease && !exists:
			s.rv++
			s.leases[r.name] = &simLease{holder: r.id, rv: s.rv, ann: ann}
			r.hasLease, r.renewedAt = true, s.now
		case r.hasLease && exists:
			s.rv++
			l.rv, l.ann = s.rv, ann
			r.renewedAt = s.now
		case r.hasLease && !exists:
			s.logf("%s finds its Lease deleted; fencing and rejoining", r.id)
			r.hasLease, r.renewedAt = false, time.Time{}
			s.fence(r)
		}
		if !r.stopping {
			var ls []leaseState
			for name, l := range s.leases {
				ls = append(ls, leaseState{name: name, rv: strconv.Itoa(l.rv), holder: l.holder, dur: s.ld, annotations: l.ann})
			}
			slices.SortFunc(ls, func(a, b leaseState) int { return cmpString(a.name, b.name) })
			g := readGroup(ls, r.name, r.id, s.fresh(r), &r.live, s.now, s.ld, quiet{})
			if len(g.members) > 0 {
				ring, err := ringFor(r.node.Target(), g.members)
				if err != nil {
					s.fail("ring: %v", err)
				}
				before := r.node.Active()
				r.node.Observe(ring, g.drained)
				if !before && r.node.Active() {
					s.logf("%s active on %s share %.3f", r.id, ring.Version(), ring.Share(r.id))
				}
			}
			for _, st := range g.stale {
				if l := s.leases[st.name]; l != nil && strconv.Itoa(l.rv) == st.rv {
					delete(s.leases, st.name)
					s.logf("%s deletes expired Lease %s", r.id, st.name)
				}
			}
		}
	}
	if !s.fresh(r) {
		if r.node.Written() != "" || r.node.InFlight() > 0 || r.node.Active() {
			s.logf("%s fenced", r.id)
		}
		s.fence(r)
		return
	}
	if !r.stopping {
		if v, ok := r.node.PrepareDrained(); ok {
			s.logf("%s publishes drained %s", r.id, v)
			r.nextTick = s.now.Add(time.Millisecond)
		}
	}
}

// work starts or finishes one reconcile.
func (s *sim) work() {
	reps := s.sorted()
	if len(reps) == 0 {
		return
	}
	r := reps[s.rng.IntN(len(reps))]
	if s.rng.IntN(10) < 6 {
		it := s.rng.IntN(len(s.items))
		if s.processing[it] == r.id || !s.fresh(r) {
			return // the queue never hands one key to two workers of a replica
		}
		tok, ok := r.node.Admit(s.items[it])
		if !ok {
			return
		}
		if other, busy := s.processing[it]; busy {
			s.fail("item %d (hash %016x) admitted by %s while %s processes it", it, s.items[it].Hash, r.id, other)
		}
		s.processing[it] = r.id
		r.inflight[tok] = it
		s.admitted++
		return
	}
	for tok, it := range r.inflight {
		s.done(r, tok, it)
		return
	}
}

func (s *sim) live() []*simReplica {
	var out []*simReplica
	for _, r := range s.sorted() {
		if !r.stopping {
			out = append(out, r)
		}
	}
	return out
}

// change makes one random membership change.
func (s *sim) change() {
	s.changes++
	live := s.live()
	if len(live) < 2 {
		s.join(0, nil)
		return
	}
	r := live[s.rng.IntN(len(live))]
	switch s.rng.IntN(8) {
	case 0, 1:
		switch s.rng.IntN(4) {
		case 0:
			s.join(0.05, nil)
		case 1:
			s.join(0, canary)
		default:
			s.join(0, nil)
		}
	case 2:
		s.logf("%s stops gracefully", r.id)
		r.stopping = true
		r.node.Fence()
	case 3:
		s.logf("%s crashes with %d in flight", r.id, len(r.inflight))
		for _, it := range r.inflight {
			delete(s.processing, it)
		}
		delete(s.reps, r.id)
	case 4:
		d := time.Duration(3+s.rng.IntN(23)) * time.Second
		s.logf("%s partitioned for %v", r.id, d)
		r.connected, r.reconnectAt = false, s.now.Add(d)
	case 5:
		r.weight = []float64{0, 0.05, 0.5}[s.rng.IntN(3)]
		s.logf("%s weight %g", r.id, r.weight)
	case 6:
		if r.selector == nil {
			r.selector = canary
		} else {
			r.selector = nil
		}
		s.logf("%s selector %v", r.id, r.selector)
	case 7:
		// A change undone within about one RetryPeriod: rings flip back
		// while hand-offs are half done.
		old := r.weight
		r.weight = []float64{0.05, 0.5, 1}[s.rng.IntN(3)]
		s.logf("%s weight %g, reverting soon", r.id, r.weight)
		s.later = append(s.later, delayed{s.now.Add(time.Duration(s.rng.Int64N(int64(2 * s.rp)))), func() {
			r.weight = old
			s.logf("%s weight back to %g", r.id, old)
		}})
	}
}

// run advances the simulation to until, ticking replicas on schedule and
// doing random work between ticks.
func (s *sim) run(until time.Time, changes bool) {
	nextChange := s.now.Add(time.Duration(1+s.rng.IntN(5)) * time.Second)
	for s.now.Before(until) {
		next := s.now.Add(time.Duration(1+s.rng.IntN(100)) * time.Millisecond)
		var due *simReplica
		for _, r := range s.sorted() {
			if !r.nextTick.After(next) && (due == nil || r.nextTick.Before(due.nextTick)) {
				due = r
			}
		}
		if due != nil {
			s.now = maxTime(s.now, due.nextTick)
			s.tick(due)
		} else {
			s.now = next
			s.work()
		}
		for _, r := range s.sorted() {
			if !r.connected && !s.now.Before(r.reconnectAt) {
				r.connected = true
				s.logf("%s reconnects", r.id)
			}
			if r.stopping && len(r.inflight) == 0 {
				delete(s.leases, r.name)
				delete(s.reps, r.id)
				s.logf("%s released its Lease", r.id)
			}
		}
		for i := 0; i < len(s.later); i++ {
			if !s.now.Before(s.later[i].at) {
				s.later[i].do()
				s.later = slices.Delete(s.later, i, i+1)
				i--
			}
		}
		if changes && !s.now.Before(nextChange) {
			s.change()
			nextChange = s.now.Add(time.Duration(1+s.rng.IntN(5)) * time.Second)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// settle heals every partition, lets in-flight work finish, and checks that
// every replica is active on one common ring and every item has exactly the
// owner that ring names.
func (s *sim) settle() {
	for _, r := range s.sorted() {
		r.reconnectAt = s.now
	}
	s.run(s.now.Add(4*s.ld), false)
	for _, r := range s.sorted() {
		for tok, it := range r.inflight {
			s.done(r, tok, it)
		}
	}
	s.run(s.now.Add(3*s.rp), false)
	var ring *Ring
	for _, r := range s.sorted() {
		if !r.node.Active() {
			s.fail("%s is not active after settling (target %s, written %q)", r.id, r.node.Target().Version(), r.node.Written())
		}
		if ring == nil {
			ring = r.node.Target()
		} else if ring.Version() != r.node.Target().Version() {
			s.fail("%s targets ring %s, others %s", r.id, r.node.Target().Version(), ring.Version())
		}
	}
	if ring == nil {
		s.fail("no replica left")
	}
	if len(ring.Members()) != len(s.reps) {
		s.fail("ring has %d members, %d replicas run: %v", len(ring.Members()), len(s.reps), ring.Members())
	}
	for i, it := range s.items {
		want, has := ring.Owner(it)
		var got []string
		for _, r := range s.sorted() {
			if s.fresh(r) && r.node.Owns(it) {
				got = append(got, r.id)
			}
		}
		if has && !slices.Equal(got, []string{want}) || !has && len(got) > 0 {
			s.fail("item %d: owned by %v, ring says %q (%v)", i, got, want, has)
		}
	}
}

func TestHandoffModelCheck(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 20
	}
	totalChanges, totalAdmitted := 0, 0
	for seed := range uint64(seeds) {
		s := newSim(t, seed)
		for range 3 {
			s.join(0, nil)
		}
		s.run(s.now.Add(3*s.ld), false)
		s.settle()
		start := s.changes
		for s.changes-start < 25 {
			s.run(s.now.Add(10*time.Second), true)
		}
		s.settle()
		totalChanges += s.changes
		totalAdmitted += s.admitted
	}
	t.Logf("%d seeds, %d membership changes, %d reconciles admitted, no item held by two replicas", seeds, totalChanges, totalAdmitted)
}
