package shard

import "time"

// liveness decides which Leases are live by this observer's own clock, as
// leader election does: a Lease is live until it has gone unchanged (same
// resourceVersion) for its lease duration since this observer first saw
// that version. Only clock rates must agree across replicas, not clocks: a
// replica's renewTime, written with its own clock, is never compared with
// ours.
type liveness struct {
	seen map[string]observation
}

type observation struct {
	rv    string
	since time.Time
	dur   time.Duration
}

// observe records that Lease name has resourceVersion rv and duration dur
// at now.
func (l *liveness) observe(name, rv string, dur time.Duration, now time.Time) {
	if l.seen == nil {
		l.seen = make(map[string]observation)
	}
	o, ok := l.seen[name]
	if !ok || o.rv != rv {
		o = observation{rv: rv, since: now}
	}
	o.dur = dur
	l.seen[name] = o
}

// live reports whether Lease name is live at now.
func (l *liveness) live(name string, now time.Time) bool {
	o, ok := l.seen[name]
	return ok && now.Sub(o.since) < o.dur
}

// expiredFor is how long Lease name has been expired at now (0 if live or
// unknown).
func (l *liveness) expiredFor(name string, now time.Time) time.Duration {
	o, ok := l.seen[name]
	if !ok {
		return 0
	}
	return max(0, now.Sub(o.since)-o.dur)
}

// forget drops Leases not in present (deleted ones).
func (l *liveness) forget(present map[string]bool) {
	for name := range l.seen {
		if !present[name] {
			delete(l.seen, name)
		}
	}
}

// leaseState is what a member reads from one Lease of its group.
type leaseState struct {
	name, rv, holder string
	dur              time.Duration
	annotations      map[string]string
}

// group is one reading of a group's Leases.
type group struct {
	members []Member
	drained map[string]string // published drained version by member ID
	stale   []leaseState      // expired for at least staleAfter: to delete
}

// readGroup turns one list of a group's Leases into the live members and
// what each published, using and updating live. The member's own Lease
// (selfName, held by selfID) is live while selfFresh, whatever live says.
func readGroup(ls []leaseState, selfName, selfID string, selfFresh bool, live *liveness, now time.Time, staleAfter time.Duration, log warner) group {
	g := group{drained: make(map[string]string)}
	present := make(map[string]bool, len(ls))
	for _, l := range ls {
		present[l.name] = true
		live.observe(l.name, l.rv, l.dur, now)
		self := l.name == selfName && l.holder == selfID
		alive := l.holder != "" && (self && selfFresh || !self && live.live(l.name, now))
		if !alive {
			if !self && live.expiredFor(l.name, now) >= staleAfter {
				g.stale = append(g.stale, l)
			}
			continue
		}
		g.members = append(g.members, memberOf(l.holder, l.annotations, log))
		g.drained[l.holder] = l.annotations[DrainedAnnotation]
	}
	live.forget(present)
	return g
}

type warner interface{ Warn(msg string, args ...any) }
