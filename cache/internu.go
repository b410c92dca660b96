package cache

import (
	"hash/maphash"
	"math"
	"slices"
	"unsafe"
)

// Interning unstructured objects. An *unstructured.Unstructured is a tree
// of map[string]any, []any and boxed scalars, and its cost is mostly that
// structure, not its strings: every map of up to eight entries takes 336
// bytes on the heap however few entries it holds, and every string stored
// in an interface is a 16-byte box of its own. So beyond interning keys and
// strings, the interner shares whole subtrees: a map or slice equal to one
// an earlier object of the informer holds (its labels, annotations, owner
// references, finalizers, a spec many objects have in common, …) is
// replaced by that one, and a string value that repeats is stored in one
// shared box.
//
// Sharing is bottom-up: an object's leaves are interned first, then each
// container is looked up by a hash of its (already shared) content and
// compared for equality, so the equality check of a parent mostly compares
// pointers. A string or subtree enters the tables on its second sighting
// (see seenStrings), subtrees only up to treeMaxSize and treeBudget bytes
// in all. The object's root map and its metadata map are never shared
// (they hold the object's name), nor are the values that are unique to one
// object by nature: metadata.name, uid and resourceVersion. Like every
// other shared part, the result is read-only: writing into a cached
// object's map would change other objects too. Interning writes into the
// object's own maps and slices (all but those that fill their group), so a
// Transform must not put one map or slice into several objects.

// uniqueMeta are the metadata members that differ between any two objects:
// interning them would only fill the tables.
var uniqueMeta = map[string]bool{"name": true, "uid": true, "resourceVersion": true}

// unstructured interns obj, an unstructured object's content, and returns
// it: obj, changed in place, or a new map if obj fills its group (see
// groupFull). Called with mu held.
func (in *interner) unstructured(obj map[string]any) map[string]any {
	if in.seenTrees == nil {
		in.seenStrs, in.seenTrees = new(seenStrings), new(seenTrees)
	}
	return in.uOwn(obj, false)
}

// uOwn interns m, a map that is never shared itself: the object's root,
// or (meta) its metadata, whose unique strings are only re-keyed. It
// returns m, or a new map if m fills its group.
func (in *interner) uOwn(m map[string]any, meta bool) map[string]any {
	out := writable(m)
	for k, v := range m {
		k = in.s(k)
		switch x := v.(type) {
		case map[string]any:
			if !meta && k == "metadata" {
				out[k] = in.uOwn(x, true)
				continue
			}
		case string:
			if meta && uniqueMeta[k] {
				// Re-keyed only. A value taken out of an interface and
				// put back is boxed anew, so it is stored as it came.
				out[k] = v
				continue
			}
		}
		out[k], _, _, _ = in.uValue(v)
	}
	return out
}

// uValue returns v interned: a string in its shared box, a map or slice
// with its contents interned, or an equal one an earlier object holds. It
// also returns v's content hash and approximate size in bytes, and ok
// false if v holds a type the JSON and CBOR decoders do not produce (then
// neither v nor any container around it is shared). Called with mu held.
func (in *interner) uValue(v any) (_ any, h uint64, size int, ok bool) {
	switch x := v.(type) {
	case string:
		h = maphash.String(in.seed, x)
		return in.box(x, v, h), h, 16 + len(x), true
	case map[string]any:
		return in.uMap(x)
	case []any:
		return in.uSlice(x)
	case nil:
		return nil, 0x6e756c6c, 16, true
	case bool, int64:
		return v, maphash.Comparable(in.seed, v), 16, true
	case float64:
		return v, maphash.Comparable(in.seed, math.Float64bits(x)), 16, true
	}
	return v, 0, 0, false
}

// box returns v, the string s (whose hash is h) in an interface, as the
// interface value whose box (and bytes) all equal strings share. A string
// gets a box in the table on its second sighting (see seenStrings), so
// unique ones (timestamps, messages) take no table entry. Called with mu
// held.
func (in *interner) box(s string, v any, h uint64) any {
	if len(s) == 0 || len(s) > internMaxLen {
		return v
	}
	if b, ok := in.boxes[s]; ok {
		return b
	}
	if !sawBefore(in.seenStrs[:], h) {
		return v
	}
	s = in.s(s)
	in.makeRoom()
	b := any(s)
	in.boxes[s] = b
	return b
}

// Doorkeepers: the hashes of strings and of subtrees seen once and not
// kept, direct-mapped (a slot holds the last hash that fell in it). A
// repeated subtree is kept if no more than a few thousand others came
// between its first two sightings; subtrees matter most (a shared map
// saves 336 bytes or more, a shared string box 16 to 40), so they get the
// bigger one. Allocated with the first unstructured object.
type (
	seenStrings [4096]uint64
	seenTrees   [16384]uint64
)

// sawBefore reports whether h was the last hash recorded in its slot of
// seen, and records it there.
func sawBefore(seen []uint64, h uint64) bool {
	p := &seen[h%uint64(len(seen))]
	if *p == h {
		return true
	}
	*p = h
	return false
}

// uMap interns m as uValue does. Called with mu held.
func (in *interner) uMap(m map[string]any) (any, uint64, int, bool) {
	var h uint64
	size := 48
	all := m != nil // a nil map (a Transform may leave one) is never kept
	out := writable(m)
	for k, v := range m {
		k = in.s(k)
		nv, hv, sv, ok := in.uValue(v)
		out[k] = nv
		all = all && ok
		size += 32 + sv
		// Order-independent, as map iteration is random: a sum of
		// per-entry hashes.
		h += maphash.String(in.seed, k)*0x9e3779b97f4a7c15 ^ hv
	}
	if !all || len(out) > internMaxMapLen {
		return out, h, size, false
	}
	h ^= 0x6d6170 // a map and a slice with the same entries differ
	return in.shareTree(out, h, size), h, size, true
}

// uSlice interns s as uValue does. Called with mu held.
func (in *interner) uSlice(s []any) (any, uint64, int, bool) {
	h := uint64(len(s))
	size := 24
	all := s != nil // a nil slice (a Transform may leave one) is never kept
	for i, v := range s {
		nv, hv, sv, ok := in.uValue(v)
		s[i] = nv
		all = all && ok
		size += 16 + sv
		h = h*0x100000001b3 ^ hv
	}
	if !all || len(s) > internMaxMapLen {
		return s, h, size, false
	}
	return in.shareTree(slices.Clip(s), h, size), h, size, true
}

// Bounds of the unstructured subtrees an interner keeps.
const (
	// treeMaxSize: bigger subtrees (by uValue's size) are not kept; they
	// rarely repeat whole, and their parts are kept instead.
	treeMaxSize = 4 << 10
	// treeBudget: when the kept subtrees add up to this many bytes, the
	// tables start afresh. Kept subtrees stay in memory while they are in
	// the table, even after every object holding them is gone.
	treeBudget = 4 << 20
)

// shareTree returns a container equal to v (a map[string]any or []any
// whose content hash is h and size size) that an earlier object holds, or
// v. v is kept for later objects only on its hash's second sighting (see
// sawBefore): a subtree holding something unique to its object (a spec
// with its own message, a status) is seen again only when that object is
// updated without changing it or listed again, so most never take a table
// entry.
func (in *interner) shareTree(v any, h uint64, size int) any {
	for _, c := range in.maps[h] {
		if uEqual(c, v) {
			return c
		}
	}
	if size > treeMaxSize || !sawBefore(in.seenTrees[:], h) {
		return v
	}
	if in.treeBytes+size > treeBudget {
		in.clear()
	}
	in.makeRoom()
	in.maps[h] = append(in.maps[h], v)
	in.nmaps++
	in.treeBytes += size
	return v
}

// uEqual reports whether a and b, values of an unstructured object, are
// equal: the same types, the same float bits (0 and -0 differ), nil and
// empty containers apart, and equal content. Containers that are the same one compare equal at once.
func uEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		if mapPointer(x) == mapPointer(y) {
			return true
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !uEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		if len(x) > 0 && &x[0] == &y[0] {
			return true
		}
		for i := range x {
			if !uEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case string, int64, bool, nil:
		return a == b
	}
	return false
}

// mapPointer is m's identity.
func mapPointer(m map[string]any) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&m)) }
