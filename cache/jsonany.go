package cache

import (
	"bytes"
	"strconv"
)

// The unstructured counterpart of jsonstruct.go: one recursive-descent
// pass from an object's bytes to map[string]any, []any and scalars, where
// kjson runs its scanner over the input and then decodes it in a second
// pass. It is a fast path that falls back, as decodeJSONStruct is: false
// for anything it does not decode exactly as
// kjson.UnmarshalCaseSensitivePreserveInts does into a map[string]any
// (numbers without a fraction that fit in int64 become int64, all others
// float64; arrays are non-nil; null is nil), and the caller then decodes
// the same bytes with kjson. It falls back on invalid JSON, a member name
// with escapes or invalid UTF-8, a member named twice in one object (kjson
// keeps the last), a number float64 cannot hold, and nesting deeper than
// maxJSONDepth. Strings with escapes or invalid UTF-8 are decoded by
// unquoteJSON.

// decodeJSONAny decodes b, one JSON object with only white space around
// it, into a new map. It does not change b.
func decodeJSONAny(b []byte) (map[string]any, bool) { return decodeJSONAnyStrip(b, anyPlain) }

// decodeJSONObjectStripped is decodeJSONAny of what stripJSONObject would
// leave of b: it skips metadata.managedFields and the last-applied
// annotation while decoding (and leaves annotations out if nothing else
// was in them), so they are never allocated and the object is read once.
// It does not change b.
func decodeJSONObjectStripped(b []byte) (map[string]any, bool) { return decodeJSONAnyStrip(b, anyRoot) }

func decodeJSONAnyStrip(b []byte, mode stripMode) (map[string]any, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	m, end, ok := anyObject(b, i, 0, mode)
	return m, ok && skipSpace(b, end) == len(b)
}

// stripMode says what an object being decoded is to stripJSONObject.
type stripMode uint8

const (
	anyPlain       stripMode = iota
	anyRoot                  // the object: its metadata is stripped
	anyMeta                  // its metadata: no managedFields
	anyAnnotations           // metadata.annotations: no last-applied string
)

// anyObject decodes the object at b[i] inside depth containers, returning
// the offset past it. In mode anyAnnotations it returns a nil map (and
// true) for annotations that held nothing but the last-applied one.
func anyObject(b []byte, i, depth int, mode stripMode) (map[string]any, int, bool) {
	i, empty, ok := openContainer(b, i, depth, '}')
	if !ok {
		return nil, i, false
	}
	m := map[string]any{}
	if empty {
		return m, i, true
	}
	depth++
	dropped := false
	for {
		key, vs, ok := objectKey(b, i)
		if !ok || vs >= len(b) {
			return nil, vs, false
		}
		var v any
		var end int
		var err error
		set := true
		switch {
		case mode == anyPlain:
			v, end, ok = anyValue(b, vs, depth)
		case mode == anyMeta && string(key) == "managedFields":
			end, err = skipValueDepth(b, vs, depth)
			ok, set = err == nil, false
		case mode == anyAnnotations && b[vs] == '"' && string(key) == LastAppliedAnnotation:
			end, err = skipString(b, vs)
			ok, set, dropped = err == nil, false, true
		case b[vs] == '{' && (mode == anyRoot && string(key) == "metadata" || mode == anyMeta && string(key) == "annotations"):
			var cm map[string]any
			cm, end, ok = anyObject(b, vs, depth, mode+1)
			v, set = cm, cm != nil
		default:
			v, end, ok = anyValue(b, vs, depth)
		}
		if !ok {
			return nil, end, false
		}
		if set {
			n := len(m)
			if m[string(key)] = v; len(m) == n {
				return nil, end, false // named twice
			}
		}
		next, more, ok := nextMember(b, end, '}')
		if !ok || !more {
			if dropped && len(m) == 0 {
				m = nil
			}
			return m, next, ok
		}
		i = next
	}
}

// anyArray decodes the array at b[i] inside depth containers.
func anyArray(b []byte, i, depth int) ([]any, int, bool) {
	i, empty, ok := openContainer(b, i, depth, ']')
	if !ok {
		return nil, i, false
	}
	s := []any{}
	if empty {
		return s, i, true
	}
	depth++
	for {
		v, end, ok := anyValue(b, i, depth)
		if !ok {
			return nil, end, false
		}
		s = append(s, v)
		next, more, ok := nextMember(b, end, ']')
		if !ok || !more {
			return s, next, ok
		}
		i = next
	}
}

// anyValue decodes the value at b[i] (not white space; b may end there)
// inside depth containers.
func anyValue(b []byte, i, depth int) (any, int, bool) {
	if i >= len(b) {
		return nil, i, false
	}
	var err error
	end := i
	switch c := b[i]; {
	case c == '{':
		m, end, ok := anyObject(b, i, depth, anyPlain)
		return m, end, ok
	case c == '[':
		s, end, ok := anyArray(b, i, depth)
		return s, end, ok
	case c == '"':
		var s string
		end, ok := decodeString(b, i, &s)
		return s, end, ok
	case c == 't':
		end, err = skipLiteral(b, i, "true")
		return true, end, err == nil
	case c == 'f':
		end, err = skipLiteral(b, i, "false")
		return false, end, err == nil
	case c == 'n':
		end, err = skipLiteral(b, i, "null")
		return nil, end, err == nil
	case c == '-' || (c >= '0' && c <= '9'):
		if end, err = skipNumber(b, i); err != nil {
			return nil, end, false
		}
		lit := b[i:end]
		if bytes.IndexByte(lit, '.') < 0 {
			if n, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
				return n, end, true
			}
		}
		f, err := strconv.ParseFloat(string(lit), 64)
		return f, end, err == nil
	}
	return nil, end, false
}
