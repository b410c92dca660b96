package controller

import "context"

// Gate admits keys to their reconcile, for controllers whose work is shared
// between replicas (see package shard): a key the gate refuses belongs to
// another replica, or is being handed over, and is dropped here.
//
// Admit is called by a worker before each Reconcile(key). If ok is false
// the key is dropped: it is forgotten by the queue (no retry; its failure
// count is reset) and not reconciled; whoever refused it is responsible for
// it reaching its owner. If ok is true the reconcile runs with ctx2 (which
// the gate may cancel, e.g. when the replica loses its membership) and the
// worker calls release exactly once after Reconcile returns and its result
// has been applied to the queue, before the key is marked done. Admit must
// be safe for concurrent use and must not block for long.
type Gate[K comparable] interface {
	Admit(ctx context.Context, key K) (ctx2 context.Context, release func(), ok bool)
}
