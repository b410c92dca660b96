package cache

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
)

// Compact mode (Options.Compact): the store keeps each object as the bytes
// of a Codec — for built-in types the protobuf of the transformed object
// (what the wire carries with managedFields and the last-applied annotation
// cut out), for other types its JSON — next to what reads need without a
// decode: the key, the resourceVersion, the labels, and the values of the
// custom indexes, all extracted once when the object is stored. Key
// handlers, indexes, label selectors and resourceVersion comparisons never
// decode; Get, List and ByIndex decode a fresh object on every call, and
// event handlers get the object decoded from the watch (New) and one
// decoded from the stored bytes (Old of an update or delete).
//
// Trade-off: a cached pod costs its encoded size plus ~0.5 KB instead of
// its decoded Go structure (several times more), and every read costs a
// decode (see bench/README.md, I2c) instead of a pointer copy. Reads hand
// out objects the caller owns.

// Codec turns a cached object into compact bytes and back, for a compact
// store. Append and Decode may be called concurrently.
type Codec[T Object] interface {
	// Append appends obj's encoding to dst.
	Append(dst []byte, obj T) ([]byte, error)
	// Decode returns a new object decoded from data. The object must not
	// share memory with data (the store hands it to callers who may change
	// it, and keeps data).
	Decode(data []byte) (T, error)
}

// protoMessage is what the generated protobuf code of k8s.io/api types
// provides.
type protoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
	Unmarshal([]byte) error
}

// DefaultCodec returns the codec a compact store of T uses by default:
// ProtobufCodec for types with generated protobuf code (every k8s.io/api
// type), JSONCodec otherwise (custom resource structs, Unstructured).
func DefaultCodec[T Object]() Codec[T] {
	var zero T
	if _, ok := any(zero).(protoMessage); ok && reflect.TypeFor[T]().Kind() == reflect.Pointer {
		return ProtobufCodec[T]{}
	}
	return JSONCodec[T]{}
}

// ProtobufCodec encodes T with its generated protobuf code (T must be a
// pointer to a k8s.io/api struct or another gogo-protobuf message). The
// encoding leaves out TypeMeta, which objects decoded by informers do not
// carry either. Decoded strings and byte slices are copies.
type ProtobufCodec[T Object] struct{}

// Append appends obj's protobuf encoding to dst.
func (ProtobufCodec[T]) Append(dst []byte, obj T) ([]byte, error) {
	m, ok := any(obj).(protoMessage)
	if !ok {
		return dst, fmt.Errorf("%T has no generated protobuf code", obj)
	}
	n := m.Size()
	dst = slices.Grow(dst, n)
	buf := dst[len(dst) : len(dst)+n]
	w, err := m.MarshalToSizedBuffer(buf)
	if err != nil {
		return dst, fmt.Errorf("marshal %T: %w", obj, err)
	}
	if w != n { // the generated code writes exactly Size() bytes
		return dst, fmt.Errorf("marshal %T: wrote %d bytes, Size said %d", obj, w, n)
	}
	return dst[:len(dst)+n], nil
}

// Decode returns a new T unmarshalled from data.
func (ProtobufCodec[T]) Decode(data []byte) (T, error) {
	t := newOf[T]()
	m, ok := any(t).(protoMessage)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%T has no generated protobuf code", t)
	}
	if err := m.Unmarshal(data); err != nil {
		var zero T
		return zero, fmt.Errorf("unmarshal %T from %d bytes of protobuf: %w", t, len(data), err)
	}
	return t, nil
}

// JSONCodec encodes T with encoding/json (T's MarshalJSON and UnmarshalJSON
// where it has them, as Unstructured does).
type JSONCodec[T Object] struct{}

// Append appends obj's JSON to dst.
func (JSONCodec[T]) Append(dst []byte, obj T) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return dst, fmt.Errorf("marshal %T to JSON: %w", obj, err)
	}
	return append(dst, b...), nil
}

// Decode returns a new T unmarshalled from data.
func (JSONCodec[T]) Decode(data []byte) (T, error) {
	t := newOf[T]()
	if err := json.Unmarshal(data, t); err != nil {
		var zero T
		return zero, fmt.Errorf("unmarshal %T from %d bytes of JSON: %w", t, len(data), err)
	}
	return t, nil
}

// newOf returns a new zero T: a pointer to a new struct when T is a pointer
// type, else T's zero value.
func newOf[T any]() T {
	var zero T
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer {
		return zero
	}
	return reflect.New(typ.Elem()).Interface().(T)
}

// packed is a compact store's record of one object. It is never changed
// after it is built (an update stores a new one), so readers may use it
// outside the store's lock.
type packed struct {
	data   []byte     // the Codec's encoding
	rv     string     // resourceVersion
	labels labelPairs // for selectors
	idx    [][]string // values of each custom index, in Store.custom order
}

// labelPairs holds labels as key, value, key, value, … sorted by key: a
// label set in 16 bytes per string instead of a map. It implements
// labels.Labels for selectors.
type labelPairs []string

func newLabelPairs(in *interner, m map[string]string) labelPairs {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p := make(labelPairs, 0, 2*len(m))
	in.mu.Lock()
	for _, k := range keys {
		p = append(p, in.s(k), in.s(m[k]))
	}
	in.mu.Unlock()
	return p
}

// Lookup returns the value of label k and whether it is set.
func (p labelPairs) Lookup(k string) (string, bool) {
	lo, hi := 0, len(p)/2
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p[2*mid] < k {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(p)/2 && p[2*lo] == k {
		return p[2*lo+1], true
	}
	return "", false
}

// Has reports whether label k is set.
func (p labelPairs) Has(k string) bool { _, ok := p.Lookup(k); return ok }

// Get returns the value of label k ("" if unset).
func (p labelPairs) Get(k string) string { v, _ := p.Lookup(k); return v }

// pack encodes obj (stored under key) for a compact store.
func (s *Store[T]) pack(key ObjectKey, obj T) (*packed, error) {
	data, err := s.codec.Append(nil, obj)
	if err != nil {
		return nil, fmt.Errorf("cache: encode %v for the compact store: %w", key, err)
	}
	if cap(data)-len(data) > len(data)/16 {
		data = append(make([]byte, 0, len(data)), data...)
	}
	p := &packed{data: data, rv: obj.GetResourceVersion(), labels: newLabelPairs(s.in, obj.GetLabels())}
	if len(s.custom) > 0 {
		p.idx = make([][]string, len(s.custom))
		s.in.mu.Lock()
		for i, ix := range s.custom {
			vals := slices.Clone(ix.fn(obj))
			for j := range vals {
				vals[j] = s.in.s(vals[j])
			}
			p.idx[i] = vals
		}
		s.in.mu.Unlock()
	}
	return p, nil
}

// unpack decodes the object of p, stored under key.
func (s *Store[T]) unpack(key ObjectKey, p *packed) (T, error) {
	t, err := s.codec.Decode(p.data)
	if err != nil {
		err = fmt.Errorf("cache: decode %v from the compact store: %w", key, err)
		if s.onCodecErr != nil {
			s.onCodecErr(key, err)
		}
	}
	return t, err
}

// storeOptions returns the store options of an informer with options o:
// compact when o.Compact, with codec errors logged to log.
func storeOptions[T Object](o Options[T], log *slog.Logger) StoreOptions[T] {
	so := StoreOptions[T]{Indexes: o.Indexes}
	if o.Compact {
		so.Codec = o.CompactCodec
		if so.Codec == nil {
			so.Codec = DefaultCodec[T]()
		}
		so.OnCodecError = func(key ObjectKey, err error) {
			log.Error("compact cache", "key", key.String(), "err", err)
		}
	}
	return so
}
