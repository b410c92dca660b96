package shard

import (
	"fmt"
	"hash/fnv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Field is the object field whose hash places an object in the hash space.
// These are the two fields the API server can hash for a shard selector
// (KEP-5866).
type Field int

const (
	// UID hashes metadata.uid: objects spread evenly over members whatever
	// their namespace. It is the zero value.
	UID Field = iota
	// Namespace hashes metadata.namespace: every object of a namespace has
	// one owner, and a key's owner is known from its namespace alone.
	Namespace
)

// Path is the field as a shard selector names it, e.g. "object.metadata.uid".
func (f Field) Path() string {
	switch f {
	case UID:
		return "object.metadata.uid"
	case Namespace:
		return "object.metadata.namespace"
	}
	panic(fmt.Sprintf("shard: unknown Field %d", int(f)))
}

func (f Field) String() string { return f.Path() }

// Hash is the 64-bit FNV-1a hash of the bytes of value: the position the
// API server gives an object whose field has that value.
func Hash(value string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(value))
	return h.Sum64()
}

// HashOf is the position of obj in the hash space under field f.
func HashOf(obj metav1.Object, f Field) uint64 {
	if f == Namespace {
		return Hash(obj.GetNamespace())
	}
	return Hash(string(obj.GetUID()))
}

// Item is what ownership is decided on: an object's position in the hash
// space and, when some member claims objects by label selector, its labels.
// A nil Labels matches a selector as an empty label set does.
type Item struct {
	Hash   uint64
	Labels labels.Labels
}

// ItemOf is the Item of obj under field f, with obj's labels.
func ItemOf(obj metav1.Object, f Field) Item {
	return Item{Hash: HashOf(obj, f), Labels: labels.Set(obj.GetLabels())}
}

// Range is the half-open interval [Start, End) of the 64-bit hash space.
// End == 0 stands for 2^64, the end of the space, so Range{0, 0} is the
// whole space and Range{1 << 63, 0} its upper half. A Range with
// Start >= End (other than End == 0) is empty; this package never returns
// one.
type Range struct {
	Start, End uint64
}

// Contains reports whether h lies in r.
func (r Range) Contains(h uint64) bool {
	return h >= r.Start && (r.End == 0 || h < r.End)
}

// Empty reports whether r contains no hash.
func (r Range) Empty() bool { return r.End != 0 && r.Start >= r.End }

// String is r as "[0x…, 0x…)", with the end of the space written as
// 0x10000000000000000.
func (r Range) String() string {
	return "[" + hexBound(r.Start, false) + ", " + hexBound(r.End, true) + ")"
}

// hexBound writes a bound the way the API server requires: '0x' and exactly
// 16 hex digits, except the exclusive top of the space, 2^64.
func hexBound(v uint64, end bool) string {
	if end && v == 0 {
		return "0x10000000000000000"
	}
	return fmt.Sprintf("0x%016x", v)
}

// Selector renders ranges as a KEP-5866 shard selector over field f, e.g.
//
//	shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') || shardRange(...)
//
// for metav1.ListOptions.ShardSelector. Ranges are written in the order
// given; empty ones are skipped. ok is false when no range is left: an
// empty selector means "everything" to the server, so a member that owns
// nothing must not list at all rather than send "".
func Selector(f Field, ranges []Range) (sel string, ok bool) {
	var b strings.Builder
	for _, r := range ranges {
		if r.Empty() {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(" || ")
		}
		fmt.Fprintf(&b, "shardRange(%s, '%s', '%s')", f.Path(), hexBound(r.Start, false), hexBound(r.End, true))
	}
	return b.String(), b.Len() > 0
}

// InRanges reports whether h lies in one of ranges: the client-side filter
// equivalent to Selector for a server that cannot shard.
func InRanges(h uint64, ranges []Range) bool {
	for _, r := range ranges {
		if r.Contains(h) {
			return true
		}
	}
	return false
}
