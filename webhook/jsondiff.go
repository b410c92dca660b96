package webhook

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wI2L/jsondiff"
)

// diffJSON is the RFC 6902 patch (add, remove and replace operations)
// from src to tgt, two valid JSON documents; nil if they are equal.
//
// A mutating handler changes a few fields of a large object, and the two
// documents come from encoders that write the same fields in the same
// order, so most subtrees are byte for byte the same. diffJSON walks both
// documents without decoding them, skips equal subtrees, and decodes only
// what differs: scalars (compared by value, so 1.0 equals 1 and "\u00e9"
// equals "é") and arrays whose lengths differ (diffed by jsondiff). It
// falls back to jsondiff for the whole documents when an object has a key
// with an escape, a key that is not UTF-8 or a duplicate key. Its patch
// has the same effect as jsondiff.CompareJSON's (the tests check this).
func diffJSON(src, tgt []byte) (jsondiff.Patch, error) {
	var d differ
	if d.diff("", trimWS(src), trimWS(tgt)) {
		return d.ops, nil
	}
	return jsondiff.CompareJSON(src, tgt)
}

type differ struct{ ops jsondiff.Patch }

// diff appends the operations that turn src into tgt at the JSON pointer
// path; false if it cannot tell (the caller falls back to jsondiff).
func (d *differ) diff(path string, src, tgt []byte) bool {
	if bytes.Equal(src, tgt) {
		return true
	}
	if len(src) == 0 || len(tgt) == 0 {
		return false
	}
	switch {
	case src[0] == '{' && tgt[0] == '{':
		sm, ok1 := members(src)
		tm, ok2 := members(tgt)
		if !ok1 || !ok2 {
			return false
		}
		si, ok1 := indexKeys(sm)
		ti, ok2 := indexKeys(tm)
		if !ok1 || !ok2 {
			return false
		}
		for _, s := range sm {
			p := path + "/" + escapePointer(s.key)
			t, found := ti.find(tm, s.key)
			if !found {
				d.ops = append(d.ops, jsondiff.Operation{Type: jsondiff.OperationRemove, Path: p})
				continue
			}
			if !d.diff(p, s.val, t.val) {
				return false
			}
		}
		for _, t := range tm {
			if _, found := si.find(sm, t.key); !found {
				d.ops = append(d.ops, jsondiff.Operation{Type: jsondiff.OperationAdd, Path: path + "/" + escapePointer(t.key), Value: json.RawMessage(t.val)})
			}
		}
		return true
	case src[0] == '[' && tgt[0] == '[':
		se, ok1 := elements(src)
		te, ok2 := elements(tgt)
		if !ok1 || !ok2 {
			return false
		}
		if len(se) == len(te) {
			for i := range se {
				if !d.diff(path+"/"+strconv.Itoa(i), se[i], te[i]) {
					return false
				}
			}
			return true
		}
		p, err := jsondiff.CompareJSON(src, tgt)
		if err != nil {
			return false
		}
		for _, op := range p {
			op.Path = path + op.Path
			if op.From != "" {
				op.From = path + op.From
			}
			d.ops = append(d.ops, op)
		}
		return true
	}
	var a, b any
	if json.Unmarshal(src, &a) != nil || json.Unmarshal(tgt, &b) != nil {
		return false
	}
	if !reflect.DeepEqual(a, b) {
		d.ops = append(d.ops, jsondiff.Operation{Type: jsondiff.OperationReplace, Path: path, Value: json.RawMessage(tgt)})
	}
	return true
}

// member is an object's member: its key (raw, without quotes; diff only
// uses keys without escapes) and its value (raw).
type member struct{ key, val []byte }

// keyIndex finds a member by key: a linear search for small objects, a map
// for large ones.
type keyIndex map[string]int

func indexKeys(ms []member) (keyIndex, bool) {
	if len(ms) <= 16 {
		for i := range ms {
			for j := range i {
				if bytes.Equal(ms[i].key, ms[j].key) {
					return nil, false
				}
			}
		}
		return nil, true
	}
	idx := make(keyIndex, len(ms))
	for i, m := range ms {
		if _, dup := idx[string(m.key)]; dup {
			return nil, false
		}
		idx[string(m.key)] = i
	}
	return idx, true
}

func (idx keyIndex) find(ms []member, key []byte) (member, bool) {
	if idx == nil {
		for _, m := range ms {
			if bytes.Equal(m.key, key) {
				return m, true
			}
		}
		return member{}, false
	}
	i, ok := idx[string(key)]
	if !ok {
		return member{}, false
	}
	return ms[i], true
}

// members splits the object b into its members; false if b is not an
// object this diff handles.
func members(b []byte) ([]member, bool) {
	var ms []member
	i := skipWS(b, 1)
	if i < len(b) && b[i] == '}' {
		return nil, i == len(b)-1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		e := stringEnd(b, i)
		if e < 0 {
			return nil, false
		}
		key := b[i+1 : e-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			return nil, false
		}
		i = skipWS(b, e)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipWS(b, i+1)
		ve := valueEnd(b, i)
		if ve < 0 {
			return nil, false
		}
		ms = append(ms, member{key: key, val: b[i:ve]})
		i = skipWS(b, ve)
		switch {
		case i >= len(b):
			return nil, false
		case b[i] == '}':
			return ms, i == len(b)-1
		case b[i] != ',':
			return nil, false
		}
		i = skipWS(b, i+1)
	}
}

// elements splits the array b into its elements.
func elements(b []byte) ([][]byte, bool) {
	var es [][]byte
	i := skipWS(b, 1)
	if i < len(b) && b[i] == ']' {
		return nil, i == len(b)-1
	}
	for {
		ve := valueEnd(b, i)
		if ve < 0 {
			return nil, false
		}
		es = append(es, b[i:ve])
		i = skipWS(b, ve)
		switch {
		case i >= len(b):
			return nil, false
		case b[i] == ']':
			return es, i == len(b)-1
		case b[i] != ',':
			return nil, false
		}
		i = skipWS(b, i+1)
	}
}

// valueEnd is the index just past the JSON value that starts at b[i], or
// -1. It trusts b to be valid JSON (it does not check literals, numbers or
// the pairing of brackets) and never reads outside b.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	j := i
	for j < len(b) && !isDelim(b[j]) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// stringEnd is the index just past the string that starts at b[i] == '"',
// or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		j += q
		// The quote ends the string unless an odd number of backslashes
		// escapes it.
		n := 0
		for k := j - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
	return -1
}

func isDelim(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ':' || isWS(c)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func trimWS(b []byte) []byte {
	return bytes.TrimFunc(b, func(r rune) bool { return r < utf8.RuneSelf && isWS(byte(r)) })
}

// escapePointer escapes a key as a JSON pointer token (RFC 6901).
func escapePointer(key []byte) string {
	s := string(key)
	if strings.ContainsAny(s, "~/") {
		s = pointerEscaper.Replace(s)
	}
	return s
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
