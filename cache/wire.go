package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// This file rewrites Kubernetes protobuf objects on the wire so that the
// fields DefaultTransform would drop (metadata.managedFields and the
// last-applied annotation) are never decoded. The rewriter is pure: bytes
// in, bytes out; any input it does not fully understand is left to the
// ordinary decoder untouched.
//
// Layout (k8s.io/apimachinery's protobuf serializer):
//
//	"k8s\x00" + runtime.Unknown{
//	    1: typeMeta {1: apiVersion, 2: kind}
//	    2: raw      (the object's own message)
//	    3: contentEncoding
//	    4: contentType
//	}
//	object: 1: metadata (ObjectMeta), …
//	list:   1: metadata (ListMeta), 2: items (repeated object)
//	ObjectMeta: 12: annotations (map entries {1: key, 2: value}), 17: managedFields

// protobufMagic prefixes every object the protobuf serializer writes.
var protobufMagic = []byte{'k', '8', 's', 0}

// Protobuf field numbers the rewriter relies on. wireKinds checks the struct
// tags of the Go types it is used for against objectMetaField and
// listItemsField.
const (
	unknownTypeMetaField        = 1
	unknownRawField             = 2
	unknownContentEncodingField = 3
	typeMetaKindField           = 2
	objectMetaField             = 1
	listItemsField              = 2
	metaAnnotationsField        = 12
	metaManagedFieldsField      = 17
	mapKeyField                 = 1
)

const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errWire = errors.New("malformed or unsupported protobuf")

// wireKinds names the kinds whose objects the rewriter strips: objects of
// kind Object (ObjectMeta in field 1) and lists of kind List (items in
// field 2). Other kinds (Status in a watch ERROR event, say) pass through.
type wireKinds struct {
	Object, List string
}

// stripProtobuf appends to dst the enveloped protobuf object data with
// managedFields and the last-applied annotation removed, and reports
// whether it did. It returns false (and dst unchanged) when data is not an
// object of k's kinds or cannot be parsed; the caller then decodes data as
// is. It never panics, whatever data holds.
func stripProtobuf(dst, data []byte, k wireKinds) ([]byte, bool) {
	if !bytes.HasPrefix(data, protobufMagic) {
		return dst, false
	}
	env := data[len(protobufMagic):]
	kind, encoded, err := envelopeKind(env)
	if err != nil || encoded {
		return dst, false
	}
	var strip func(dst, obj []byte) ([]byte, error)
	switch kind {
	case "":
		return dst, false
	case k.Object:
		strip = stripObject
	case k.List:
		strip = stripList
	default:
		return dst, false
	}
	start := len(dst)
	dst = append(dst, protobufMagic...)
	out, err := rewriteFields(dst, env, func(num uint64, wt uint8) fieldEdit {
		if num == unknownRawField {
			return fieldEdit{sub: strip}
		}
		return fieldEdit{}
	})
	if err != nil {
		return dst[:start], false
	}
	return out, true
}

// envelopeKind returns the kind in a runtime.Unknown's type meta (the last
// occurrence wins, as when decoding) and whether the raw bytes carry a
// content encoding (then they are left alone).
func envelopeKind(env []byte) (kind string, encoded bool, err error) {
	err = eachField(env, func(num uint64, wt uint8, val []byte) error {
		switch {
		case num == unknownTypeMetaField && wt == wireBytes:
			return eachField(val, func(num uint64, wt uint8, val []byte) error {
				if num == typeMetaKindField && wt == wireBytes {
					kind = string(val)
				}
				return nil
			})
		case num == unknownContentEncodingField && wt == wireBytes:
			encoded = len(val) > 0
		case (num == unknownRawField || num == unknownTypeMetaField || num == unknownContentEncodingField) && wt != wireBytes:
			return errWire
		}
		return nil
	})
	return kind, encoded, err
}

// stripList strips every item of a list message.
func stripList(dst, list []byte) ([]byte, error) {
	return rewriteFields(dst, list, func(num uint64, wt uint8) fieldEdit {
		if num == listItemsField {
			return fieldEdit{sub: stripObject}
		}
		return fieldEdit{}
	})
}

// stripObject strips the ObjectMeta in field 1 of an object message.
func stripObject(dst, obj []byte) ([]byte, error) {
	return rewriteFields(dst, obj, func(num uint64, wt uint8) fieldEdit {
		if num == objectMetaField {
			return fieldEdit{sub: stripMeta}
		}
		return fieldEdit{}
	})
}

// stripMeta drops managedFields and the last-applied annotation's map entry
// from an ObjectMeta message.
func stripMeta(dst, meta []byte) ([]byte, error) {
	var ferr error
	out, err := rewriteFields(dst, meta, func(num uint64, wt uint8) fieldEdit {
		switch num {
		case metaManagedFieldsField:
			return fieldEdit{drop: true}
		case metaAnnotationsField:
			return fieldEdit{dropIf: func(entry []byte) bool {
				key, err := mapEntryKey(entry)
				if err != nil {
					ferr = err
					return false
				}
				return key == LastAppliedAnnotation
			}}
		}
		return fieldEdit{}
	})
	if ferr != nil {
		return dst, ferr
	}
	return out, err
}

// mapEntryKey returns the key of a map entry message ("" if it has none;
// the last occurrence wins, as when decoding).
func mapEntryKey(entry []byte) (string, error) {
	var key []byte
	err := eachField(entry, func(num uint64, wt uint8, val []byte) error {
		if num == mapKeyField {
			if wt != wireBytes {
				return errWire
			}
			key = val
		}
		return nil
	})
	return string(key), err
}

// fieldEdit says what rewriteFields does with one field. The zero value
// copies it unchanged.
type fieldEdit struct {
	drop   bool                                  // leave the field out
	dropIf func(val []byte) bool                 // leave it out if true (length-delimited only)
	sub    func(dst, val []byte) ([]byte, error) // rewrite its contents (length-delimited only)
}

// rewriteFields appends msg's fields to dst, each as edit says. A field that
// edit wants dropped or rewritten must be length-delimited, or the message
// is treated as malformed (the decoder would reject it, and it must still
// see it).
func rewriteFields(dst, msg []byte, edit func(num uint64, wt uint8) fieldEdit) ([]byte, error) {
	for i := 0; i < len(msg); {
		start := i
		num, wt, n := readTag(msg[i:])
		if n <= 0 {
			return dst, errWire
		}
		i += n
		valStart, end, err := fieldExtent(msg, i, wt)
		if err != nil {
			return dst, err
		}
		i = end
		e := edit(num, wt)
		if e.drop || e.dropIf != nil || e.sub != nil {
			if wt != wireBytes {
				return dst, errWire
			}
		}
		val := msg[valStart:end]
		switch {
		case e.drop:
			continue
		case e.dropIf != nil:
			if e.dropIf(val) {
				continue
			}
		case e.sub != nil:
			dst = append(dst, msg[start:start+n]...)
			dst, err = appendSubMessage(dst, val, e.sub)
			if err != nil {
				return dst, err
			}
			continue
		}
		dst = append(dst, msg[start:end]...)
	}
	return dst, nil
}

// appendSubMessage appends sub(val) to dst behind its length prefix. The
// prefix is reserved at the size of len(val) (never smaller than what sub
// writes) and the contents moved down if the new length needs fewer bytes.
func appendSubMessage(dst, val []byte, sub func(dst, val []byte) ([]byte, error)) ([]byte, error) {
	lenPos := len(dst)
	reserved := uvarintLen(uint64(len(val)))
	var zeros [binary.MaxVarintLen64]byte
	dst = append(dst, zeros[:reserved]...)
	dst, err := sub(dst, val)
	if err != nil {
		return dst, err
	}
	body := len(dst) - lenPos - reserved
	n := binary.PutUvarint(dst[lenPos:lenPos+reserved], uint64(body))
	if n < reserved {
		copy(dst[lenPos+n:], dst[lenPos+reserved:])
		dst = dst[:len(dst)-(reserved-n)]
	}
	return dst, nil
}

// eachField calls fn with every field of msg, stopping at the first error.
func eachField(msg []byte, fn func(num uint64, wt uint8, val []byte) error) error {
	for i := 0; i < len(msg); {
		num, wt, n := readTag(msg[i:])
		if n <= 0 {
			return errWire
		}
		i += n
		valStart, end, err := fieldExtent(msg, i, wt)
		if err != nil {
			return err
		}
		i = end
		if err := fn(num, wt, msg[valStart:end]); err != nil {
			return err
		}
	}
	return nil
}

// readTag reads a field's tag; n <= 0 if it is malformed or field 0.
func readTag(b []byte) (num uint64, wt uint8, n int) {
	tag, n := binary.Uvarint(b)
	if n <= 0 || tag>>3 == 0 || tag>>3 > 1<<29-1 {
		return 0, 0, -1
	}
	return tag >> 3, uint8(tag & 7), n
}

// fieldExtent returns where the value of a field of wire type wt starting
// at msg[i:] begins and ends (for length-delimited fields, without the
// length prefix). Groups are not supported.
func fieldExtent(msg []byte, i int, wt uint8) (valStart, end int, err error) {
	switch wt {
	case wireVarint:
		_, n := binary.Uvarint(msg[i:])
		if n <= 0 {
			return 0, 0, errWire
		}
		return i, i + n, nil
	case wireFixed64:
		if len(msg)-i < 8 {
			return 0, 0, errWire
		}
		return i, i + 8, nil
	case wireFixed32:
		if len(msg)-i < 4 {
			return 0, 0, errWire
		}
		return i, i + 4, nil
	case wireBytes:
		l, n := binary.Uvarint(msg[i:])
		if n <= 0 || l > uint64(len(msg)-i-n) {
			return 0, 0, errWire
		}
		return i + n, i + n + int(l), nil
	}
	return 0, 0, errWire
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
