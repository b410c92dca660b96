// Package shard lets replicas of a controller share its work active-active:
// each replica holds its own Lease, the live replicas split the 64-bit hash
// space of object UIDs (or namespaces) into ranges, and a key moves between
// replicas only after its previous owner has drained it or lost its Lease.
// Kubernetes Leases are the only coordination; there is no leader.
//
// # Pieces
//
//   - Hashing (hash.go): Hash is 64-bit FNV-1a of the field, as the API
//     server computes it for a KEP-5866 shard selector; Range is [Start,
//     End) with End == 0 meaning 2^64; Selector renders ranges as
//     "shardRange(object.metadata.uid, '0x…', '0x…') || …" with exactly 16
//     hex digits and '0x10000000000000000' as the top, the form the server
//     accepts. ServerShards detects whether a server applies shard selectors
//     (with the ShardedListAndWatch gate off, kube-apiserver v1.36 ignores
//     the parameter and returns the whole list without metadata.shardInfo).
//   - Assignment (ring.go, pure): NewRing maps members with weights to Slots
//     = 256 fixed slots by weighted rendezvous hashing with quotas; a
//     member's ranges are its runs of adjacent slots (about 57 ranges, 5 KB
//     of selector, for one of three members). Shares are exact to one slot;
//     a membership change moves near the minimum (adding a fourth member to
//     three moves 0.27 of the space on average, minimum 0.25).
//   - Hand-off (node.go, pure): Node, the state machine described below.
//   - Membership (replica.go): Replica renews its own Lease
//     "<Group>-<Identity>" every RetryPeriod, lists the group's Leases,
//     feeds them to its Node, and admits work through Acquire.
//
// # Canaries
//
// A member joins with Weight 0.05 to get 5% of the hash space (Weight is a
// fraction of the space; 0 means an equal share of the rest), or with a
// label Selector to claim every object whose labels match, wherever it
// hashes. SetWeight and SetSelector widen, narrow or remove either at run
// time (0 / nil: back to an equal share / none), through the same hand-off.
// Label ownership combines with ranges by precedence: an object a
// Selector matches belongs to that member (the first by ID if several
// match), every other object to its slot's owner. It cannot be sharded on
// the server — a shard selector only hashes — so a selector member lists
// with a label selector, and range owners list their ranges and drop, on
// the client, objects another member's selector matches
// (Assignment.Excluded). A label edit moves an object without a ring
// change, so the hand-off protocol does not fence it: use labels that do
// not change while the canary runs.
//
// # Hand-off protocol
//
// Every member publishes in its Lease annotations its Weight, Selector and
// "drained": the version of the ring it has drained to. A ring's version is
// a hash of its members, weights and selectors, so every member that sees
// the same live Leases computes the same ring and version. Each member:
//
//  1. observes the target ring T of the live Leases (a quorum list, taken
//     after its own latest write) and what each member published;
//  2. stops admitting items it does not own under T, and once none of its
//     in-flight items is outside T, narrows admission to T and publishes
//     drained=T (PrepareDrained, written with every renewal after);
//  3. activates T — admits everything it owns under T — only when a
//     reading shows every live member of T, itself included, with
//     drained=T. A member whose Lease expired is not live and not waited for.
//
// Admission is always the intersection of the target, the ring last
// activated, and every ring published since: publishing only narrows it,
// only activation widens it. Why no item is held by two members: suppose m
// and b hold item i, admitted after their last activations of rings Rm
// (at time tm) and Rb (tb). If Rm = Rb, one of them does not own i. Else
// each activation read the other's Lease: m read b's drained=Rm, b read m's
// drained=Rb. m holds i since tm, so m did not publish Rb after tm (that
// would have narrowed m's admission to Rb, where i is b's): m published Rb
// before publishing Rm, and b's read of m's drained=Rb came before m's
// write of Rm, which came before m's read of b's drained=Rm. Symmetrically
// b wrote Rm before Rb and m's read came before b's write of Rb, which came
// before b's read — a cycle in real time (each read is a linearizable list
// taken after the reader's own latest write). The model check
// (handoff_sim_test.go) runs this with random joins, leaves, crashes,
// partitions and weight flips and fails on any overlap; it catches the
// bug when either the drained barrier or the narrowing on publication is
// removed.
//
// Failure cases:
//
//   - Crash during a drain: the member's Lease stops changing; others treat
//     it as expired LeaseDuration after they last saw it change, rebuild the
//     ring without it and no longer wait for its drained mark. Leases
//     expired for another LeaseDuration are deleted (preconditioned on their
//     resourceVersion).
//   - Partition: a member that has not renewed for RenewDeadline fences
//     itself: it admits nothing and cancels the contexts Acquire returned.
//     Others take its items no earlier than LeaseDuration after they last
//     saw its Lease change, so cancelled work must return within
//     LeaseDuration − RenewDeadline (3s by default). If its Lease was
//     deleted meanwhile it rejoins as a new member.
//   - Clock skew: expiry is measured on the observer's clock from when it
//     saw a Lease change, never from the renewTime another clock wrote, so
//     only clock rates matter: the bound above must hold after the rates'
//     drift over LeaseDuration.
//   - Join during a hand-off: rings change again before the barrier
//     completes; admission only narrows until some ring has every live
//     member's drained mark. Under churn faster than about two
//     RetryPeriods work stalls (safe, not live); once membership is still,
//     every item gets exactly one owner (checked by the model check).
//   - A new member first sees a crashed member's Lease as live for a
//     LeaseDuration (it cannot know how long it has been unchanged), so its
//     first activation can wait that long.
//
// # Wiring (intended; done by manager, builder, controller and cache)
//
//   - manager: an Options.Shard (shard.Options) makes the manager create one
//     Replica per controller group and run it like leader election: start
//     it before controllers, stop controllers (drain) before Run's context
//     ends so that release is immediate, and show Assignment on
//     /debug/skiff.
//   - controller: before Reconcile(key), a worker calls
//     Acquire(ctx, item) with the key's Item; if !ok it drops the key
//     (Forget, no retry: the owner has it); else it reconciles with the
//     returned context and calls release when done, before the key's Done.
//   - Item of a key: for Field Namespace, Hash(key.Namespace) — no lookup.
//     For UID, the builder records each key's Item when its handler
//     enqueues it (For: the object's UID; Owns: the owner reference's UID,
//     which the reference carries; delete events: the deleted object's
//     UID). A Watches mapping returns keys without UIDs: every replica
//     watches the Watches type unsharded, maps the event, and keeps the
//     keys whose primary object is in its own (sharded) cache; the owner
//     is the replica that has it.
//   - informers: with ServerShards true, the primary type's informer
//     lists and watches with ListOptions.ShardSelector =
//     Selector(field, Assignment.Ranges) and re-lists when Changed fires
//     with different ranges (before activation, so the cache is warm when
//     admission widens); a selector member adds a label-selected informer.
//     Without server support the same informer lists everything and drops
//     objects for which Assignment.Owns is false (the cost: every replica
//     reads every event). On each Changed the controller enqueues cached
//     objects it newly owns, so moved keys are reconciled without waiting
//     for a resync.
package shard
