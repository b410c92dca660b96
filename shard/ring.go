package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Slots is how many equal, fixed slots the hash space is cut into; slot i
// is [i<<56, (i+1)<<56), so an object's slot is its hash's top byte. A ring
// gives each slot to one member, so shares are multiples of 1/256 (≈0.4%)
// and a member's ranges are its runs of adjacent slots: at most 128 ranges,
// typically Slots·p·(1−p) for a share p (≈57 for one of three equal
// members), which keeps a shard selector within a few kilobytes.
const Slots = 256

// Member is one participant of a ring as every member sees it (published in
// its Lease).
type Member struct {
	// ID names the member; unique within a ring. Required.
	ID string
	// Weight is the fraction of the hash space the member asks for, in
	// [0, 1]. Default 0: an equal share of what the weighted members leave
	// (or, for a member with a Selector, no hash share at all). A canary
	// joins with, say, 0.05 to get 5% of the space; setting it back to 0
	// widens it to an equal share. See NewRing for how shares are computed.
	Weight float64
	// Selector, if not nil, claims every object whose labels it matches,
	// whatever its hash: such objects belong to this member and to no
	// hash-range owner. Default nil: the member owns only its hash ranges.
	// Ownership by label cannot be expressed as a shard selector, so it is
	// enforced on the client (see the package doc).
	Selector labels.Selector
}

func (m Member) String() string {
	s := m.ID
	if m.Weight != 0 {
		s += fmt.Sprintf("(weight %g)", m.Weight)
	}
	if m.Selector != nil {
		s += fmt.Sprintf("(selector %q)", m.Selector.String())
	}
	return s
}

// Ring is an assignment of the hash space (and of label-selected objects)
// to members. It is a pure function of its members: every replica that sees
// the same members computes the same Ring and the same Version. A Ring is
// immutable and safe for concurrent use.
type Ring struct {
	version string
	members []Member // sorted by ID
	owner   [Slots]int16
}

// ErrNoMembers is returned by NewRing for an empty member list.
var ErrNoMembers = errors.New("shard: a ring needs at least one member")

// NewRing assigns the hash space to members.
//
// Shares: a member with Weight w > 0 asks for w; the E members with weight 0
// and no Selector split the rest equally, but each gets at least 1/(E+K) of
// the total before normalisation (K = members with a weight), so no equal
// member starves when the weights add up to 1 or more. All shares are then
// scaled to sum to 1. A member with a Selector and weight 0 has no hash
// share. If no member has a hash share, every slot is unowned.
//
// Slots: each member's quota is its share of Slots, rounded by largest
// remainder (ties to the smaller ID). Slots go to members by weighted
// rendezvous hashing with quotas: every (member, slot) pair gets a score
// w/−ln(u), u uniform in (0,1) from the FNV-1a hash of the member ID and the
// slot; pairs are taken best score first and a slot goes to the first
// member that still has quota. A membership or weight change therefore
// moves close to the minimum: a joining member takes about its share, taken
// from the others in proportion to theirs, and the rest stays where it was
// (the property tests measure it).
func NewRing(members []Member) (*Ring, error) {
	if len(members) == 0 {
		return nil, ErrNoMembers
	}
	if len(members) > math.MaxInt16 {
		return nil, fmt.Errorf("shard: %d members is more than a ring supports (%d)", len(members), math.MaxInt16)
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for i, m := range ms {
		if m.ID == "" {
			return nil, errors.New("shard: a ring member has an empty ID")
		}
		if i > 0 && ms[i-1].ID == m.ID {
			return nil, fmt.Errorf("shard: member %q appears twice", m.ID)
		}
		if math.IsNaN(m.Weight) || m.Weight < 0 || m.Weight > 1 {
			return nil, fmt.Errorf("shard: member %q has weight %v, want a number in [0, 1]", m.ID, m.Weight)
		}
	}
	r := &Ring{members: ms, version: ringVersion(ms)}
	for i := range r.owner {
		r.owner[i] = -1
	}
	shares := shares(ms)
	quota := quotas(shares)
	type pair struct {
		score  float64
		member int16
		slot   int16
	}
	var pairs []pair
	for i, s := range shares {
		if quota[i] == 0 {
			continue
		}
		for slot := range Slots {
			pairs = append(pairs, pair{score(ms[i].ID, slot, s), int16(i), int16(slot)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		if a.member != b.member {
			return int(a.member) - int(b.member)
		}
		return int(a.slot) - int(b.slot)
	})
	for _, p := range pairs {
		if r.owner[p.slot] < 0 && quota[p.member] > 0 {
			r.owner[p.slot] = p.member
			quota[p.member]--
		}
	}
	return r, nil
}

// shares is each member's normalised fraction of the hash space.
func shares(ms []Member) []float64 {
	var fixed float64
	var equal, weighted int
	for _, m := range ms {
		switch {
		case m.Weight > 0:
			fixed += m.Weight
			weighted++
		case m.Selector == nil:
			equal++
		}
	}
	each := 0.0
	if equal > 0 {
		each = max((1-fixed)/float64(equal), 1/float64(equal+weighted))
	}
	out := make([]float64, len(ms))
	var total float64
	for i, m := range ms {
		switch {
		case m.Weight > 0:
			out[i] = m.Weight
		case m.Selector == nil:
			out[i] = each
		}
		total += out[i]
	}
	if total > 0 {
		for i := range out {
			out[i] /= total
		}
	}
	return out
}

// quotas rounds shares·Slots to whole slots summing to Slots (or 0 when no
// member has a share), by largest remainder, ties to the earlier member.
func quotas(shares []float64) []int {
	q := make([]int, len(shares))
	type rem struct {
		frac float64
		i    int
	}
	var rems []rem
	left := Slots
	any := false
	for i, s := range shares {
		if s <= 0 {
			continue
		}
		any = true
		exact := s * Slots
		q[i] = int(math.Floor(exact))
		left -= q[i]
		rems = append(rems, rem{exact - float64(q[i]), i})
	}
	if !any {
		return q
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		if a.frac > b.frac {
			return -1
		}
		if a.frac < b.frac {
			return 1
		}
		return 0
	})
	for k := 0; left > 0; k = (k + 1) % len(rems) {
		q[rems[k].i]++
		left--
	}
	return q
}

// score is the weighted rendezvous score of a member for a slot.
func score(id string, slot int, weight float64) float64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(slot))
	h.Write(b[:])
	// Mix the FNV output: FNV's low-entropy tail would correlate slots.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return weight / -math.Log(u)
}

// ringVersion identifies a ring by its members, weights and selectors.
func ringVersion(ms []Member) string {
	h := fnv.New64a()
	h.Write([]byte("skiff-shard-v1"))
	for _, m := range ms {
		h.Write([]byte{0})
		h.Write([]byte(m.ID))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatFloat(m.Weight, 'g', -1, 64)))
		if m.Selector != nil {
			h.Write([]byte{1})
			h.Write([]byte(m.Selector.String()))
		} else {
			h.Write([]byte{0})
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// Version identifies the ring: equal for rings of equal members (IDs,
// weights and selectors), different otherwise (up to 64-bit collisions).
func (r *Ring) Version() string { return r.version }

// Members returns the ring's members sorted by ID. The caller owns the slice.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Has reports whether id is a member of the ring.
func (r *Ring) Has(id string) bool { return r.index(id) >= 0 }

func (r *Ring) index(id string) int {
	i, ok := slices.BinarySearchFunc(r.members, id, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	if !ok {
		return -1
	}
	return i
}

// Owner is the member that owns it: the first member (by ID) whose Selector
// matches it.Labels, else the owner of its hash's slot. ok is false if no
// member owns it (no member has a hash share).
func (r *Ring) Owner(it Item) (id string, ok bool) {
	i := r.ownerIndex(it)
	if i < 0 {
		return "", false
	}
	return r.members[i].ID, true
}

func (r *Ring) ownerIndex(it Item) int {
	for i, m := range r.members {
		if m.Selector == nil {
			continue
		}
		lbls := it.Labels
		if lbls == nil {
			lbls = labels.Set(nil)
		}
		if m.Selector.Matches(lbls) {
			return i
		}
	}
	return int(r.owner[it.Hash>>56])
}

// Owns reports whether member id owns it.
func (r *Ring) Owns(id string, it Item) bool {
	i := r.ownerIndex(it)
	return i >= 0 && r.members[i].ID == id
}

// Ranges returns the hash ranges of member id, ascending, adjacent slots
// merged. Objects in them that a selector member claims are not id's; see
// Owner. The caller owns the slice.
func (r *Ring) Ranges(id string) []Range {
	i := r.index(id)
	if i < 0 {
		return nil
	}
	var out []Range
	for s := 0; s < Slots; s++ {
		if int(r.owner[s]) != i {
			continue
		}
		start := uint64(s) << 56
		end := uint64(s+1) << 56 // wraps to 0, the end of the space, for the last slot
		if n := len(out); n > 0 && out[n-1].End == start {
			out[n-1].End = end
			continue
		}
		out = append(out, Range{start, end})
	}
	return out
}

// Share is the fraction of the hash space member id owns.
func (r *Ring) Share(id string) float64 {
	i := r.index(id)
	n := 0
	for _, o := range r.owner {
		if i >= 0 && int(o) == i {
			n++
		}
	}
	return float64(n) / Slots
}

// Selector is the label selector of member id (nil if none or not a member).
func (r *Ring) Selector(id string) labels.Selector {
	if i := r.index(id); i >= 0 {
		return r.members[i].Selector
	}
	return nil
}

// Selectors returns the label selectors of every member that has one except
// id: the objects id must leave to others even inside its ranges.
func (r *Ring) Selectors(except string) []labels.Selector {
	var out []labels.Selector
	for _, m := range r.members {
		if m.Selector != nil && m.ID != except {
			out = append(out, m.Selector)
		}
	}
	return out
}

// ringFor is NewRing(members), or prev if it has the same version: the
// common case of a reading that changed nothing, without re-assigning.
func ringFor(prev *Ring, members []Member) (*Ring, error) {
	if prev != nil {
		ms := slices.Clone(members)
		slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
		if ringVersion(ms) == prev.version {
			return prev, nil
		}
	}
	return NewRing(members)
}
