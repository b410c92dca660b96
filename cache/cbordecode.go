package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// The API server encodes CBOR (application/cbor, and application/cbor-seq
// for watches) with apimachinery's serializer: every object wrapped in tag
// 55799, map keys and most strings as byte strings, map order not fixed.
// The decode mode below reads that the way apimachinery's lax decoder does,
// so an object decodes to the same Go value as from the server's JSON:
// struct fields matched by their json tag names, case-sensitively; unknown
// keys ignored; duplicate keys, invalid UTF-8, NaN/Inf and big integers
// rejected; byte strings accepted where strings are expected; integers into
// interface{} as int64 and maps as map[string]any, as the JSON path's
// PreserveInts does; types with only an UnmarshalJSON method given the item
// transcoded to JSON.
var (
	cborPlain   = newCBORMode(nil) // for cborToJSON, and where no UnmarshalJSON can be met
	cborObjects = newCBORMode(transcoderFunc(cborToJSON))
)

func newCBORMode(jsonTranscoder cbor.Transcoder) cbor.DecMode {
	simple, err := cbor.NewSimpleValueRegistryFromDefaults(rejectedSimpleValues()...)
	if err != nil {
		panic(err)
	}
	m, err := cbor.DecOptions{
		DupMapKey:                 cbor.DupMapKeyEnforcedAPF,
		TimeTag:                   cbor.DecTagOptional,
		MaxNestedLevels:           maxCBORDepth,
		MaxArrayElements:          1<<31 - 1, // the frame size bounds it
		MaxMapPairs:               1 << 21,
		IndefLength:               cbor.IndefLengthAllowed,
		TagsMd:                    cbor.TagsAllowed,
		IntDec:                    cbor.IntDecConvertSignedOrFail,
		MapKeyByteString:          cbor.MapKeyByteStringForbidden,
		DefaultMapType:            reflect.TypeFor[map[string]any](),
		UTF8:                      cbor.UTF8RejectInvalid,
		FieldNameMatching:         cbor.FieldNameMatchingCaseSensitive,
		DefaultByteStringType:     reflect.TypeFor[string](),
		ByteStringToString:        cbor.ByteStringToStringAllowedWithExpectedLaterEncoding,
		FieldNameByteString:       cbor.FieldNameByteStringAllowed,
		UnrecognizedTagToAny:      cbor.UnrecognizedTagContentToAny,
		TimeTagToAny:              cbor.TimeTagToRFC3339Nano,
		ByteStringToTime:          cbor.ByteStringToTimeAllowed,
		NaN:                       cbor.NaNDecodeForbidden,
		Inf:                       cbor.InfDecodeForbidden,
		ByteStringExpectedFormat:  cbor.ByteStringExpectedBase64,
		BignumTag:                 cbor.BignumTagForbidden,
		SimpleValues:              simple,
		BinaryUnmarshaler:         cbor.BinaryUnmarshalerNone,
		TextUnmarshaler:           cbor.TextUnmarshalerTextString,
		JSONUnmarshalerTranscoder: jsonTranscoder,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

// rejectedSimpleValues: only false, true and null mean anything in
// Kubernetes objects (24-31 are reserved and ill-formed anyway).
func rejectedSimpleValues() []func(*cbor.SimpleValueRegistry) error {
	var out []func(*cbor.SimpleValueRegistry) error
	for v := range 256 {
		if (v >= 20 && v <= 22) || (v >= 24 && v <= 31) {
			continue
		}
		out = append(out, cbor.WithRejectedSimpleValue(cbor.SimpleValue(v)))
	}
	return out
}

type transcoderFunc func(dst io.Writer, src io.Reader) error

func (f transcoderFunc) Transcode(dst io.Writer, src io.Reader) error { return f(dst, src) }

// cborToJSON rewrites one CBOR item as JSON, for UnmarshalJSON methods.
func cborToJSON(dst io.Writer, src io.Reader) error {
	b, err := io.ReadAll(src)
	if err != nil {
		return err
	}
	j, err := cborItemToJSON(b)
	if err != nil {
		return err
	}
	_, err = dst.Write(j)
	return err
}

func cborItemToJSON(b []byte) ([]byte, error) {
	var v any
	if err := cborPlain.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// cborWire reads objects as the API server encodes them in CBOR; raw
// fields are rewritten as JSON afterwards (see rawToJSON).
var cborWire = wireFormat{
	strip:         stripCBORObject,
	unmarshal:     cborObjects.Unmarshal,
	unmarshalHead: cborPlain.Unmarshal,
	fixup:         rawToJSON,
}

// decodeCBOR strips obj, a CBOR map, in place and decodes it into a new T.
// A failure is an *undecoded naming the object, with the error.
func (d wireDecoder[T]) decodeCBOR(obj []byte) (T, *undecoded) { return d.decodeWith(&cborWire, obj) }

// decodeListCBOR decodes a list body (a map with "metadata" and "items"),
// stripping items in place.
func (d wireDecoder[T]) decodeListCBOR(body []byte) (*wireList, error) {
	_, _, end, entries, err := cborMapAt(body, 0, nil)
	if err == nil && end != len(body) {
		err = fmt.Errorf("CBOR: %d bytes after the list", len(body)-end)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s list: %w", d.resource, err)
	}
	l := &wireList{}
	for _, e := range entries {
		v := body[e.vs:e.end]
		switch string(e.key) {
		case "metadata":
			if err := cborPlain.Unmarshal(v, &l.ListMeta); err != nil {
				return nil, fmt.Errorf("decode %s list metadata: %w", d.resource, err)
			}
		case "items":
			h, err := readHead(v, 0)
			if err != nil || (h.major == cborSimple && h.arg == 22) { // null
				continue
			}
			if h.major != cborArray {
				return nil, fmt.Errorf("decode %s list items: not an array", d.resource)
			}
			j := h.length
			for k := uint64(0); h.indef || k < h.arg; k++ {
				if h.indef && v[j] == 0xff {
					break
				}
				ie, err := skipCBOR(v, j)
				if err != nil {
					return nil, fmt.Errorf("decode %s list items: %w", d.resource, err)
				}
				l.Items = append(l.Items, d.object(&cborWire, v[j:ie]))
				j = ie
			}
		}
	}
	return l, nil
}

// decodeEventCBOR decodes one watch event {"type": ..., "object": ...}
// of a CBOR sequence, as decodeEvent does for JSON.
func (d wireDecoder[T]) decodeEventCBOR(frame []byte) (watch.Event, error) {
	_, _, _, entries, err := cborMapAt(frame, 0, nil)
	if err != nil {
		return watch.Event{}, fmt.Errorf("decode %s watch event: %w", d.resource, err)
	}
	var typ string
	var obj []byte
	for _, e := range entries {
		switch string(e.key) {
		case "type":
			if err := cborPlain.Unmarshal(frame[e.vs:e.end], &typ); err != nil {
				return watch.Event{}, fmt.Errorf("decode %s watch event type: %w", d.resource, err)
			}
		case "object":
			obj = frame[e.vs:e.end]
		}
	}
	if obj == nil {
		return watch.Event{}, fmt.Errorf("decode %s watch event of type %q: no object", d.resource, typ)
	}
	return d.event(&cborWire, typ, obj)
}

// rawToJSON rewrites, in the struct v points to, the raw bytes of every
// runtime.RawExtension and metav1.FieldsV1 that holds CBOR as JSON, so
// that they read as they would after a JSON decode (code using them
// expects JSON). Only types that can hold one are walked.
func rawToJSON(v reflect.Value) error {
	if !mayHoldRaw(v.Type()) {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return rawToJSON(v.Elem())
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := rawToJSON(v.Index(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if k := it.Value().Kind(); k == reflect.Pointer || k == reflect.Slice {
				if err := rawToJSON(it.Value()); err != nil {
					return err
				}
			}
		}
	case reflect.Struct:
		switch p := v.Addr().Interface().(type) {
		case *runtime.RawExtension:
			j, err := rawCBORToJSON(p.Raw)
			p.Raw = j
			return err
		case *metav1.FieldsV1:
			j, err := rawCBORToJSON(p.Raw)
			p.Raw = j
			return err
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				if err := rawToJSON(v.Field(i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func rawCBORToJSON(raw []byte) ([]byte, error) {
	if !bytes.HasPrefix(raw, cborSelfDescribed) && (len(raw) == 0 || raw[0] == '{' || raw[0] == '[') {
		return raw, nil // already JSON (or empty)
	}
	return cborItemToJSON(raw)
}

var rawHolders sync.Map // reflect.Type → bool

// mayHoldRaw reports whether a value of type t can contain a RawExtension
// or FieldsV1 (map values are walked only through pointers and slices: the
// others are not addressable, and no Kubernetes type keeps raw bytes
// directly in a map value).
func mayHoldRaw(t reflect.Type) bool {
	if v, ok := rawHolders.Load(t); ok {
		return v.(bool)
	}
	rawHolders.Store(t, true) // cuts cycles, erring on the side of walking; set for real below
	r := false
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		r = mayHoldRaw(t.Elem())
	case reflect.Struct:
		if t == reflect.TypeFor[runtime.RawExtension]() || t == reflect.TypeFor[metav1.FieldsV1]() {
			r = true
			break
		}
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && mayHoldRaw(f.Type) {
				r = true
				break
			}
		}
	}
	rawHolders.Store(t, r)
	return r
}
