package shard

import "slices"

// Node is the hand-off state machine of one member: pure (no I/O, no
// clock, no goroutines), driven by its caller in three steps that repeat:
//
//  1. Observe the ring of the live members and what each has published
//     as drained;
//  2. PrepareDrained: if every in-flight item still belongs to this
//     member under the observed ring, narrow admission to that ring and
//     return its version to publish (the caller writes it into its Lease
//     with every renewal from then on);
//  3. Admit and Done around every reconcile.
//
// Admission is the heart of it. A Node admits an item only if it owns the
// item under the target ring and under every ring in its chain: the ring it
// last activated and every ring it has published since. Publishing only
// narrows the chain; the chain is widened only by activation, which
// requires the latest observation — a consistent snapshot taken after this
// member's latest publication — to show every live member of the target
// ring, this one included, as drained to the target. The package doc gives
// the argument why two members then never hold one item at once.
//
// A Node is not safe for concurrent use; Replica serialises access.
type Node struct {
	self   string
	target *Ring
	// chain: an item is admitted only if self owns it under every ring
	// here (and under target). nil admits nothing; after activation it is
	// exactly [target].
	chain []*Ring
	// written is the version last returned by PrepareDrained: what this
	// member publishes as drained. "" until the first one and after Fence.
	written string
	// fenced is set by Fence while items admitted before it are still in
	// flight; nothing is published until they are done.
	fenced   bool
	inflight map[uint64]Item
	next     uint64
}

// NewNode returns the state machine of member self. It admits nothing until
// it has published a ring and seen every live member drained to it.
func NewNode(self string) *Node {
	return &Node{self: self, inflight: make(map[uint64]Item)}
}

// Observe records the ring of the live members and what each published as
// drained (by member ID). drained must come from one consistent read taken
// after this member's latest write (a quorum list of the Leases), and must
// include this member's own published value. It activates the ring —
// admission widens to all of target's items owned by self — when this
// member wrote target's version and every member of target published it.
// It reports whether the target or admission changed.
func (n *Node) Observe(target *Ring, drained map[string]string) (changed bool) {
	if n.target == nil || target.Version() != n.target.Version() {
		n.target = target
		changed = true
	}
	v := target.Version()
	if n.written != v || n.fenced || !target.Has(n.self) {
		return changed
	}
	for _, m := range target.members {
		if drained[m.ID] != v {
			return changed
		}
	}
	if len(n.chain) == 1 && n.chain[0].Version() == v {
		return changed
	}
	n.chain = []*Ring{target}
	return true
}

// PrepareDrained returns the version to publish as drained, if there is
// one to publish now: the target differs from what was last written, no
// Fence is pending, and every in-flight item is still self's under the
// target. Before returning it narrows admission to the target too, so the
// caller must treat the version as published from this call on (write it
// with every renewal until PrepareDrained returns another one).
func (n *Node) PrepareDrained() (version string, ok bool) {
	if n.target == nil || n.fenced || n.target.Version() == n.written {
		return "", false
	}
	for _, it := range n.inflight {
		if !n.target.Owns(n.self, it) {
			return "", false
		}
	}
	n.written = n.target.Version()
	if n.chain != nil && !slices.ContainsFunc(n.chain, func(r *Ring) bool { return r.Version() == n.written }) {
		n.chain = append(n.chain, n.target)
	}
	return n.written, true
}

// Written is the drained version this member publishes ("" for none).
func (n *Node) Written() string { return n.written }

// Admit reports whether self may start work on it now and, if so, returns a
// token for Done.
func (n *Node) Admit(it Item) (token uint64, ok bool) {
	if !n.Owns(it) {
		return 0, false
	}
	n.next++
	n.inflight[n.next] = it
	return n.next, true
}

// Owns reports whether Admit would admit it now.
func (n *Node) Owns(it Item) bool {
	if n.chain == nil || n.fenced || !n.target.Owns(n.self, it) {
		return false
	}
	for _, r := range n.chain {
		if !r.Owns(n.self, it) {
			return false
		}
	}
	return true
}

// Done ends the work admitted with token. It reports whether that unblocked
// a publication (PrepareDrained may now return a version).
func (n *Node) Done(token uint64) (unblocked bool) {
	it, ok := n.inflight[token]
	if !ok {
		return false
	}
	delete(n.inflight, token)
	if n.fenced && len(n.inflight) == 0 {
		n.fenced = false
		return true
	}
	return n.target != nil && !n.target.Owns(n.self, it) && n.target.Version() != n.written
}

// Fence withdraws everything: this member lost (or may have lost) its Lease,
// so others may take its items. Nothing is admitted and nothing published
// until every item in flight is done, and then the member starts over as if
// new: publish the target, wait for every live member to match.
func (n *Node) Fence() {
	n.chain = nil
	n.written = ""
	n.fenced = len(n.inflight) > 0
}

// Active reports whether admission equals the target ring: the member has
// its full share.
func (n *Node) Active() bool {
	return n.target != nil && len(n.chain) == 1 && n.chain[0].Version() == n.target.Version() && !n.fenced
}

// Target is the ring last observed (nil before the first Observe).
func (n *Node) Target() *Ring { return n.target }

// InFlight is how many admitted items are not yet done.
func (n *Node) InFlight() int { return len(n.inflight) }

// Losing is how many in-flight items are not self's under the target: the
// work a hand-off is waiting for.
func (n *Node) Losing() int {
	c := 0
	for _, it := range n.inflight {
		if n.target == nil || !n.target.Owns(n.self, it) {
			c++
		}
	}
	return c
}
