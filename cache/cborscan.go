package cache

import (
	"errors"
	"fmt"
	"slices"
)

// This file is a small CBOR (RFC 8949) scanner for the custom-resource
// decode path (cbordecode.go): it finds where a data item ends, checking
// that what it skips is well formed, walks a map's entries, and cuts
// metadata.managedFields and the last-applied annotation out of an object's
// bytes before they are decoded, rewriting the enclosing maps' entry counts.
// Validity beyond well-formedness (UTF-8, duplicate keys, simple values) is
// left to the decoder, which sees every byte that is kept.

// errCBOREnd means the bytes end inside a data item: more may complete it.
var errCBOREnd = errors.New("unexpected end of CBOR")

// maxCBORDepth bounds nesting as maxJSONDepth does for JSON.
const maxCBORDepth = 10000

// cborSelfDescribed is the head of tag 55799 (self-described CBOR), which
// the API server puts before every object it encodes.
var cborSelfDescribed = []byte{0xd9, 0xd9, 0xf7}

const (
	cborUint = iota
	cborNegInt
	cborBytes
	cborText
	cborArray
	cborMap
	cborTag
	cborSimple
)

// cborHead is an item's initial byte and argument.
type cborHead struct {
	major  byte
	arg    uint64 // the count, length or value; 0 for indefinite
	indef  bool   // indefinite-length (ai 31)
	length int    // bytes of the head
}

func cborMalformed(b []byte, i int, why string) error {
	return fmt.Errorf("CBOR: malformed at offset %d (initial byte %#02x): %s", i, b[i], why)
}

// readHead decodes the head at b[i].
func readHead(b []byte, i int) (cborHead, error) {
	if i >= len(b) {
		return cborHead{}, errCBOREnd
	}
	h := cborHead{major: b[i] >> 5, length: 1}
	switch ai := b[i] & 0x1f; {
	case ai < 24:
		h.arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(b)-i-1 < n {
			return cborHead{}, errCBOREnd
		}
		for _, c := range b[i+1 : i+1+n] {
			h.arg = h.arg<<8 | uint64(c)
		}
		h.length += n
		if h.major == cborSimple && ai == 24 && h.arg < 32 {
			return cborHead{}, cborMalformed(b, i, "two-byte simple value below 32")
		}
	case ai == 31:
		switch h.major {
		case cborBytes, cborText, cborArray, cborMap:
			h.indef = true
		default:
			return cborHead{}, cborMalformed(b, i, "indefinite length on a type without length")
		}
	default:
		return cborHead{}, cborMalformed(b, i, "reserved additional information")
	}
	return h, nil
}

// skipCBOR returns the offset just past the data item at b[i].
func skipCBOR(b []byte, i int) (int, error) { return skipCBORDepth(b, i, 0) }

func skipCBORDepth(b []byte, i, depth int) (int, error) {
	if depth > maxCBORDepth {
		return i, fmt.Errorf("CBOR: nested deeper than %d at offset %d", maxCBORDepth, i)
	}
	h, err := readHead(b, i)
	if err != nil {
		return i, err
	}
	j := i + h.length
	switch h.major {
	case cborUint, cborNegInt, cborSimple:
		return j, nil
	case cborBytes, cborText:
		if !h.indef {
			return skipPayload(b, j, h.arg)
		}
		for { // chunks: definite strings of the same major type, then break
			if j >= len(b) {
				return i, errCBOREnd
			}
			if b[j] == 0xff {
				return j + 1, nil
			}
			c, err := readHead(b, j)
			if err != nil {
				return i, err
			}
			if c.major != h.major || c.indef {
				return i, cborMalformed(b, j, "bad chunk in an indefinite-length string")
			}
			if j, err = skipPayload(b, j+c.length, c.arg); err != nil {
				return i, err
			}
		}
	case cborTag:
		return skipCBORDepth(b, j, depth+1)
	}
	// array or map
	per := uint64(1)
	if h.major == cborMap {
		per = 2
	}
	if h.indef {
		for {
			if j >= len(b) {
				return i, errCBOREnd
			}
			if b[j] == 0xff {
				return j + 1, nil
			}
			for range per {
				if j, err = skipCBORDepth(b, j, depth+1); err != nil {
					return i, err
				}
			}
		}
	}
	// Every item takes at least a byte: a count beyond what is left cannot
	// be complete yet (and is not worth iterating).
	if h.arg > uint64(len(b)-j) || h.arg*per > uint64(len(b)-j) {
		return i, errCBOREnd
	}
	for range h.arg * per {
		if j, err = skipCBORDepth(b, j, depth+1); err != nil {
			return i, err
		}
	}
	return j, nil
}

func skipPayload(b []byte, j int, n uint64) (int, error) {
	if n > uint64(len(b)-j) {
		return j, errCBOREnd
	}
	return j + int(n), nil
}

// cborEntry is one key/value pair of a map: the key's payload (definite
// strings only; nil otherwise) and the ranges of the entry and its value.
type cborEntry struct {
	key            []byte
	start, vs, end int // entry start, value start, entry end
}

// cborMapAt reads the map at b[i] (after any tags): its head, where its
// head starts, and its entries. It fails for anything but a well-formed map.
func cborMapAt(b []byte, i int, entries []cborEntry) (h cborHead, at int, end int, _ []cborEntry, err error) {
	for {
		if h, err = readHead(b, i); err != nil {
			return h, i, i, entries, err
		}
		if h.major != cborTag {
			break
		}
		i += h.length
	}
	if h.major != cborMap {
		return h, i, i, entries, cborMalformed(b, i, "not a map")
	}
	at, j := i, i+h.length
	for k := uint64(0); h.indef || k < h.arg; k++ {
		if h.indef {
			if j >= len(b) {
				return h, at, j, entries, errCBOREnd
			}
			if b[j] == 0xff {
				return h, at, j + 1, entries, nil
			}
		}
		e := cborEntry{start: j}
		if e.vs, err = skipCBOR(b, j); err != nil {
			return h, at, j, entries, err
		}
		if kh, err := readHead(b, j); err == nil && (kh.major == cborText || kh.major == cborBytes) && !kh.indef {
			e.key = b[j+kh.length : e.vs]
		}
		if e.end, err = skipCBOR(b, e.vs); err != nil {
			return h, at, j, entries, err
		}
		entries = append(entries, e)
		j = e.end
	}
	return h, at, j, entries, nil
}

// appendHead appends the shortest head of major type major with argument n.
func appendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return append(dst, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(dst, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// cborEdit replaces b[from:to] with with (never longer than to-from).
type cborEdit struct {
	from, to int
	with     []byte
}

// stripCBORObject removes metadata.managedFields and the last-applied
// annotation from obj, one CBOR data item (a map, optionally tagged), in
// place, and returns the shortened slice; the maps that lose entries get
// their counts rewritten. An annotations map left empty is removed whole,
// as stripJSONObject does. It returns an error for bytes that are not one
// well-formed map (with nothing after it).
func stripCBORObject(obj []byte) ([]byte, error) {
	_, _, end, top, err := cborMapAt(obj, 0, nil)
	if err != nil {
		return nil, err
	}
	if end != len(obj) {
		return nil, fmt.Errorf("CBOR: %d bytes after the object", len(obj)-end)
	}
	var edits []cborEdit
	for _, e := range top {
		if string(e.key) != string(keyMetadata) {
			continue
		}
		if edits, err = stripCBORMetadata(obj, e.vs, edits); err != nil {
			return nil, err
		}
	}
	if len(edits) == 0 {
		return obj, nil
	}
	slices.SortFunc(edits, func(a, b cborEdit) int { return a.from - b.from })
	w := edits[0].from
	for k, e := range edits {
		next := len(obj)
		if k+1 < len(edits) {
			next = edits[k+1].from
		}
		w += copy(obj[w:], e.with)
		w += copy(obj[w:], obj[e.to:next])
	}
	return obj[:w], nil
}

// stripCBORMetadata appends the edits for the metadata value at obj[i]; a
// value that is not a map is left to the decoder.
func stripCBORMetadata(obj []byte, i int, edits []cborEdit) ([]cborEdit, error) {
	var buf [24]cborEntry
	h, at, _, all, err := cborMapAt(obj, i, buf[:0])
	if err != nil {
		return edits, nil
	}
	dropped := 0
	for _, e := range all {
		switch string(e.key) {
		case string(keyManagedFields):
			edits, dropped = append(edits, cborEdit{from: e.start, to: e.end}), dropped+1
		case string(keyAnnotations):
			var inner []cborEdit
			emptied := false
			if inner, emptied, err = stripCBORLastApplied(obj, e.vs); err != nil {
				return edits, err
			}
			if emptied {
				edits, dropped = append(edits, cborEdit{from: e.start, to: e.end}), dropped+1
			} else {
				edits = append(edits, inner...)
			}
		}
	}
	if dropped > 0 && !h.indef {
		edits = append(edits, cborEdit{from: at, to: at + h.length, with: appendHead(nil, cborMap, h.arg-uint64(dropped))})
	}
	return edits, nil
}

// stripCBORLastApplied returns the edits that remove the last-applied
// entries (with string values) of the annotations map at obj[i], or emptied
// if no other entry is left.
func stripCBORLastApplied(obj []byte, i int) (edits []cborEdit, emptied bool, err error) {
	h, at, _, all, err := cborMapAt(obj, i, nil)
	if err != nil {
		return nil, false, nil // not a map: the decoder judges it
	}
	dropped := 0
	for _, e := range all {
		if string(e.key) != string(keyLastApplied) {
			continue
		}
		if vh, err := readHead(obj, e.vs); err != nil || (vh.major != cborText && vh.major != cborBytes) {
			continue
		}
		edits, dropped = append(edits, cborEdit{from: e.start, to: e.end}), dropped+1
	}
	if dropped == 0 {
		return nil, false, nil
	}
	if dropped == len(all) {
		return nil, true, nil
	}
	if !h.indef {
		edits = append(edits, cborEdit{from: at, to: at + h.length, with: appendHead(nil, cborMap, h.arg-uint64(dropped))})
	}
	return edits, false, nil
}
