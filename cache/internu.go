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
// pointers. The object's root map and its metadata map are never shared
// (they hold the object's name), nor are the values that are unique to one
// object by nature: metadata.name, uid and resourceVersion. Like every
// other shared part, the result is read-only: writing into a cached
// object's map would change other objects too.

// uniqueMeta are the metadata members that differ between any two objects:
// interning them would only fill the tables.
var uniqueMeta = map[string]bool{"name": true, "uid": true, "resourceVersion": true}

// unstructured interns obj, an unstructured object's content, and returns
// it: obj, changed in place, or a new map if obj fills its group (see
// groupFull). Called with mu held.
func (in *interner) unstructured(obj map[string]any) map[string]any {
	out := outMap(obj)
	for k, v := range obj {
		k = in.s(k)
		if md, ok := v.(map[string]any); ok && k == "metadata" {
			out[k] = in.uMeta(md)
			continue
		}
		out[k], _, _ = in.uValue(v)
	}
	return out
}

// uMeta interns md, an object's metadata, as unstructured does its root:
// md itself is never shared.
func (in *interner) uMeta(md map[string]any) map[string]any {
	out := outMap(md)
	for k, v := range md {
		k = in.s(k)
		if _, ok := v.(string); ok && uniqueMeta[k] {
			// Re-keyed only. A value taken out of an interface and put
			// back is boxed anew, so it is stored as it came.
			out[k] = v
			continue
		}
		out[k], _, _ = in.uValue(v)
	}
	return out
}

// outMap is where interning m's entries goes: m itself, or a new map of the
// same size when writing to m would grow it (see groupFull).
func outMap(m map[string]any) map[string]any {
	if groupFull(len(m)) {
		return make(map[string]any, len(m))
	}
	return m
}

// uValue returns v interned: a string in its shared box, a map or slice
// with its contents interned, or an equal one an earlier object holds. It
// also returns v's content hash, and ok false if v holds a type the JSON
// and CBOR decoders do not produce (then neither v nor any container
// around it is shared).
func (in *interner) uValue(v any) (_ any, h uint64, ok bool) {
	switch x := v.(type) {
	case string:
		return in.box(x, v), maphash.String(in.seed, x), true
	case map[string]any:
		return in.uMap(x)
	case []any:
		return in.uSlice(x)
	case nil:
		return nil, 0x6e756c6c, true
	case bool, int64:
		return v, maphash.Comparable(in.seed, v), true
	case float64:
		return v, maphash.Comparable(in.seed, math.Float64bits(x)), true
	}
	return v, 0, false
}

// box returns v, the string s in an interface, as the interface value
// whose box (and bytes) all equal strings share. Called with mu held.
func (in *interner) box(s string, v any) any {
	if len(s) == 0 || len(s) > internMaxLen {
		return v
	}
	if b, ok := in.boxes[s]; ok {
		return b
	}
	s = in.s(s)
	in.makeRoom()
	b := any(s)
	in.boxes[s] = b
	return b
}

func (in *interner) uMap(m map[string]any) (any, uint64, bool) {
	var h uint64
	all := true
	out := outMap(m)
	for k, v := range m {
		k = in.s(k)
		nv, hv, ok := in.uValue(v)
		out[k] = nv
		all = all && ok
		// Order-independent, as map iteration is random: a sum of
		// per-entry hashes.
		h += maphash.String(in.seed, k)*0x9e3779b97f4a7c15 ^ hv
	}
	if !all || len(out) > internMaxMapLen {
		return out, h, false
	}
	h ^= 0x6d6170 // a map and a slice with the same entries differ
	return in.shareTree(out, h), h, true
}

func (in *interner) uSlice(s []any) (any, uint64, bool) {
	h := uint64(len(s))
	all := true
	for i, v := range s {
		nv, hv, ok := in.uValue(v)
		s[i] = nv
		all = all && ok
		h = h*0x100000001b3 ^ hv
	}
	if !all || len(s) > internMaxMapLen {
		return s, h, false
	}
	return in.shareTree(slices.Clip(s), h), h, true
}

// shareTree returns a container equal to v (a map[string]any or []any
// whose content hash is h) that an earlier object holds, or v. v is kept
// for later objects only once its hash has been seen before (see
// in.seen): most subtrees that hold something unique (a spec with its own
// message, a status) never repeat, and keeping each would cost a table
// entry per object.
func (in *interner) shareTree(v any, h uint64) any {
	for _, c := range in.maps[h] {
		if uEqual(c, v) {
			return c
		}
	}
	if s := &in.seen[h%uint64(len(in.seen))]; *s != h {
		*s = h
		return v
	}
	in.makeRoom()
	in.maps[h] = append(in.maps[h], v)
	in.nmaps++
	return v
}

// uEqual reports whether a and b, values of an unstructured object, are
// equal: the same types, the same float bits (0 and -0 differ), and equal
// content. Containers that are the same one compare equal at once.
func uEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
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
		if !ok || len(x) != len(y) {
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
