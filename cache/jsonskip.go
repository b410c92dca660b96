package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// This file is a small JSON scanner used by the custom-resource decode path
// (crdecode.go): it finds where a value ends, walks an object's members, and
// cuts metadata.managedFields and the last-applied annotation out of an
// object's bytes before they are decoded, so they are never allocated.
//
// The scanner validates what it skips (brackets, strings and their escapes,
// literals, number characters), so a document it accepts and the decoder
// then accepts is one the decoder would have accepted whole. It does not
// unescape keys: a key spelled with escapes ("\u006danagedFields") is not
// recognised and is simply decoded (and then dropped by DefaultTransform).

var errJSONEnd = errors.New("unexpected end of JSON")

func jsonSyntax(b []byte, i int, what string) error {
	if i >= len(b) {
		return fmt.Errorf("JSON: %w while reading %s", errJSONEnd, what)
	}
	return fmt.Errorf("JSON: invalid character %q at offset %d while reading %s", b[i], i, what)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the offset just past the JSON value starting at b[i]
// (after optional white space).
func skipValue(b []byte, i int) (int, error) {
	return skipValueDepth(b, i, 0)
}

// maxJSONDepth bounds nesting, as encoding/json does (10000), so a hostile
// document cannot exhaust the stack.
const maxJSONDepth = 10000

func skipValueDepth(b []byte, i, depth int) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return i, jsonSyntax(b, i, "a value")
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return i, fmt.Errorf("JSON: nested deeper than %d at offset %d", maxJSONDepth, i)
		}
		return skipContainer(b, i, depth+1)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	default:
		return i, jsonSyntax(b, i, "a value")
	}
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return i, jsonSyntax(b, i, lit)
	}
	return i + len(lit), nil
}

// skipNumber checks the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return i, jsonSyntax(b, i, "a number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return i, jsonSyntax(b, i, "a number's fraction")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, jsonSyntax(b, i, "a number's exponent")
		}
	}
	return i, nil
}

// skipString returns the offset past the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	i++
	for i < len(b) {
		if i, _ = plainRun(b, i); i >= len(b) {
			return len(b), jsonSyntax(b, len(b), "a string")
		}
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 >= len(b) {
				return len(b), jsonSyntax(b, len(b), "a string escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return len(b), jsonSyntax(b, len(b), "a \\u escape")
				}
				for k := i + 2; k < i+6; k++ {
					if !isHex(b[k]) {
						return k, jsonSyntax(b, k, "a \\u escape")
					}
				}
				i += 6
			default:
				return i + 1, jsonSyntax(b, i+1, "a string escape")
			}
		default:
			return i, jsonSyntax(b, i, "a string")
		}
	}
	return i, jsonSyntax(b, i, "a string")
}

// stringStop marks the bytes that end a run of a string's plain bytes: the
// closing quote, a backslash, and the control characters JSON forbids.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// plainRun returns the offset of the first byte from b[i] on that ends a
// run of a string's plain bytes (see stringStop), or len(b), and whether
// the run holds bytes of 0x80 and up (UTF-8 to check). It looks at eight
// bytes at a time: strings (messages, the last-applied annotation) are
// most of an object's bytes. (A table, not bytes.IndexAny, which builds
// its byte set anew on every call: that was most of the scanner's time.)
func plainRun(b []byte, i int) (int, bool) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	var seen uint64
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, s := x^(ones*'"'), x^(ones*'\\')
		// A byte's high bit is set in each term if it is below 0x20, or
		// is zero after the xor; borrows only spread from such a byte.
		if ((x-ones*0x20)&^x|(q-ones)&^q|(s-ones)&^s)&highs != 0 {
			break
		}
		seen |= x
	}
	for i < len(b) && !stringStop[b[i]] {
		seen |= uint64(b[i])
		i++
	}
	return i, seen&highs != 0
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func skipContainer(b []byte, i, depth int) (int, error) {
	if b[i] == '[' {
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValueDepth(b, i, depth); err != nil {
				return i, err
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, jsonSyntax(b, i, "an array")
			}
			switch b[i] {
			case ',':
				i++
			case ']':
				return i + 1, nil
			default:
				return i, jsonSyntax(b, i, "an array")
			}
		}
	}
	end := i
	for m, err := range objectMembers(b, i, depth) {
		if err != nil {
			return m.objEnd, err
		}
		end = m.objEnd
	}
	return end, nil
}

// member is one object member: the raw key (between the quotes, escapes
// not decoded), where the member starts (its key's quote), where its value
// starts and ends, where the next member starts (past a following comma),
// and, on the last member, the offset past the object's closing brace.
type member struct {
	key          []byte
	start        int
	vStart, vEnd int
	next         int
	objEnd       int // past '}' on the last member (0 before)
	last         bool
}

// objectMembers walks the object starting at b[i] == '{'. On an error it
// yields (member{objEnd: offset}, err) and stops. An empty object yields
// one member with last set and an empty key span (start == -1).
func objectMembers(b []byte, i, depth int) func(yield func(member, error) bool) {
	return func(yield func(member, error) bool) {
		fail := func(at int, err error) { yield(member{objEnd: at, start: -1}, err) }
		if i >= len(b) || b[i] != '{' {
			fail(i, jsonSyntax(b, i, "an object"))
			return
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			yield(member{start: -1, last: true, objEnd: i + 1}, nil)
			return
		}
		for {
			if i >= len(b) || b[i] != '"' {
				fail(i, jsonSyntax(b, i, "an object key"))
				return
			}
			start := i
			ke, err := skipString(b, i)
			if err != nil {
				fail(ke, err)
				return
			}
			i = skipSpace(b, ke)
			if i >= len(b) || b[i] != ':' {
				fail(i, jsonSyntax(b, i, "an object member"))
				return
			}
			vs := skipSpace(b, i+1)
			ve, err := skipValueDepth(b, vs, depth)
			if err != nil {
				fail(ve, err)
				return
			}
			i = skipSpace(b, ve)
			if i >= len(b) {
				fail(i, jsonSyntax(b, i, "an object"))
				return
			}
			m := member{key: b[start+1 : ke-1], start: start, vStart: vs, vEnd: ve}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
				m.next = i
				if !yield(m, nil) {
					return
				}
			case '}':
				m.next, m.last, m.objEnd = i, true, i+1
				yield(m, nil)
				return
			default:
				fail(i, jsonSyntax(b, i, "an object"))
				return
			}
		}
	}
}

// span is a value's bytes b[vs:ve].
type span struct{ vs, ve int }

// arrayElems walks the array starting at b[i] == '[', yielding each
// element's span. On an error it yields (span{-1, offset}, err) and stops.
func arrayElems(b []byte, i, depth int) func(yield func(span, error) bool) {
	return func(yield func(span, error) bool) {
		fail := func(at int, err error) { yield(span{-1, at}, err) }
		if i >= len(b) || b[i] != '[' {
			fail(i, jsonSyntax(b, i, "an array"))
			return
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return
		}
		for {
			vs := skipSpace(b, i)
			ve, err := skipValueDepth(b, vs, depth)
			if err != nil {
				fail(ve, err)
				return
			}
			if !yield(span{vs, ve}, nil) {
				return
			}
			i = skipSpace(b, ve)
			if i >= len(b) {
				fail(i, jsonSyntax(b, i, "an array"))
				return
			}
			switch b[i] {
			case ',':
				i++
			case ']':
				return
			default:
				fail(i, jsonSyntax(b, i, "an array"))
				return
			}
		}
	}
}
