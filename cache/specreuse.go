package cache

import (
	"context"
	"hash/maphash"
	"reflect"

	corev1 "k8s.io/api/core/v1"
)

// Spec reuse: most updates of a cached object change its metadata or
// status, not its spec (an annotation patch, a status heartbeat), yet
// decoding a pod's spec is most of decoding the pod. For types whose spec
// is protobuf field 2 of the object message (pods, deployments, …), the
// protobuf watch reader (and the page decoder, pagedecode.go) hashes the spec's wire bytes of every object it
// decodes; the informer remembers, per key, the hash and the stored object
// it came from. An update whose spec bytes hash the same as the stored
// object's is decoded without its spec, and its Spec is set to a shallow
// copy of the stored object's Spec: the new object shares the stored one's
// slices, maps and pointers.
//
// Sharing is safe for the reason interning is (see interner): cached
// objects are read-only, and Transform never sees a shared spec (reuse is
// on only with the default transform; interning skips a reused spec, it
// was interned when first decoded).
//
// The hash is maphash (64 bits, a random seed per informer) of the spec's
// bytes, compared together with their length: two different specs of one
// key reuse wrongly only if they have the same length and the same hash,
// a chance of about 2⁻⁶⁴ per update, and the seed is not known outside the
// process, so nobody can craft such a pair. Keeping the bytes instead
// would be exact but cost ~1–2 KB per pod, a quarter of the cached pod.

// specWireField is the protobuf field number of Spec in the object
// messages whose spec can be reused.
const specWireField = 2

// specReuse is one informer's memory of its stored objects' spec hashes.
// It is used on the reflector's goroutine only (the watch decoder runs
// there, see eventSource), so it has no lock.
//
// Invariant: every entry of known pairs an object the store holds with the
// hash of the spec bytes it was decoded from (or whose spec it shares). A
// pair is consistent on its own, so a stale entry can cost a reuse, never
// give a wrong spec.
type specReuse struct {
	typ   reflect.Type // T's element type (a struct)
	field int          // index of its Spec field
	seed  maphash.Seed

	// share, if not nil, decodes specs that are not reused (pods only),
	// sharing their template parts across objects (see podSpecSharer).
	share *podSpecSharer

	known map[ObjectKey]specMark
	// decoded holds the objects the watch decoder produced since the
	// reflector last applied a batch, by identity.
	decoded map[any]specDecoded
}

// specMark is a stored object and the hash of its spec's wire bytes.
type specMark struct {
	obj  any
	hash uint64
	n    int
}

type specDecoded struct {
	hash     uint64
	n        int
	reused   bool // Spec is shared with a stored object
	interned bool // Spec was decoded (and interned) by share
}

// newSpecReuse returns a specReuse for T if T is a pointer to a struct
// whose Spec field is length-delimited protobuf field 2, else nil.
func newSpecReuse[T Object]() *specReuse {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return nil
	}
	elem := typ.Elem()
	f, ok := elem.FieldByName("Spec")
	if !ok || len(f.Index) != 1 || f.Type.Kind() != reflect.Struct || !hasProtobufField(elem, "Spec", specWireField) {
		return nil
	}
	if _, ok := reflect.New(f.Type).Interface().(interface{ Unmarshal([]byte) error }); !ok {
		return nil
	}
	return &specReuse{
		typ: elem, field: f.Index[0], seed: maphash.MakeSeed(),
		known: map[ObjectKey]specMark{}, decoded: map[any]specDecoded{},
	}
}

// specOf returns obj's Spec field (addressable); obj must be a pointer to
// s.typ.
func (s *specReuse) specOf(obj any) reflect.Value {
	return reflect.ValueOf(obj).Elem().Field(s.field)
}

// decode unmarshals the object message raw into obj (a new, empty pointer
// to s.typ), reusing the stored spec of obj's key if raw's spec bytes hash
// the same. rest is a scratch buffer (returned for reuse). It returns false
// (obj untouched) if raw's spec is not a single length-delimited field 2;
// the caller then decodes raw whole.
func (s *specReuse) decode(obj protoObject, raw, rest []byte) ([]byte, bool, error) {
	start, valStart, end, ok := singleField(raw, specWireField)
	if !ok {
		return rest, false, nil
	}
	spec := raw[valStart:end]
	h := maphash.Bytes(s.seed, spec)
	rest = append(append(rest[:0], raw[:start]...), raw[end:]...)
	if err := obj.Unmarshal(rest); err != nil {
		return rest, true, err
	}
	d := specDecoded{hash: h, n: len(spec)}
	if acc, ok := obj.(Object); ok {
		m, ok := s.known[KeyOf(acc)]
		if ok && m.hash == h && m.n == len(spec) && reflect.TypeOf(m.obj) == reflect.TypeOf(obj) {
			s.specOf(obj).Set(s.specOf(m.obj))
			d.reused = true
		}
	}
	if !d.reused {
		// What the object's own Unmarshal does with field 2: unmarshal
		// it into the (zero) Spec.
		target := s.specOf(obj).Addr().Interface()
		if ps, ok := target.(*corev1.PodSpec); ok && s.share != nil {
			// share keeps no reference to rest (its scratch is its own).
			if err := s.share.decode(ps, spec); err != nil {
				return rest, true, err
			}
			d.interned = true
		} else if err := target.(interface{ Unmarshal([]byte) error }).Unmarshal(spec); err != nil {
			return rest, true, err
		}
	}
	s.decoded[obj] = d
	return rest, true, nil
}

// reused reports whether obj's Spec is shared with a stored object.
func (s *specReuse) reused(obj any) bool { return s.decoded[obj].reused }

// specInterned reports whether obj's Spec needs no interning: it is
// shared with a stored object, or share decoded and interned it.
func (s *specReuse) specInterned(obj any) bool {
	d := s.decoded[obj]
	return d.reused || d.interned
}

// stored records that the store now holds obj under key.
func (s *specReuse) stored(key ObjectKey, obj any) {
	if d, ok := s.decoded[obj]; ok {
		s.known[key] = specMark{obj: obj, hash: d.hash, n: d.n}
		return
	}
	delete(s.known, key)
}

// deleted records that key left the store.
func (s *specReuse) deleted(key ObjectKey) { delete(s.known, key) }

// batchDone forgets the objects decoded for the batch just applied.
func (s *specReuse) batchDone() { clear(s.decoded) }

// reset forgets everything: the store is about to be relisted.
func (s *specReuse) reset() {
	s.known = map[ObjectKey]specMark{} // a fresh map: clear keeps the old buckets
	clear(s.decoded)
}

// singleField finds the only occurrence of field num in msg, which must be
// length-delimited: the field starts at msg[start] (its tag), its value is
// msg[valStart:end]. ok is false if the field is absent, repeated, not
// length-delimited, or msg is malformed.
func singleField(msg []byte, num uint64) (start, valStart, end int, ok bool) {
	found := false
	for i := 0; i < len(msg); {
		n, wt, tl := readTag(msg[i:])
		if tl <= 0 {
			return 0, 0, 0, false
		}
		vs, e, err := fieldExtent(msg, i+tl, wt)
		if err != nil {
			return 0, 0, 0, false
		}
		if n == num {
			if found || wt != wireBytes {
				return 0, 0, 0, false
			}
			found, start, valStart, end = true, i, vs, e
		}
		i = e
	}
	return start, valStart, end, found
}

// specReuseKey carries an informer's specReuse to its watch requests,
// lent for the Watch call (see lent).
type specReuseKey struct{}

// withSpecReuse lends s to the callee through ctx; call revoke when the
// call returns.
func withSpecReuse(ctx context.Context, s *specReuse) (_ context.Context, revoke func()) {
	if s == nil {
		return ctx, func() {}
	}
	l := lend(s)
	return context.WithValue(ctx, specReuseKey{}, l), l.revoke
}

// specReuseOf returns the specReuse lent through ctx, or nil if there is
// none or it was revoked.
func specReuseOf(ctx context.Context) *specReuse {
	l, _ := ctx.Value(specReuseKey{}).(*lent[specReuse])
	return l.get()
}
