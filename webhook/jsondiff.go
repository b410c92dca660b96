package webhook

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
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
	s, t := trimWS(src), trimWS(tgt)
	d := differ{src: newStructIndex(s), tgt: newStructIndex(t)}
	if d.src != nil && d.tgt != nil && d.diff("", s, t) {
		return d.ops, nil
	}
	return jsondiff.CompareJSON(src, tgt)
}

type differ struct {
	src, tgt *structIndex
	ops      jsondiff.Patch
}

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
		sm, ok1 := d.src.members(src)
		tm, ok2 := d.tgt.members(tgt)
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
		se, ok1 := d.src.elements(src)
		te, ok2 := d.tgt.elements(tgt)
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
func (ix *structIndex) members(b []byte) ([]member, bool) {
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
		ve := ix.valueEnd(b, i)
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
func (ix *structIndex) elements(b []byte) ([][]byte, bool) {
	var es [][]byte
	i := skipWS(b, 1)
	if i < len(b) && b[i] == ']' {
		return nil, i == len(b)-1
	}
	for {
		ve := ix.valueEnd(b, i)
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

// structIndex is where each object and array of a document ends, found
// in one pass, so that walking nested values does not rescan them.
type structIndex struct {
	doc           []byte
	opens, closes []int // positions of each '{' or '[' (ascending) and of its closing bracket
}

// newStructIndex indexes doc; nil if its brackets and strings do not pair
// up. It trusts doc to be valid JSON otherwise.
func newStructIndex(doc []byte) *structIndex {
	ix := &structIndex{doc: doc}
	var stack []int
	for j := 0; j < len(doc); j++ {
		switch doc[j] {
		case '"':
			e := stringEnd(doc, j)
			if e < 0 {
				return nil
			}
			j = e - 1
		case '{', '[':
			stack = append(stack, len(ix.opens))
			ix.opens = append(ix.opens, j)
			ix.closes = append(ix.closes, -1)
		case '}', ']':
			if len(stack) == 0 {
				return nil
			}
			ix.closes[stack[len(stack)-1]] = j
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		return nil
	}
	return ix
}

// valueEnd is the index just past the JSON value that starts at b[i], or
// -1; b is a part of the indexed document. It never reads outside b.
func (ix *structIndex) valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		off := cap(ix.doc) - cap(b) // b's offset in the document: both end at the same array
		k, found := slices.BinarySearch(ix.opens, off+i)
		if !found {
			return -1
		}
		e := ix.closes[k] - off + 1
		if e > len(b) {
			return -1
		}
		return e
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
