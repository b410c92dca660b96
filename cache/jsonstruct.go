package cache

import (
	"encoding/json"
	"reflect"
	"strconv"
	"unicode/utf8"
	"unsafe"

	kjson "sigs.k8s.io/json"
)

// This file is the custom-resource path's fast JSON decoder: one pass over
// an object's bytes, by recursive descent, writing straight into the Go
// struct along the type's plan (jsonplan.go). kjson, which the informer
// would use otherwise, validates the whole input in one pass and then
// decodes it by reflection in a second.
//
// It is a fast path that falls back: decodeJSONStruct reports false for
// anything it does not decode exactly as kjson.UnmarshalCaseSensitivePreserveInts
// would, and the caller then decodes the same bytes with kjson into a fresh
// value, so errors and odd inputs keep kjson's behaviour and messages. It
// falls back on: invalid JSON; a value of the wrong JSON type for its field
// (kjson's type errors); an integer field given a fraction, an exponent or
// an out-of-range number; a float out of range; a member name with escapes
// or invalid UTF-8; a member named twice in one object (kjson merges
// duplicates); JSON null for a json.Unmarshaler that is not behind a
// pointer; an UnmarshalJSON that fails; nesting deeper than maxJSONDepth;
// and a top-level type whose plan is not a struct. Strings with escapes or
// invalid UTF-8 are decoded by unquoteJSON (jsonunquote.go), exactly as
// kjson does. Values it does not decode itself (interface{}, []byte,
// arrays, text-unmarshaled types, structs whose field naming is subtle) are
// decoded alone by kjson into their zero field, which is exact; a failure
// there falls back too.

// decodeJSONStruct decodes b, one JSON object with only white space around
// it, into the zero struct at ptr, whose plan p is a jsonStruct (from
// jsonPlanFor, or wirePlanFor to skip what stripJSONObject would cut). It
// does not change b. On false the struct may be partly written and must
// be thrown away.
func decodeJSONStruct(p *jsonPlan, b []byte, ptr unsafe.Pointer) bool {
	i := skipSpace(b, 0)
	if p.kind != jsonStruct || i >= len(b) || b[i] != '{' {
		return false
	}
	end, ok := p.decode(b, i, ptr, 0)
	return ok && skipSpace(b, end) == len(b)
}

// decode decodes the value starting at b[i] (not white space) into the
// zero value at ptr, of p's type, inside depth containers. It returns the
// offset past the value, and false to fall back.
func (p *jsonPlan) decode(b []byte, i int, ptr unsafe.Pointer, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	c := b[i]
	switch p.kind {
	case jsonDelegate:
		return p.delegate(b, i, ptr, depth)
	case jsonUnmarshaler:
		// kjson calls UnmarshalJSON with a null too (the value is not a
		// pointer it could set to nil): "creationTimestamp":null in an
		// embedded PodTemplateSpec is common.
		end, err := skipValueDepth(b, i, depth)
		if err != nil {
			return i, false
		}
		u := reflect.NewAt(p.typ, ptr).Interface().(json.Unmarshaler)
		return end, u.UnmarshalJSON(b[i:end]) == nil
	case jsonString:
		if c == '"' {
			return decodeString(b, i, (*string)(ptr))
		}
	case jsonBool:
		switch c {
		case 't':
			end, err := skipLiteral(b, i, "true")
			*(*bool)(ptr) = true
			return end, err == nil
		case 'f':
			end, err := skipLiteral(b, i, "false")
			return end, err == nil
		}
	case jsonInt, jsonUint, jsonFloat:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.decodeNumber(b, i, ptr)
		}
	case jsonPointer:
		if c != 'n' {
			np := reflect.New(p.elem.typ).UnsafePointer()
			end, ok := p.elem.decode(b, i, np, depth)
			*(*unsafe.Pointer)(ptr) = np
			return end, ok
		}
	case jsonStruct:
		if c == '{' {
			return p.decodeStruct(b, i, ptr, depth)
		}
	case jsonSlice:
		if c == '[' {
			return p.decodeSlice(b, i, ptr, depth)
		}
	case jsonMap:
		if c == '{' {
			return p.decodeMap(b, i, ptr, depth)
		}
	case jsonStringMap, jsonAnnotations:
		if c == '{' {
			return decodeStringMap(b, i, (*map[string]string)(ptr), depth, p.kind == jsonAnnotations)
		}
	case jsonSkip:
		end, err := skipValueDepth(b, i, depth)
		return end, err == nil
	}
	if c == 'n' { // null leaves every other kind as it is: zero
		end, err := skipLiteral(b, i, "null")
		return end, err == nil
	}
	return i, false // a JSON type kjson would not put into this Go type
}

// delegate decodes the value at b[i] alone with kjson.
func (p *jsonPlan) delegate(b []byte, i int, ptr unsafe.Pointer, depth int) (int, bool) {
	end, err := skipValueDepth(b, i, depth)
	if err != nil {
		return i, false
	}
	return end, kjson.UnmarshalCaseSensitivePreserveInts(b[i:end], reflect.NewAt(p.typ, ptr).Interface()) == nil
}

func (p *jsonPlan) decodeNumber(b []byte, i int, ptr unsafe.Pointer) (int, bool) {
	end, err := skipNumber(b, i)
	if err != nil {
		return i, false
	}
	lit := b[i:end]
	switch p.kind {
	case jsonInt: // ParseInt/ParseUint refuse fractions and exponents, as kjson does for integers
		n, err := strconv.ParseInt(string(lit), 10, 64)
		if err != nil || n<<(64-p.bits)>>(64-p.bits) != n {
			return i, false
		}
		switch p.bits {
		case 8:
			*(*int8)(ptr) = int8(n)
		case 16:
			*(*int16)(ptr) = int16(n)
		case 32:
			*(*int32)(ptr) = int32(n)
		default:
			*(*int64)(ptr) = n
		}
	case jsonUint: // ParseInt/ParseUint refuse fractions and exponents, as kjson does for integers
		n, err := strconv.ParseUint(string(lit), 10, 64)
		if err != nil || n<<(64-p.bits)>>(64-p.bits) != n {
			return i, false
		}
		switch p.bits {
		case 8:
			*(*uint8)(ptr) = uint8(n)
		case 16:
			*(*uint16)(ptr) = uint16(n)
		case 32:
			*(*uint32)(ptr) = uint32(n)
		default:
			*(*uint64)(ptr) = n
		}
	default:
		f, err := strconv.ParseFloat(string(lit), p.bits)
		if err != nil {
			return i, false
		}
		if p.bits == 32 {
			*(*float32)(ptr) = float32(f)
		} else {
			*(*float64)(ptr) = f
		}
	}
	return end, true
}

// scanPlainString returns the end of the string starting at b[i] == '"'
// and whether its bytes between the quotes are its value: no escapes, no
// control characters, valid UTF-8.
func scanPlainString(b []byte, i int) (end int, plain bool) {
	j, high := plainRun(b, i+1)
	if j >= len(b) || b[j] != '"' {
		return j, false
	}
	return j + 1, !high || utf8.Valid(b[i+1:j])
}

func decodeString(b []byte, i int, s *string) (int, bool) {
	end, plain := scanPlainString(b, i)
	if plain {
		*s = string(b[i+1 : end-1])
		return end, true
	}
	v, end, ok := unquoteJSON(b, i)
	*s = v
	return end, ok
}

// objectKey reads the member name starting at b[i] and the colon after it,
// returning the name's bytes and the offset of the value. Names with
// escapes or invalid UTF-8 fall back.
func objectKey(b []byte, i int) (key []byte, vs int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	end, plain := scanPlainString(b, i)
	if !plain {
		return nil, i, false
	}
	j := skipSpace(b, end)
	if j >= len(b) || b[j] != ':' {
		return nil, j, false
	}
	return b[i+1 : end-1], skipSpace(b, j+1), true
}

// nextMember reads what follows a member's or element's value ending at
// b[i]: a comma (more is false, next is where the next one starts) or the
// closing bracket (more is false, next is past it).
func nextMember(b []byte, i int, closing byte) (next int, more, ok bool) {
	i = skipSpace(b, i)
	switch {
	case i >= len(b):
		return i, false, false
	case b[i] == ',':
		return skipSpace(b, i+1), true, true
	case b[i] == closing:
		return i + 1, false, true
	}
	return i, false, false
}

// openContainer steps into the object or array at b[i], returning where
// its first member starts (or the offset past it if it is empty).
func openContainer(b []byte, i, depth int, closing byte) (next int, empty, ok bool) {
	if depth >= maxJSONDepth {
		return i, false, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closing {
		return i + 1, true, true
	}
	return i, false, true
}

func (p *jsonPlan) decodeStruct(b []byte, i int, ptr unsafe.Pointer, depth int) (int, bool) {
	i, empty, ok := openContainer(b, i, depth, '}')
	if !ok || empty {
		return i, ok
	}
	depth++
	var seen uint64     // fields seen, by index, for structs of up to 64 fields
	var seenMore []bool // for bigger ones
	for {
		key, vs, ok := objectKey(b, i)
		if !ok {
			return vs, false
		}
		f := p.fields[string(key)]
		if f == nil {
			end, err := skipValueDepth(b, vs, depth)
			if err != nil {
				return end, false
			}
			vs = end
		} else {
			if f.index < 64 {
				if seen&(1<<f.index) != 0 {
					return vs, false
				}
				seen |= 1 << f.index
			} else {
				if seenMore == nil {
					seenMore = make([]bool, len(p.fields))
				}
				if seenMore[f.index] {
					return vs, false
				}
				seenMore[f.index] = true
			}
			if vs, ok = f.plan.decode(b, vs, unsafe.Add(ptr, f.offset), depth); !ok {
				return vs, false
			}
		}
		next, more, ok := nextMember(b, vs, '}')
		if !ok || !more {
			return next, ok
		}
		i = next
	}
}

func (p *jsonPlan) decodeSlice(b []byte, i int, ptr unsafe.Pointer, depth int) (int, bool) {
	s := reflect.NewAt(p.typ, ptr).Elem()
	i, empty, ok := openContainer(b, i, depth, ']')
	if !ok {
		return i, false
	}
	if empty {
		s.Set(reflect.MakeSlice(p.typ, 0, 0))
		return i, true
	}
	depth++
	for n := 0; ; n++ {
		if n == s.Cap() {
			s.Grow(1)
		}
		s.SetLen(n + 1)
		end, ok := p.elem.decode(b, i, s.Index(n).Addr().UnsafePointer(), depth)
		if !ok {
			return end, false
		}
		next, more, ok := nextMember(b, end, ']')
		if !ok || !more {
			return next, ok
		}
		i = next
	}
}

func (p *jsonPlan) decodeMap(b []byte, i int, ptr unsafe.Pointer, depth int) (int, bool) {
	m := reflect.MakeMap(p.typ)
	reflect.NewAt(p.typ, ptr).Elem().Set(m)
	i, empty, ok := openContainer(b, i, depth, '}')
	if !ok || empty {
		return i, ok
	}
	depth++
	elem := reflect.New(p.typ.Elem()).Elem()
	for {
		key, vs, ok := objectKey(b, i)
		if !ok {
			return vs, false
		}
		elem.SetZero()
		end, ok := p.elem.decode(b, vs, elem.Addr().UnsafePointer(), depth)
		if !ok {
			return end, false
		}
		k := reflect.ValueOf(string(key))
		if p.keyConv {
			k = k.Convert(p.typ.Key())
		}
		n := m.Len()
		if m.SetMapIndex(k, elem); m.Len() == n { // named twice
			return end, false
		}
		next, more, ok := nextMember(b, end, '}')
		if !ok || !more {
			return next, ok
		}
		i = next
	}
}

// decodeStringMap decodes a map[string]string. With annotations set, a
// last-applied annotation whose value is a string is dropped, and the map
// is left nil if nothing else was in it (as stripJSONObject cuts them).
func decodeStringMap(b []byte, i int, mp *map[string]string, depth int, annotations bool) (int, bool) {
	m := map[string]string{}
	*mp = m
	i, empty, ok := openContainer(b, i, depth, '}')
	if !ok || empty {
		return i, ok
	}
	dropped := false
	for {
		key, vs, ok := objectKey(b, i)
		if !ok || vs >= len(b) {
			return vs, false
		}
		var v string
		end := vs
		switch c := b[vs]; {
		case c == '"' && annotations && string(key) == LastAppliedAnnotation:
			var err error
			end, err = skipString(b, vs)
			ok, dropped = err == nil, true
		case c == '"':
			if end, ok = decodeString(b, vs, &v); ok {
				ok = setNew(m, key, v)
			}
		case c == 'n': // the member is there, with ""
			var err error
			end, err = skipLiteral(b, vs, "null")
			ok = err == nil && setNew(m, key, "")
		default:
			ok = false
		}
		if !ok {
			return end, false
		}
		next, more, ok := nextMember(b, end, '}')
		if !ok || !more {
			if dropped && len(m) == 0 {
				*mp = nil
			}
			return next, ok
		}
		i = next
	}
}

// setNew sets m[key] = v, or reports false if key was there already.
func setNew(m map[string]string, key []byte, v string) bool {
	n := len(m)
	m[string(key)] = v
	return len(m) > n
}
