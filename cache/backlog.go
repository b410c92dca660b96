package cache

// backlog holds the changes an event handler has not received yet, merged
// per key, so that a slow handler never makes the informer wait and its
// memory is bounded by the number of keys it is behind on, not by the
// number of changes.
//
// For each waiting key it keeps what the handler must learn: the state the
// handler last knew (absent, or the object it last received), the current
// state, and, if the object was deleted in between, the object's last
// state before that first deletion. pop turns that into at most two
// changes: Added, Updated, Deleted, or Deleted then Added when the object
// was deleted and created again. Replaying what pop returns onto the
// handler's view therefore always yields the current state of the key,
// an Updated never joins two different objects, and a Deleted carries the
// last state of the object the handler knew.
//
// Keys come out in the order they first became waiting; a key that changes
// again while it waits keeps its place (as a deduplicating queue does).
// Markers (the end of the initial objects) keep their place among keys.
//
// It is pure and not safe for concurrent use; eventHandler locks it.
type backlog[T Object] struct {
	// order[head:] are the waiting slots, oldest first. Every key in byKey
	// has exactly one slot in order[head:]; a marker slot has no key.
	order []slot
	head  int
	byKey map[ObjectKey]*pending[T]
}

type slot struct {
	key    ObjectKey
	marker bool
}

// pending is one key's merged changes. before is what the handler last
// knew (hadBefore false: absent); after is the current state (hasAfter
// false: absent); gone is the last state of the handler's object before it
// was first deleted (goneSet false: not deleted while waiting).
type pending[T Object] struct {
	before, after, gone          T
	hadBefore, hasAfter, goneSet bool
}

// push records c. It returns whether c was merged into changes already
// waiting for its key (rather than making the key wait).
func (b *backlog[T]) push(c Change[T]) (merged bool) {
	p, ok := b.byKey[c.Key]
	if !ok {
		if b.byKey == nil {
			b.byKey = map[ObjectKey]*pending[T]{}
		}
		p = &pending[T]{}
		if c.Type != Added {
			p.before, p.hadBefore = c.Old, true
		}
		b.byKey[c.Key] = p
		b.order = append(b.order, slot{key: c.Key})
	}
	switch c.Type {
	case Added, Updated:
		p.after, p.hasAfter = c.New, true
	case Deleted:
		var zero T
		p.after, p.hasAfter = zero, false
		if p.hadBefore && !p.goneSet {
			p.gone, p.goneSet = c.Old, true
		}
	}
	return ok
}

// pushMarker appends a marker behind everything waiting.
func (b *backlog[T]) pushMarker() { b.order = append(b.order, slot{marker: true}) }

// pop removes the oldest waiting slot. ok is false when nothing waits. For
// a marker slot, marker is true; for a key, changes are what the handler
// must receive, in order (none when the key's changes cancelled out, e.g.
// an object added and deleted while it waited). changes is only valid
// until the next pop.
func (b *backlog[T]) pop(buf []Change[T]) (changes []Change[T], marker, ok bool) {
	if b.head == len(b.order) {
		return nil, false, false
	}
	s := b.order[b.head]
	b.order[b.head] = slot{}
	b.head++
	if b.head == len(b.order) {
		b.order, b.head = b.order[:0], 0
	} else if b.head > 1024 && b.head > len(b.order)/2 {
		b.order, b.head = append(b.order[:0], b.order[b.head:]...), 0
	}
	if s.marker {
		return nil, true, true
	}
	p := b.byKey[s.key]
	delete(b.byKey, s.key)
	changes = buf[:0]
	// hadBefore with neither goneSet nor hasAfter cannot happen: the first
	// change was an Updated (sets after) or a Deleted (sets gone).
	switch {
	case p.hadBefore && p.goneSet:
		changes = append(changes, Change[T]{Type: Deleted, Key: s.key, Old: p.gone})
		if p.hasAfter {
			changes = append(changes, Change[T]{Type: Added, Key: s.key, New: p.after})
		}
	case p.hadBefore && p.hasAfter:
		changes = append(changes, Change[T]{Type: Updated, Key: s.key, Old: p.before, New: p.after})
	case p.hasAfter:
		changes = append(changes, Change[T]{Type: Added, Key: s.key, New: p.after})
	}
	return changes, false, true
}

// keys returns how many keys wait.
func (b *backlog[T]) keys() int { return len(b.byKey) }

// slots returns how many slots (keys and markers) wait.
func (b *backlog[T]) slots() int { return len(b.order) - b.head }
